/* What signals carry (siginfo_t) and where they can be read: handlers with SA_SIGINFO,
 * sigwaitinfo, and signalfd (read, poll, epoll, blocking reads woken by another
 * process). Senders: kill, tgkill, sigqueue, a child's end (SIGCHLD), alarm, a broken
 * pipe. Real-time signals queue in order with their values; a standard signal sent
 * twice while blocked arrives once. Natively and in the sandbox. */
#include "nv.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t hits;
static siginfo_t last;

static void on_info(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  last = *si;
  hits++;
}

static const char *code_name(int code) {
  switch (code) {
  case SI_USER: return "SI_USER";
  case SI_KERNEL: return "SI_KERNEL";
  case SI_QUEUE: return "SI_QUEUE";
  case SI_TKILL: return "SI_TKILL";
  case SI_TIMER: return "SI_TIMER";
  default: {
    static char buf[16];
    snprintf(buf, sizeof buf, "code %d", code);
    return buf;
  }
  }
}

static const char *who(pid_t pid, pid_t me, pid_t child) {
  return pid == me ? "me" : pid == child ? "the child" : pid == 0 ? "nobody" : "someone else";
}

static void handle(int sig) {
  struct sigaction sa = {0};
  sa.sa_sigaction = on_info;
  sa.sa_flags = SA_SIGINFO;
  sigaction(sig, &sa, NULL);
}

static void handlers(void) {
  pid_t me = getpid();
  handle(SIGUSR1);
  pid_t c = fork();
  if (c == 0) {
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  while (hits < 1) pause();
  waitpid(c, NULL, 0);
  printf("kill: %s from %s, uid %d\n", code_name(last.si_code), who(last.si_pid, me, c),
         (int)last.si_uid);
  syscall(SYS_tgkill, me, me, SIGUSR1);
  printf("tgkill: %s from %s\n", code_name(last.si_code), who(last.si_pid, me, c));

  handle(SIGCHLD);
  hits = 0;
  c = fork();
  if (c == 0) _exit(3);
  while (hits < 1) pause();
  printf("SIGCHLD: code %d (CLD_EXITED %d) from %s, status %d\n", last.si_code, CLD_EXITED,
         who(last.si_pid, me, c), last.si_status);
  waitpid(c, NULL, 0);
  hits = 0;
  c = fork();
  if (c == 0) {
    for (;;) pause();
  }
  kill(c, SIGTERM);
  while (hits < 1) pause();
  printf("SIGCHLD: code %d (CLD_KILLED %d) from %s, status %d\n", last.si_code, CLD_KILLED,
         who(last.si_pid, me, c), last.si_status);
  waitpid(c, NULL, 0);
  signal(SIGCHLD, SIG_DFL);

  handle(SIGALRM);
  hits = 0;
  alarm(1);
  while (hits < 1) pause();
  printf("alarm: %s\n", code_name(last.si_code));

  handle(SIGPIPE);
  int p[2];
  pipe(p);
  close(p[0]);
  SHOW("write to a pipe with no reader", write(p[1], "x", 1));
  printf("SIGPIPE: %s from %s\n", code_name(last.si_code), who(last.si_pid, me, 0));
  close(p[1]);
}

static void queues(void) {
  pid_t me = getpid();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN + 1);
  sigaddset(&set, SIGRTMIN + 2);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, NULL);
  for (int v = 42; v < 45; v++) sigqueue(me, SIGRTMIN + 2, (union sigval){.sival_int = v});
  sigqueue(me, SIGRTMIN + 1, (union sigval){.sival_int = 7});
  kill(me, SIGUSR2);
  kill(me, SIGUSR2);
  siginfo_t si;
  for (;;) {
    struct timespec zero = {0, 0};
    int s = sigtimedwait(&set, &si, &zero);
    if (s < 0) {
      printf("then: %s\n", errname(errno));
      break;
    }
    printf("took %s: %s", s == SIGUSR2 ? "SIGUSR2" : s == SIGRTMIN + 1 ? "RTMIN+1" : "RTMIN+2",
           code_name(si.si_code));
    if (si.si_code == SI_QUEUE) printf(" value %d", si.si_value.sival_int);
    printf(" from %s\n", who(si.si_pid, me, 0));
  }
  /* sigqueue may not pretend to be kill or the kernel towards another process. */
  pid_t c = fork();
  if (c == 0) {
    for (;;) pause();
  }
  siginfo_t fake = {0};
  fake.si_code = SI_USER;
  SHOW("rt_sigqueueinfo SI_USER to another", syscall(SYS_rt_sigqueueinfo, c, SIGUSR2, &fake));
  fake.si_code = SI_QUEUE;
  SHOW("rt_sigqueueinfo SI_QUEUE to another", syscall(SYS_rt_sigqueueinfo, c, SIGTERM, &fake));
  SHOW("rt_sigqueueinfo no such process", syscall(SYS_rt_sigqueueinfo, 999999, SIGUSR2, &fake));
  SHOW("rt_tgsigqueueinfo no such thread", syscall(SYS_rt_tgsigqueueinfo, me, 999999, SIGUSR2, &fake));
  SHOW("rt_sigqueueinfo bad signal", syscall(SYS_rt_sigqueueinfo, me, 65, &fake));
  int st;
  waitpid(c, &st, 0);
  printf("child: killed by %d\n", WTERMSIG(st));
  sigprocmask(SIG_UNBLOCK, &set, NULL);
}

static void signalfds(void) {
  pid_t me = getpid();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  struct pollfd pf = {fd, POLLIN, 0};
  SHOW("poll before", poll(&pf, 1, 0));
  struct signalfd_siginfo ssi;
  SHOW("read before", read(fd, &ssi, sizeof ssi));
  kill(me, SIGUSR2);
  SHOW("poll after kill", poll(&pf, 1, 0));
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7}, out;
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  SHOW("epoll_wait", epoll_wait(ep, &out, 1, 0));
  SHOW("read", read(fd, &ssi, sizeof ssi));
  printf("ssi: signo %u %s from %s\n", ssi.ssi_signo, code_name(ssi.ssi_code),
         who(ssi.ssi_pid, me, 0));
  SHOW("read again", read(fd, &ssi, sizeof ssi));
  SHOW("read short buffer", read(fd, &ssi, 8));
  SHOW("epoll_wait after", epoll_wait(ep, &out, 1, 0));
  /* Two at once into one buffer. */
  kill(me, SIGUSR1);
  kill(me, SIGUSR2);
  struct signalfd_siginfo two[3];
  SHOW("read two", read(fd, two, sizeof two));
  printf("signos %u %u\n", two[0].ssi_signo, two[1].ssi_signo);
  /* A blocking read woken by another process's signal. */
  int blocking = signalfd(-1, &set, 0);
  pid_t c = fork();
  if (c == 0) {
    usleep(100000);
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  SHOW("blocking read", read(blocking, &ssi, sizeof ssi));
  printf("ssi: signo %u %s from %s\n", ssi.ssi_signo, code_name(ssi.ssi_code),
         who(ssi.ssi_pid, me, c));
  waitpid(c, NULL, 0);
  /* sigqueue's value reaches a signalfd. */
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, SIGRTMIN + 3);
  sigprocmask(SIG_BLOCK, &rt, NULL);
  int rfd = signalfd(-1, &rt, SFD_NONBLOCK);
  sigqueue(me, SIGRTMIN + 3, (union sigval){.sival_int = 99});
  SHOW("read queued", read(rfd, &ssi, sizeof ssi));
  printf("ssi: %s value %d\n", code_name(ssi.ssi_code), ssi.ssi_int);
  /* The mask may change: SIGUSR1 only. */
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  SHOW("signalfd new mask", signalfd(fd, &set, 0) == fd);
  kill(me, SIGUSR2);
  SHOW("read SIGUSR2 not in mask", read(fd, &ssi, sizeof ssi));
  sigset_t pend;
  sigpending(&pend);
  BOOL("SIGUSR2 still pending", sigismember(&pend, SIGUSR2));
  close(fd);
  close(blocking);
  close(rfd);
  close(ep);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  handlers();
  queues();
  signalfds();
  return 0;
}

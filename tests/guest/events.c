/* Event-loop syscalls as libuv uses them: eventfd, epoll (level, edge, one-shot, nesting,
 * errors), timerfd, poll/ppoll, select/pselect6, and signalfd creation. Timing is only
 * printed as booleans with generous margins, so the output is deterministic. */
#include "nv.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ms_sleep(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int cmp_ev(const void *a, const void *b) {
  const struct epoll_event *x = a, *y = b;
  return (x->data.u64 > y->data.u64) - (x->data.u64 < y->data.u64);
}

/* epoll_wait with a 0 timeout; prints the count and each (data, events), sorted by data. */
static void show_wait(const char *what, int ep, int timeout) {
  struct epoll_event ev[8];
  errno = 0;
  int n = epoll_wait(ep, ev, 8, timeout);
  if (n < 0) {
    printf("%s: -1 %s\n", what, errname(errno));
    return;
  }
  qsort(ev, n, sizeof ev[0], cmp_ev);
  printf("%s: %d", what, n);
  for (int i = 0; i < n; i++)
    printf(" [%llu %#x]", (unsigned long long)ev[i].data.u64, ev[i].events);
  printf("\n");
}

static int ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
  struct epoll_event e = {.events = events, .data.u64 = data};
  return epoll_ctl(ep, op, fd, &e);
}

static void eventfds(void) {
  uint64_t v;
  int e = eventfd(3, EFD_NONBLOCK);
  OKERR("eventfd", e);
  v = 5;
  SHOW("eventfd write 5", write(e, &v, 8));
  v = 0;
  SHOW("eventfd read", read(e, &v, 8));
  printf("eventfd value: %llu\n", (unsigned long long)v);
  SHOW("eventfd read empty", read(e, &v, 8));
  SHOW("eventfd short read", read(e, &v, 4));
  SHOW("eventfd short write", write(e, &v, 4));
  v = UINT64_MAX;
  SHOW("eventfd write max", write(e, &v, 8));
  v = UINT64_MAX - 1;
  SHOW("eventfd write max-1", write(e, &v, 8));
  v = 1;
  SHOW("eventfd write overflow", write(e, &v, 8));
  struct pollfd p = {e, POLLIN | POLLOUT, 0};
  SHOW("poll full eventfd", poll(&p, 1, 0));
  printf("revents: %#x\n", p.revents);
  close(e);

  int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
  SHOW("sem read", read(s, &v, 8));
  printf("sem value: %llu\n", (unsigned long long)v);
  SHOW("sem read", read(s, &v, 8));
  SHOW("sem read empty", read(s, &v, 8));
  BOOL("sem cloexec", fcntl(s, F_GETFD) == FD_CLOEXEC);
  close(s);
  SHOW("eventfd2 bad flags", syscall(SYS_eventfd2, 0, 0x10));
}

static void epolls(void) {
  SHOW("epoll_create 0", epoll_create(0));
  SHOW("epoll_create1 bad", epoll_create1(1));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  OKERR("epoll_create1", ep);
  int p[2];
  OKERR("pipe", pipe(p));
  int e = eventfd(0, EFD_NONBLOCK);

  SHOW("add pipe LT", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
  SHOW("add eventfd ET", ctl(ep, EPOLL_CTL_ADD, e, EPOLLIN | EPOLLET, 2));
  SHOW("add again", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
  SHOW("del missing", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL));
  SHOW("mod missing", ctl(ep, EPOLL_CTL_MOD, p[1], EPOLLOUT, 3));
  SHOW("add bad fd", ctl(ep, EPOLL_CTL_ADD, 999, EPOLLIN, 3));
  SHOW("add to non-epoll", ctl(e, EPOLL_CTL_ADD, p[0], EPOLLIN, 3));
  SHOW("add self", ctl(ep, EPOLL_CTL_ADD, ep, EPOLLIN, 3));
  SHOW("bad op", ctl(ep, 7, p[1], EPOLLIN, 3));
  SHOW("exclusive mod", ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLEXCLUSIVE, 1));
  int f = open("/proc/self/exe", O_RDONLY);
  SHOW("add regular file", ctl(ep, EPOLL_CTL_ADD, f, EPOLLIN, 3));
  close(f);

  show_wait("wait empty", ep, 0);
  long t0 = now_ms();
  show_wait("wait 50ms", ep, 50);
  BOOL("waited 45ms", now_ms() - t0 >= 45);

  uint64_t one = 1;
  write(p[1], "ab", 2);
  write(e, &one, 8);
  show_wait("both ready", ep, 0);
  show_wait("LT again, ET not", ep, 0);
  write(e, &one, 8);
  show_wait("ET after write", ep, 0);
  uint64_t v;
  read(e, &v, 8);
  show_wait("after eventfd read", ep, 0);
  char buf[8];
  read(p[0], buf, 1);
  show_wait("pipe partly read", ep, 0);
  read(p[0], buf, 1);
  show_wait("all drained", ep, 0);

  SHOW("mod oneshot", ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLONESHOT, 4));
  write(p[1], "c", 1);
  show_wait("oneshot fires", ep, 0);
  show_wait("oneshot disabled", ep, 0);
  SHOW("rearm", ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN, 5));
  show_wait("rearmed", ep, 0);
  read(p[0], buf, 1);

  /* Nesting: an epoll inside another, and a loop refused. */
  int outer = epoll_create1(0);
  SHOW("nest", ctl(outer, EPOLL_CTL_ADD, ep, EPOLLIN, 9));
  SHOW("loop", ctl(ep, EPOLL_CTL_ADD, outer, EPOLLIN, 9));
  show_wait("outer idle", outer, 0);
  write(p[1], "d", 1);
  show_wait("outer sees inner", outer, 0);
  read(p[0], buf, 1);
  close(outer);

  /* A writer closing: EPOLLHUP. */
  SHOW("add write end", ctl(ep, EPOLL_CTL_ADD, p[1], EPOLLOUT, 6));
  show_wait("writable", ep, 0);
  SHOW("del write end", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL));
  close(p[1]);
  show_wait("hangup", ep, 0);

  /* Closing the last fd of a description removes it from the set. */
  int e2 = eventfd(1, 0);
  SHOW("add e2", ctl(ep, EPOLL_CTL_ADD, e2, EPOLLIN, 7));
  SHOW("del p0", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
  show_wait("e2 ready", ep, 0);
  close(e2);
  show_wait("e2 closed", ep, 0);

  /* A blocking wait woken by a timer. */
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {{0, 0}, {0, 20 * 1000000}};
  SHOW("add timerfd", ctl(ep, EPOLL_CTL_ADD, tfd, EPOLLIN, 8));
  timerfd_settime(tfd, 0, &its, NULL);
  t0 = now_ms();
  show_wait("wait for timer", ep, -1);
  BOOL("timer took 15ms", now_ms() - t0 >= 15);
  close(tfd);

  struct epoll_event ev;
  SHOW("maxevents 0", epoll_wait(ep, &ev, 0, 0));
  SHOW("wait non-epoll", epoll_wait(e, &ev, 1, 0));
  SHOW("wait bad fd", epoll_wait(999, &ev, 1, 0));
  SHOW("pwait bad sigsetsize", syscall(SYS_epoll_pwait, ep, &ev, 1, 0, &ev, 4));
  struct timespec zero = {0, 0};
  SHOW("pwait2 zero", syscall(441, ep, &ev, 1, &zero, NULL, 8));
  struct timespec bad = {0, 1000000000};
  SHOW("pwait2 bad timeout", syscall(441, ep, &ev, 1, &bad, NULL, 8));
  close(e);
  close(p[0]);
  close(ep);
}

static void timerfds(void) {
  SHOW("timerfd bad clock", timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0));
  SHOW("timerfd bad flags", timerfd_create(CLOCK_MONOTONIC, 1));
  int t = timerfd_create(CLOCK_MONOTONIC, 0);
  OKERR("timerfd_create", t);
  uint64_t n = 0;
  struct itimerspec its = {{0, 0}, {0, 20 * 1000000}}, cur;
  SHOW("settime one-shot", timerfd_settime(t, 0, &its, NULL));
  timerfd_gettime(t, &cur);
  BOOL("armed", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0);
  long t0 = now_ms();
  SHOW("read blocks", read(t, &n, 8));
  printf("expirations: %llu\n", (unsigned long long)n);
  BOOL("took 15ms", now_ms() - t0 >= 15);
  SHOW("gettime", timerfd_gettime(t, &cur));
  printf("after: %ld %ld %ld %ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec,
         (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
  SHOW("short read", read(t, &n, 4));

  struct itimerspec per = {{0, 20 * 1000000}, {0, 20 * 1000000}};
  timerfd_settime(t, 0, &per, NULL);
  ms_sleep(55);
  SHOW("periodic read", read(t, &n, 8));
  BOOL("periodic >= 2", n >= 2);
  timerfd_gettime(t, &cur);
  printf("interval: %ld %ld\n", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
  struct itimerspec off = {{0, 0}, {0, 0}}, old;
  SHOW("disarm", timerfd_settime(t, 0, &off, &old));
  printf("old interval: %ld %ld\n", (long)old.it_interval.tv_sec, old.it_interval.tv_nsec);
  fcntl(t, F_SETFL, O_NONBLOCK);
  SHOW("disarmed read", read(t, &n, 8));

  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  struct itimerspec abs = {{0, 0}, now};
  abs.it_value.tv_nsec += 20 * 1000000;
  if (abs.it_value.tv_nsec >= 1000000000) {
    abs.it_value.tv_sec++;
    abs.it_value.tv_nsec -= 1000000000;
  }
  fcntl(t, F_SETFL, 0);
  SHOW("settime abs", timerfd_settime(t, TFD_TIMER_ABSTIME, &abs, NULL));
  SHOW("abs read", read(t, &n, 8));
  printf("abs expirations: %llu\n", (unsigned long long)n);

  struct itimerspec bad = {{0, 0}, {0, 1000000000}};
  SHOW("settime bad nsec", timerfd_settime(t, 0, &bad, NULL));
  SHOW("settime bad flags", timerfd_settime(t, 4, &its, NULL));
  int e = eventfd(0, 0);
  SHOW("settime non-timer", timerfd_settime(e, 0, &its, NULL));
  SHOW("gettime non-timer", timerfd_gettime(e, &cur));
  close(e);
  close(t);
}

static void polls(void) {
  int p[2];
  pipe(p);
  struct pollfd fds[3] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}, {999, POLLIN, 0}};
  SHOW("poll", poll(fds, 3, 0));
  printf("revents: %#x %#x %#x\n", fds[0].revents, fds[1].revents, fds[2].revents);
  long t0 = now_ms();
  SHOW("poll 30ms", poll(fds, 1, 30));
  BOOL("poll waited 25ms", now_ms() - t0 >= 25);
  write(p[1], "x", 1);
  SHOW("poll readable", poll(fds, 1, -1));
  printf("revents: %#x\n", fds[0].revents);
  struct timespec ts = {0, 30 * 1000000};
  fds[0].events = POLLOUT;
  SHOW("ppoll", syscall(SYS_ppoll, fds, 1, &ts, NULL, 8));
  printf("ppoll left: %ld %ld\n", (long)ts.tv_sec, ts.tv_nsec);
  SHOW("ppoll bad sigsetsize", syscall(SYS_ppoll, fds, 1, &ts, &ts, 4));

  fd_set r, w;
  FD_ZERO(&r);
  FD_ZERO(&w);
  FD_SET(p[0], &r);
  FD_SET(p[1], &w);
  struct timeval tv = {0, 0};
  SHOW("select", select(p[1] + 1, &r, &w, NULL, &tv));
  BOOL("select read set", FD_ISSET(p[0], &r));
  BOOL("select write set", FD_ISSET(p[1], &w));
  char c;
  read(p[0], &c, 1);
  FD_ZERO(&r);
  FD_SET(p[0], &r);
  tv.tv_sec = 0;
  tv.tv_usec = 30000;
  t0 = now_ms();
  SHOW("select 30ms", select(p[0] + 1, &r, NULL, NULL, &tv));
  BOOL("select waited 25ms", now_ms() - t0 >= 25);
  printf("select left: %ld %ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
  BOOL("select read set cleared", !FD_ISSET(p[0], &r));
  FD_ZERO(&r);
  FD_SET(p[0], &r);
  tv.tv_usec = 0;
  SHOW("select negative nfds", select(-1, &r, NULL, NULL, &tv));
  int closed = dup(p[0]);
  close(closed);
  FD_SET(closed, &r);
  SHOW("select closed fd", select(closed + 1, &r, NULL, NULL, &tv));
  tv.tv_usec = -1;
  FD_ZERO(&r);
  SHOW("select bad timeout", select(1, &r, NULL, NULL, &tv));

  struct timespec pts = {0, 30 * 1000000};
  FD_ZERO(&r);
  FD_SET(p[0], &r);
  t0 = now_ms();
  SHOW("pselect6", syscall(SYS_pselect6, p[0] + 1, &r, NULL, NULL, &pts, NULL));
  BOOL("pselect6 waited 25ms", now_ms() - t0 >= 25);
  printf("pselect6 left: %ld %ld\n", (long)pts.tv_sec, pts.tv_nsec);

  close(p[1]);
  fds[0].events = POLLIN;
  SHOW("poll hangup", poll(fds, 1, -1));
  printf("revents: %#x\n", fds[0].revents);
  close(p[0]);
}

static void signalfds(void) {
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  SHOW("signalfd bad size", syscall(SYS_signalfd4, -1, &m, 4, 0));
  SHOW("signalfd bad flags", syscall(SYS_signalfd4, -1, &m, 8, 1));
  int s = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
  OKERR("signalfd", s);
  struct signalfd_siginfo si;
  SHOW("signalfd read none", read(s, &si, sizeof si));
  SHOW("signalfd short read", read(s, &si, 8));
  SHOW("signalfd update", signalfd(s, &m, 0) == s);
  int e = eventfd(0, 0);
  SHOW("signalfd on eventfd", signalfd(e, &m, 0));
  close(e);
  close(s);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  eventfds();
  epolls();
  timerfds();
  polls();
  signalfds();
  return 0;
}

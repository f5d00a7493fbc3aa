/* Process groups, sessions and signals between processes, as job-control shells and
 * container inits use them: a session leader moves its children into groups (refused
 * once a child has run execve), waits for and signals a whole group, signals a thread
 * of another process, and signals between users. Run as root natively and in the
 * sandbox; everything happens in a child that starts its own session, so nothing
 * depends on the caller's. */
#include "nv.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report[2];

static void on_usr1(int s) {
  char c = (char)s;
  (void)!write(report[1], &c, 1);
}

/* A child that waits for signals; SIGUSR1 is reported through the pipe. Returns once
 * the child's handler is in place. */
static pid_t sleeper(void) {
  pid_t p = fork();
  if (p == 0) {
    signal(SIGUSR1, on_usr1);
    on_usr1(0);
    for (;;) pause();
  }
  char c;
  (void)!read(report[0], &c, 1);
  return p;
}

static const char *how(int st) {
  static char buf[32];
  if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "killed by %d", WTERMSIG(st));
  else snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
  return buf;
}

/* As uid `uid`, probe `target` with signal `sig`; the child's exit status is the errno. */
static void probe_as(uid_t uid, pid_t target, int sig, const char *what) {
  pid_t p = fork();
  if (p == 0) {
    if (syscall(SYS_setresuid, uid, uid, uid) != 0) _exit(99);
    _exit(kill(target, sig) == 0 ? 0 : errno);
  }
  int st;
  waitpid(p, &st, 0);
  printf("%s: %s\n", what, errname(WEXITSTATUS(st)));
}

static void leader(const char *self) {
  pid_t me = getpid();
  BOOL("session leader", getsid(0) == me);
  BOOL("group leader", getpgrp() == me);
  SHOW("setpgid(0, 0) as session leader", setpgid(0, 0));
  SHOW("setsid again", setsid());

  pid_t a = sleeper(), b = sleeper();
  SHOW("setpgid(a, a)", setpgid(a, a));
  SHOW("setpgid(b, a)", setpgid(b, a));
  BOOL("getpgid(a) is a", getpgid(a) == a);
  BOOL("getpgid(b) is a", getpgid(b) == a);
  BOOL("getsid(b) is ours", getsid(b) == me);
  SHOW("setpgid(b, no such group)", setpgid(b, 999999));
  SHOW("setpgid(b, -1)", setpgid(b, -1));
  SHOW("setpgid(not a child)", setpgid(1, 0));
  SHOW("getpgid(no such pid)", getpgid(999999));
  SHOW("getsid(no such pid)", getsid(999999));

  /* A signal to a thread of another process, by tgkill and by tkill. */
  char c = 0;
  SHOW("tgkill(a, a, SIGUSR1)", syscall(SYS_tgkill, a, a, SIGUSR1));
  (void)!read(report[0], &c, 1);
  printf("a got signal %d\n", c);
  SHOW("tkill(b, SIGUSR1)", syscall(SYS_tkill, b, SIGUSR1));
  (void)!read(report[0], &c, 1);
  printf("b got signal %d\n", c);
  SHOW("tgkill(a, b, 0)", syscall(SYS_tgkill, a, b, 0));

  /* Another user's process: refused, but SIGCONT within the session is allowed. */
  probe_as(1000, a, 0, "uid 1000 probes root's process");
  probe_as(1000, a, SIGCONT, "uid 1000 sends SIGCONT in its session");

  /* The whole group, then wait for it by group. */
  SHOW("kill(-a, SIGTERM)", kill(-a, SIGTERM));
  int seen = 0;
  for (int i = 0; i < 2; i++) {
    int st;
    pid_t w = waitpid(-a, &st, 0);
    seen |= w == a ? 1 : w == b ? 2 : 4;
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM) printf("waitpid(-a): %s\n", how(st));
  }
  printf("waitpid(-a) reaped a and b, killed by SIGTERM: %s\n", seen == 3 ? "yes" : "no");
  SHOW("waitpid(-a) with none left", waitpid(-a, NULL, 0));

  /* After its execve, a child cannot be moved; its exec is seen when the close-on-exec
   * pipe end closes. */
  int gate[2];
  (void)!pipe2(gate, O_CLOEXEC);
  pid_t e = fork();
  if (e == 0) {
    close(gate[0]);
    execl(self, self, "sleep", (char *)NULL);
    _exit(127);
  }
  close(gate[1]);
  (void)!read(gate[0], &c, 1);
  SHOW("setpgid(child after execve)", setpgid(e, e));
  kill(e, SIGKILL);
  int st;
  waitpid(e, &st, 0);
  printf("exec'd child: %s\n", how(st));

  /* A user's own processes. */
  pid_t u = fork();
  if (u == 0) {
    if (syscall(SYS_setresuid, 1000, 1000, 1000) != 0) _exit(99);
    on_usr1(0);
    for (;;) pause();
  }
  (void)!read(report[0], &c, 1);
  probe_as(1000, u, 0, "uid 1000 probes its own process");
  probe_as(1001, u, 0, "uid 1001 probes uid 1000's process");
  kill(u, SIGKILL);
  waitpid(u, &st, 0);
  printf("uid 1000's process: %s\n", how(st));
}

int main(int argc, char **argv) {
  if (argc > 1) {
    for (;;) pause();
  }
  (void)!pipe(report);
  fflush(stdout);
  pid_t l = fork();
  if (l == 0) {
    SHOW("setsid in a child", setsid() > 0 ? 0 : -1);
    leader(argv[0]);
    fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(l, &st, 0);
  printf("leader: %s\n", how(st));
  return 0;
}

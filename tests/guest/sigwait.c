/* sigwaitinfo/sigtimedwait and sigpending, as container inits (tini, dumb-init) use them:
 * a blocked signal from another process taken without a handler, one already pending,
 * timeouts, and a wait cut short by another signal's handler. */
#include "nv.h"
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;
static void on_alarm(int s) { (void)s; alarms++; }

int main(void) {
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);

  pid_t parent = getpid();
  pid_t c = fork();
  if (c == 0) {
    usleep(50000);
    kill(parent, SIGUSR1);
    _exit(3);
  }
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  siginfo_t info;
  SHOW("sigwaitinfo(USR1) from the child", sigwaitinfo(&usr1, &info));
  printf("si_signo %d\n", info.si_signo);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  SHOW("sigwaitinfo(CHLD) as the child exits", sigwaitinfo(&chld, NULL));
  int st;
  waitpid(c, &st, 0);
  printf("child exited %d\n", WEXITSTATUS(st));

  raise(SIGUSR2);
  sigpending(&pending);
  printf("USR2 pending: %d, USR1 pending: %d\n", sigismember(&pending, SIGUSR2),
         sigismember(&pending, SIGUSR1));
  struct timespec zero = {0, 0}, short_wait = {0, 100000000}, long_wait = {5, 0};
  SHOW("sigtimedwait(set) takes the pending USR2", sigtimedwait(&set, NULL, &zero));
  sigpending(&pending);
  printf("USR2 pending after: %d\n", sigismember(&pending, SIGUSR2));
  SHOW("sigtimedwait, nothing pending, no wait", sigtimedwait(&set, NULL, &zero));
  SHOW("sigtimedwait 100 ms", sigtimedwait(&set, NULL, &short_wait));

  struct sigaction sa = {0};
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  alarm(1);
  SHOW("sigtimedwait cut short by SIGALRM's handler", sigtimedwait(&usr1, NULL, &long_wait));
  printf("alarms %d\n", (int)alarms);
  struct timespec bad = {0, 1000000000};
  SHOW("sigtimedwait bad timeout", sigtimedwait(&set, NULL, &bad));
  return 0;
}

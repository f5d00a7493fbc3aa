/* POSIX timers: signals carrying the timer's id and value, overruns while a signal
 * waits, SIGEV_NONE, absolute times, glibc's SIGEV_THREAD (a helper thread fed through
 * SIGEV_THREAD_ID), a child that inherits none, and the errors. Natively and in the
 * sandbox. */
#include "nv.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fired;
static siginfo_t last;
static volatile int callbacks;

static void on_timer(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  last = *si;
  fired++;
}

static void on_thread(union sigval v) { callbacks += v.sival_int; }

static void arm(timer_t t, long ms, long interval_ms, int flags) {
  struct itimerspec its = {{interval_ms / 1000, (interval_ms % 1000) * 1000000},
                           {ms / 1000, (ms % 1000) * 1000000}};
  timer_settime(t, flags, &its, NULL);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  timer_t plain;
  SHOW("timer_create(MONOTONIC, NULL)", timer_create(CLOCK_MONOTONIC, NULL, &plain));
  struct itimerspec cur;
  SHOW("timer_gettime disarmed", timer_gettime(plain, &cur));
  printf("value %ld.%09ld interval %ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec,
         (long)cur.it_interval.tv_sec);

  struct sigaction sa = {0};
  sa.sa_sigaction = on_timer;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR1, &sa, NULL);
  struct sigevent ev = {0};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGUSR1;
  ev.sigev_value.sival_int = 77;
  timer_t t1;
  SHOW("timer_create(SIGUSR1, value 77)", timer_create(CLOCK_MONOTONIC, &ev, &t1));
  arm(t1, 50, 0, 0);
  while (!fired) pause();
  printf("handler: SI_TIMER %s, value %d, timer id matches %s, overrun %d\n",
         last.si_code == SI_TIMER ? "yes" : "no", last.si_value.sival_int,
         last.si_timerid == (int)(long)t1 ? "yes" : "no", last.si_overrun);
  SHOW("gettime after a one-shot", timer_gettime(t1, &cur));
  printf("value %ld.%09ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec);

  /* Periodic while its signal is blocked: one signal, the rest counted as overruns. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, NULL);
  ev.sigev_signo = SIGUSR2;
  ev.sigev_value.sival_int = 5;
  timer_t t2;
  timer_create(CLOCK_MONOTONIC, &ev, &t2);
  arm(t2, 10, 10, 0);
  usleep(200000);
  siginfo_t si;
  struct timespec zero = {0, 0};
  int s = sigtimedwait(&set, &si, &zero);
  printf("periodic: took %s, overrun at least 5 %s, value %d\n",
         s == SIGUSR2 ? "SIGUSR2" : "nothing", si.si_overrun >= 5 ? "yes" : "no",
         si.si_value.sival_int);
  usleep(50000);
  /* Set again: an expiry of the earlier setting still waiting is dropped. */
  arm(t2, 0, 0, 0);
  SHOW("after disarming, nothing waits", sigtimedwait(&set, &si, &zero));

  /* SIGEV_NONE: only read. */
  struct sigevent none = {0};
  none.sigev_notify = SIGEV_NONE;
  timer_t t3;
  timer_create(CLOCK_MONOTONIC, &none, &t3);
  arm(t3, 1000, 0, 0);
  timer_gettime(t3, &cur);
  long left_ms = cur.it_value.tv_sec * 1000 + cur.it_value.tv_nsec / 1000000;
  printf("SIGEV_NONE: about a second left %s\n", left_ms > 500 && left_ms <= 1000 ? "yes" : "no");

  /* Absolute on CLOCK_REALTIME. */
  fired = 0;
  ev.sigev_signo = SIGUSR1;
  timer_t t4;
  timer_create(CLOCK_REALTIME, &ev, &t4);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct itimerspec abs = {{0, 0}, {now.tv_sec, now.tv_nsec}};
  abs.it_value.tv_nsec += 50000000;
  if (abs.it_value.tv_nsec >= 1000000000) {
    abs.it_value.tv_sec++;
    abs.it_value.tv_nsec -= 1000000000;
  }
  SHOW("settime TIMER_ABSTIME", timer_settime(t4, TIMER_ABSTIME, &abs, NULL));
  while (!fired) pause();
  printf("absolute timer fired\n");

  /* glibc's SIGEV_THREAD. */
  struct sigevent th = {0};
  th.sigev_notify = SIGEV_THREAD;
  th.sigev_notify_function = on_thread;
  th.sigev_value.sival_int = 3;
  timer_t t5;
  SHOW("timer_create(SIGEV_THREAD)", timer_create(CLOCK_MONOTONIC, &th, &t5));
  arm(t5, 20, 0, 0);
  for (int i = 0; i < 200 && !callbacks; i++) usleep(10000);
  printf("SIGEV_THREAD callback ran: %s\n", callbacks == 3 ? "yes" : "no");

  /* A child has no timers. */
  pid_t c = fork();
  if (c == 0) {
    _exit(syscall(SYS_timer_gettime, 0, &cur) == 0 ? 0 : errno);
  }
  int st;
  waitpid(c, &st, 0);
  printf("child's timer 0: %s\n", errname(WEXITSTATUS(st)));

  /* Errors. */
  ev.sigev_signo = 99;
  timer_t bad;
  SHOW("bad signal", timer_create(CLOCK_MONOTONIC, &ev, &bad));
  ev.sigev_signo = SIGUSR1;
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev._sigev_un._tid = 999999;
  SHOW("SIGEV_THREAD_ID of no thread", timer_create(CLOCK_MONOTONIC, &ev, &bad));
  ev.sigev_notify = 42;
  SHOW("bad notify", timer_create(CLOCK_MONOTONIC, &ev, &bad));
  SHOW("bad clock", timer_create(99, NULL, &bad));
  struct itimerspec its = {{0, 0}, {0, 1000000000}};
  SHOW("settime nsec 1e9", timer_settime(t1, 0, &its, NULL));
  SHOW("settime no such timer", syscall(SYS_timer_settime, 9999, 0, &its, NULL));
  SHOW("delete", timer_delete(t1));
  SHOW("delete again", syscall(SYS_timer_delete, (long)t1));
  SHOW("getoverrun no such timer", syscall(SYS_timer_getoverrun, 9999));
  return 0;
}

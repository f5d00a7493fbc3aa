/* time: clocks and sleeps. Only booleans and fixed values are printed, never times. */
#include "nv.h"

#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static long long mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return ns(&t);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct timespec a, b;

  printf("== clock_gettime\n");
  int monotonic = 1, valid = 1;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < 1000; i++) {
    clock_gettime(CLOCK_MONOTONIC, &b);
    monotonic &= ns(&b) >= ns(&a);
    valid &= b.tv_nsec >= 0 && b.tv_nsec < 1000000000L;
    a = b;
  }
  BOOL("MONOTONIC non-decreasing over 1000 calls", monotonic);
  BOOL("tv_nsec in range", valid);

  /* The same through the raw syscall, so a vDSO cannot hide the sentry's answer. */
  monotonic = 1;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &a);
  for (int i = 0; i < 100; i++) {
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &b);
    monotonic &= ns(&b) >= ns(&a);
    a = b;
  }
  BOOL("raw syscall MONOTONIC non-decreasing", monotonic);

  struct timeval tv;
  clock_gettime(CLOCK_REALTIME, &a);
  gettimeofday(&tv, NULL);
  time_t t = time(NULL);
  long long rt = a.tv_sec;
  BOOL("REALTIME after 2020", rt > 1577836800LL);
  BOOL("REALTIME within 5 s of gettimeofday", llabs(rt - (long long)tv.tv_sec) <= 5);
  BOOL("REALTIME within 5 s of time()", llabs(rt - (long long)t) <= 5);
  BOOL("gettimeofday tv_usec in range", tv.tv_usec >= 0 && tv.tv_usec < 1000000);
  BOOL("time(&t) stores its result", time(&t) == t);

  const struct {
    const char *name;
    clockid_t id;
  } clocks[] = {
      {"REALTIME", CLOCK_REALTIME},
      {"MONOTONIC", CLOCK_MONOTONIC},
      {"PROCESS_CPUTIME_ID", CLOCK_PROCESS_CPUTIME_ID},
      {"THREAD_CPUTIME_ID", CLOCK_THREAD_CPUTIME_ID},
      {"MONOTONIC_RAW", CLOCK_MONOTONIC_RAW},
      {"REALTIME_COARSE", CLOCK_REALTIME_COARSE},
      {"MONOTONIC_COARSE", CLOCK_MONOTONIC_COARSE},
      {"BOOTTIME", CLOCK_BOOTTIME},
  };
  for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
    errno = 0;
    int r = clock_gettime(clocks[i].id, &a);
    printf("clock_gettime %s: %s\n", clocks[i].name, r == 0 ? "ok" : errname(errno));
  }
  BOOL("CPU time is positive", (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a), ns(&a) > 0));

  printf("== clock_getres\n");
  for (unsigned i = 0; i < 3; i++) {
    errno = 0;
    memset(&a, 0xff, sizeof a);
    int r = clock_getres(clocks[i].id, &a);
    if (r == 0)
      printf("clock_getres %s: %lld.%09ld\n", clocks[i].name, (long long)a.tv_sec, a.tv_nsec);
    else
      printf("clock_getres %s: %s\n", clocks[i].name, errname(errno));
  }
  SHOW("clock_getres NULL", clock_getres(CLOCK_MONOTONIC, NULL));
  SHOW("clock_getres bad clock", syscall(SYS_clock_getres, 12345, &a));

  printf("== errors\n");
  SHOW("clock_gettime bad clock", syscall(SYS_clock_gettime, 12345, &a));
  SHOW("clock_gettime bad pointer", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)1));
  struct timespec bad = {0, 1000000000L};
  SHOW("nanosleep tv_nsec = 1e9", syscall(SYS_nanosleep, &bad, NULL));
  bad.tv_nsec = -1;
  SHOW("nanosleep tv_nsec = -1", syscall(SYS_nanosleep, &bad, NULL));
  bad.tv_sec = -1;
  bad.tv_nsec = 0;
  SHOW("nanosleep tv_sec = -1", syscall(SYS_nanosleep, &bad, NULL));
  SHOW("nanosleep bad pointer", syscall(SYS_nanosleep, (void *)1, NULL));
  bad.tv_sec = 0;
  bad.tv_nsec = 1000000000L;
  /* clock_nanosleep returns the error number instead of setting errno. */
  printf("clock_nanosleep tv_nsec = 1e9: %s\n", errname(clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL)));
  struct timespec ok = {0, 1000};
  printf("clock_nanosleep bad clock: %s\n", errname(clock_nanosleep(12345, 0, &ok, NULL)));
  SHOW("clock_nanosleep unknown flag bits", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0x100, &ok, NULL));

  printf("== sleeps\n");
  struct timespec req = {0, 20 * 1000000L}, rem = {7, 7};
  long long t0 = mono_ns();
  SHOW("nanosleep 20 ms", nanosleep(&req, &rem));
  long long dt = mono_ns() - t0;
  BOOL("slept at least 20 ms", dt >= 20000000LL);
  BOOL("slept less than 2 s", dt < 2000000000LL);

  t0 = mono_ns();
  printf("clock_nanosleep relative 20 ms: %s\n", errname(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL)));
  dt = mono_ns() - t0;
  BOOL("slept at least 20 ms", dt >= 20000000LL);

  clock_gettime(CLOCK_MONOTONIC, &a);
  long long target = ns(&a) + 20000000LL;
  struct timespec abs_t = {target / 1000000000LL, target % 1000000000LL};
  printf("clock_nanosleep absolute +20 ms: %s\n", errname(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs_t, NULL)));
  BOOL("woke after the deadline", mono_ns() >= target);
  abs_t.tv_sec -= 10;
  t0 = mono_ns();
  printf("clock_nanosleep absolute in the past: %s\n", errname(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs_t, NULL)));
  BOOL("returned at once", mono_ns() - t0 < 1000000000LL);
  struct timespec zero = {0, 0};
  SHOW("nanosleep 0", nanosleep(&zero, NULL));

  printf("done\n");
  return 0;
}

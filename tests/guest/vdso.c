/* vdso: the clock calls glibc routes through the vDSO. Prints only booleans that hold
 * natively and in the sandbox; `bench` prints ns per call instead (for benchmarks). */
#include "nv.h"

#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define CALLS 1000000
#define MS 1000000LL

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static long long now(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return ns(&t);
}

/* Mean ns per clock_gettime(CLOCK_MONOTONIC) over CALLS calls; also checks that no
 * call returned a time before the previous one. */
static double bench(int *monotonic) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  long long start = ns(&a);
  *monotonic = 1;
  for (int i = 0; i < CALLS; i++) {
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (ns(&b) < ns(&a))
      *monotonic = 0;
    a = b;
  }
  return (double)(ns(&a) - start) / CALLS;
}

/* Across threads: a read that starts after another thread's read finished must not
 * return an earlier time. */
static _Atomic long long latest;
static atomic_int violations;

static void *race(void *arg) {
  (void)arg;
  for (int i = 0; i < 200000; i++) {
    long long seen = atomic_load(&latest);
    long long t = now(CLOCK_MONOTONIC);
    if (t < seen)
      atomic_fetch_add(&violations, 1);
    while (seen < t && !atomic_compare_exchange_weak(&latest, &seen, t)) {
    }
  }
  return NULL;
}

/* How far the vDSO's answer falls outside the bracket of two raw syscalls, at worst. */
static long long worst_outside(clockid_t id) {
  long long worst = 0;
  for (int i = 0; i < 2000; i++) {
    struct timespec s1, v, s2;
    syscall(SYS_clock_gettime, id, &s1);
    clock_gettime(id, &v);
    syscall(SYS_clock_gettime, id, &s2);
    long long out = ns(&s1) - ns(&v);
    if (ns(&v) - ns(&s2) > out)
      out = ns(&v) - ns(&s2);
    if (out > worst)
      worst = out;
  }
  return worst;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int monotonic;
  if (argc > 1 && strcmp(argv[1], "bench") == 0) {
    double per_call = bench(&monotonic);
    long long t0 = now(CLOCK_MONOTONIC);
    for (int i = 0; i < 1000; i++) {
      struct timespec t;
      syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t);
    }
    double per_syscall = (double)(now(CLOCK_MONOTONIC) - t0) / 1000;
    printf("clock_gettime: %.1f ns/call (raw syscall: %.1f ns/call)\n", per_call, per_syscall);
    printf("worst distance outside [syscall, syscall]: MONOTONIC %lld ns, REALTIME %lld ns, "
           "MONOTONIC_RAW %lld ns\n",
           worst_outside(CLOCK_MONOTONIC), worst_outside(CLOCK_REALTIME),
           worst_outside(CLOCK_MONOTONIC_RAW));
    return 0;
  }

  BOOL("AT_SYSINFO_EHDR present", getauxval(AT_SYSINFO_EHDR) != 0);
  const unsigned char *ehdr = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
  BOOL("AT_SYSINFO_EHDR points at an ELF header", ehdr && memcmp(ehdr, "\177ELF", 4) == 0);

  /* /proc/self/maps names both areas, and AT_SYSINFO_EHDR is where [vdso] starts. */
  int vdso_named = 0, vvar_named = 0, base_matches = 0;
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[512];
  while (maps && fgets(line, sizeof line, maps)) {
    unsigned long start = strtoul(line, NULL, 16);
    if (strstr(line, "[vdso]")) {
      vdso_named = 1;
      base_matches = start == (unsigned long)ehdr;
    }
    if (strstr(line, "[vvar]"))
      vvar_named = 1;
  }
  if (maps)
    fclose(maps);
  BOOL("/proc/self/maps names [vdso]", vdso_named);
  BOOL("/proc/self/maps names [vvar]", vvar_named);
  BOOL("[vdso] starts at AT_SYSINFO_EHDR", base_matches);

  double per_call = bench(&monotonic);
  BOOL("1,000,000 CLOCK_MONOTONIC reads never go back", monotonic);
  (void)per_call; /* the cost is a benchmark figure (bench/run.sh), not a test */

  pthread_t threads[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&threads[i], NULL, race, NULL);
  for (int i = 0; i < 2; i++)
    pthread_join(threads[i], NULL);
  BOOL("MONOTONIC never goes back across 2 threads", atomic_load(&violations) == 0);

  /* Each clock against the sentry's (or the kernel's) answer through a raw syscall. */
  const struct {
    const char *name;
    clockid_t id;
    long long slack;
  } clocks[] = {
      {"REALTIME", CLOCK_REALTIME, 0},
      {"MONOTONIC", CLOCK_MONOTONIC, 0},
      {"BOOTTIME", CLOCK_BOOTTIME, 0},
      {"MONOTONIC_RAW", CLOCK_MONOTONIC_RAW, 0},
      {"REALTIME_COARSE", CLOCK_REALTIME_COARSE, 20 * MS},
      {"MONOTONIC_COARSE", CLOCK_MONOTONIC_COARSE, 20 * MS},
      {"PROCESS_CPUTIME_ID", CLOCK_PROCESS_CPUTIME_ID, -1},
  };
  for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
    struct timespec v, s1, s2;
    syscall(SYS_clock_gettime, clocks[i].id, &s1);
    int r = clock_gettime(clocks[i].id, &v);
    syscall(SYS_clock_gettime, clocks[i].id, &s2);
    char what[96];
    snprintf(what, sizeof what, "%s via vDSO agrees with the syscall", clocks[i].name);
    if (clocks[i].slack < 0) {
      /* CPU time: only that it works and does not run backwards. */
      BOOL(what, r == 0 && ns(&v) >= ns(&s1) && ns(&s2) >= ns(&v));
      continue;
    }
    /* Between the two syscalls, give or take 1 ms; the coarse clocks may tick at
     * another phase than the host's, so they get a few ticks more either way. */
    BOOL(what, r == 0 && v.tv_nsec >= 0 && v.tv_nsec < 1000000000L &&
                   ns(&v) >= ns(&s1) - 1 * MS - clocks[i].slack &&
                   ns(&v) <= ns(&s2) + 1 * MS + clocks[i].slack);
  }

  struct timespec rt1, rt2;
  struct timeval tv;
  struct timezone tz = {123, 456};
  clock_gettime(CLOCK_REALTIME, &rt1);
  time_t t = time(NULL);
  int g = gettimeofday(&tv, &tz);
  clock_gettime(CLOCK_REALTIME, &rt2);
  /* time() truncates to the second (and may be one tick behind on Linux). */
  BOOL("time() within 50 ms of REALTIME",
       t * 1000000000LL >= ns(&rt1) - 1000 * MS - 50 * MS && t * 1000000000LL <= ns(&rt2) + 50 * MS);
  long long tv_ns = tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
  BOOL("gettimeofday within 50 ms of REALTIME",
       g == 0 && tv_ns >= ns(&rt1) - 50 * MS && tv_ns <= ns(&rt2) + 50 * MS);
  BOOL("gettimeofday tv_usec in range", tv.tv_usec >= 0 && tv.tv_usec < 1000000);
  BOOL("gettimeofday time zone is UTC", tz.tz_minuteswest == 0 && tz.tz_dsttime == 0);
  time_t stored = 0;
  BOOL("time(&t) stores its result", time(&stored) == stored && stored != 0);

  struct timespec res;
  SHOW("clock_getres(MONOTONIC)", clock_getres(CLOCK_MONOTONIC, &res));
  printf("  resolution %ld.%09ld\n", (long)res.tv_sec, res.tv_nsec);
  SHOW("clock_getres(REALTIME)", clock_getres(CLOCK_REALTIME, &res));
  printf("  resolution %ld.%09ld\n", (long)res.tv_sec, res.tv_nsec);
  SHOW("clock_getres(BOOTTIME)", clock_getres(CLOCK_BOOTTIME, &res));
  printf("  resolution %ld.%09ld\n", (long)res.tv_sec, res.tv_nsec);
  struct timespec sys_res;
  SHOW("clock_getres(MONOTONIC_COARSE)", clock_getres(CLOCK_MONOTONIC_COARSE, &res));
  syscall(SYS_clock_getres, CLOCK_MONOTONIC_COARSE, &sys_res);
  BOOL("  same as the syscall's", res.tv_sec == sys_res.tv_sec && res.tv_nsec == sys_res.tv_nsec);
  SHOW("clock_getres(MONOTONIC, NULL)", clock_getres(CLOCK_MONOTONIC, NULL));
  SHOW("clock_getres(12345)", clock_getres(12345, &res));
  SHOW("clock_gettime(12345)", clock_gettime(12345, &res));
  SHOW("clock_gettime(CLOCK_TAI + 100)", clock_gettime(111, &res));

  unsigned cpu = 99, node = 99;
  SHOW("getcpu", getcpu(&cpu, &node));
  BOOL("  CPU number below the count", cpu < (unsigned)sysconf(_SC_NPROCESSORS_CONF));
  BOOL("  sched_getcpu agrees", sched_getcpu() >= 0);

  /* Sleeping: the vDSO's monotonic clock sees the whole sleep. */
  long long before = now(CLOCK_MONOTONIC);
  struct timespec nap = {0, 20 * MS};
  nanosleep(&nap, NULL);
  long long slept = now(CLOCK_MONOTONIC) - before;
  BOOL("20 ms nanosleep measures 20..500 ms", slept >= 20 * MS && slept < 500 * MS);
  return 0;
}

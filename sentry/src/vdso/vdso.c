/* Nanovisor's guest vDSO: clock_gettime, gettimeofday, time, clock_getres and getcpu
 * answered inside the guest, without a trap to the sentry.
 *
 * Time comes from the TSC and the vvar page (vvar.h) the sentry keeps current: each
 * clock is a line ns = base + (tsc - tsc_base) * mult / 2^32. Anything we cannot answer
 * here (CPU-time clocks, unknown ids, a page in NV_MODE_SYSCALL, a writer that never
 * finishes) is passed on with a real `syscall`, as Linux's vDSO does.
 *
 * Freestanding: no libc, no libgcc, no data, no relocations. Built by sentry/build.rs. */
#include "vvar.h"

typedef long nv_s64;

struct nv_timespec {
  nv_s64 tv_sec;
  nv_s64 tv_nsec;
};
struct nv_timeval {
  nv_s64 tv_sec;
  nv_s64 tv_usec;
};
struct nv_timezone {
  int tz_minuteswest;
  int tz_dsttime;
};

#define NSEC_PER_SEC 1000000000UL

#define SYS_gettimeofday 96
#define SYS_time 201
#define SYS_clock_gettime 228
#define SYS_clock_getres 229

#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define CLOCK_MONOTONIC_RAW 4
#define CLOCK_REALTIME_COARSE 5
#define CLOCK_MONOTONIC_COARSE 6
#define CLOCK_BOOTTIME 7

/* Readers give up on a writer after this many tries and ask the sentry. */
#define MAX_TRIES 10000

/* The first byte of our own image (the linker defines it); the vvar page is just below. */
extern const char __ehdr_start[] __attribute__((visibility("hidden")));

static inline const volatile struct nv_vvar *vvar(void) {
  unsigned long base = (unsigned long)__ehdr_start;
  /* Hide the arithmetic from the optimizer: the page lies outside every C object. */
  __asm__("" : "+r"(base));
  return (const volatile struct nv_vvar *)(base - 4096);
}

static inline void barrier(void) { __asm__ __volatile__("" ::: "memory"); }

static inline nv_u64 rdtsc_ordered(void) {
  nv_u32 lo, hi;
  /* LFENCE keeps the read from being hoisted above the sequence-count load. */
  __asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
  return ((nv_u64)hi << 32) | lo;
}

static inline long syscall2(long nr, long a, long b) {
  long ret;
  __asm__ __volatile__("syscall"
                       : "=a"(ret)
                       : "0"(nr), "D"(a), "S"(b)
                       : "rcx", "r11", "memory");
  return ret;
}

/* Which line a clock follows. */
enum base { MONO, REAL, BOOT, RAW };

/* The time on `which` in ns, or 0 if the sentry must answer. */
static nv_u64 read_ns(enum base which) {
  const volatile struct nv_vvar *v = vvar();
  for (int tries = 0; tries < MAX_TRIES; tries++) {
    nv_u32 seq = v->seq;
    barrier();
    if (seq & 1) {
      __asm__ __volatile__("pause");
      continue;
    }
    if (v->mode != NV_MODE_TSC)
      return 0;
    nv_u64 tsc = rdtsc_ordered();
    nv_u64 tsc_base = v->tsc_base;
    nv_u64 base, mult, offset = 0;
    if (which == RAW) {
      base = v->raw_ns;
      mult = v->raw_mult;
    } else {
      base = v->mono_ns;
      mult = v->mono_mult;
      if (which == REAL)
        offset = v->real_offset;
      else if (which == BOOT)
        offset = v->boot_offset;
    }
    barrier();
    if (v->seq != seq)
      continue;
    /* A TSC read a hair before tsc_base (another CPU's) counts as tsc_base. */
    nv_u64 delta = tsc > tsc_base ? tsc - tsc_base : 0;
    return base + (nv_u64)(((unsigned __int128)delta * mult) >> 32) + offset;
  }
  return 0;
}

static nv_u64 coarse_res(void) { return vvar()->coarse_res; }

int __vdso_clock_gettime(int clock, struct nv_timespec *ts) {
  nv_u64 ns = 0, res;
  switch (clock) {
  case CLOCK_REALTIME:
    ns = read_ns(REAL);
    break;
  case CLOCK_MONOTONIC:
    ns = read_ns(MONO);
    break;
  case CLOCK_BOOTTIME:
    ns = read_ns(BOOT);
    break;
  case CLOCK_MONOTONIC_RAW:
    ns = read_ns(RAW);
    break;
  case CLOCK_REALTIME_COARSE:
  case CLOCK_MONOTONIC_COARSE:
    /* The last multiple of the coarse resolution: never ahead of the fine clock and
     * never more than one tick behind it, like Linux's tick-based coarse clocks. The
     * host's ticks fall elsewhere, so the sentry's syscall (the host's coarse clock)
     * may differ from this by up to a tick either way. */
    res = coarse_res();
    if (res != 0) {
      ns = read_ns(clock == CLOCK_REALTIME_COARSE ? REAL : MONO);
      ns -= ns % res;
    }
    break;
  default:
    break;
  }
  if (ns == 0)
    return (int)syscall2(SYS_clock_gettime, clock, (long)ts);
  ts->tv_sec = (nv_s64)(ns / NSEC_PER_SEC);
  ts->tv_nsec = (nv_s64)(ns % NSEC_PER_SEC);
  return 0;
}

int __vdso_gettimeofday(struct nv_timeval *tv, struct nv_timezone *tz) {
  if (tv != 0) {
    nv_u64 ns = read_ns(REAL);
    if (ns == 0)
      return (int)syscall2(SYS_gettimeofday, (long)tv, (long)tz);
    tv->tv_sec = (nv_s64)(ns / NSEC_PER_SEC);
    tv->tv_usec = (nv_s64)(ns % NSEC_PER_SEC / 1000);
  }
  if (tz != 0) {
    /* What the sentry's gettimeofday reports: no time zone configured. */
    tz->tz_minuteswest = 0;
    tz->tz_dsttime = 0;
  }
  return 0;
}

nv_s64 __vdso_time(nv_s64 *t) {
  nv_u64 ns = read_ns(REAL);
  if (ns == 0)
    return syscall2(SYS_time, (long)t, 0);
  nv_s64 sec = (nv_s64)(ns / NSEC_PER_SEC);
  if (t != 0)
    *t = sec;
  return sec;
}

int __vdso_clock_getres(int clock, struct nv_timespec *res) {
  nv_u64 ns;
  switch (clock) {
  case CLOCK_REALTIME:
  case CLOCK_MONOTONIC:
  case CLOCK_BOOTTIME:
  case CLOCK_MONOTONIC_RAW:
    ns = 1;
    break;
  case CLOCK_REALTIME_COARSE:
  case CLOCK_MONOTONIC_COARSE:
    ns = coarse_res();
    break;
  default:
    ns = 0;
    break;
  }
  /* Unknown ids, and a page the sentry has not filled in yet, go to the sentry. */
  if (ns == 0 || coarse_res() == 0)
    return (int)syscall2(SYS_clock_getres, clock, (long)res);
  if (res != 0) {
    res->tv_sec = 0;
    res->tv_nsec = (nv_s64)ns;
  }
  return 0;
}

/* The sentry runs every thread as CPU 0 of node 0 (see syscalls/sched.rs: getcpu). */
long __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused) {
  (void)unused;
  if (cpu != 0)
    *cpu = 0;
  if (node != 0)
    *node = 0;
  return 0;
}

/* The plain names too, as Linux's vDSO exports them. */
int clock_gettime(int, struct nv_timespec *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct nv_timeval *, struct nv_timezone *)
    __attribute__((weak, alias("__vdso_gettimeofday")));
nv_s64 time(nv_s64 *) __attribute__((weak, alias("__vdso_time")));
int clock_getres(int, struct nv_timespec *) __attribute__((weak, alias("__vdso_clock_getres")));
long getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));

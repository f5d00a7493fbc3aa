/* CPU time accounting: getrusage (SELF, THREAD, CHILDREN), times, the CPU clocks
 * (CLOCK_PROCESS_CPUTIME_ID, clock_getcpuclockid, pthread_getcpuclockid) and the times in
 * /proc/self/stat, after burning CPU in two threads and in a child process. Every check
 * compares times with each other, never prints one, so the output is the same natively
 * and in the sandbox. Burns are pure user-space loops (a sandboxed syscall is slow). */
#include "nv.h"
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL

static int64_t clock_ns(clockid_t c) {
  struct timespec ts;
  if (clock_gettime(c, &ts) != 0)
    return -1;
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t tv_ns(struct timeval tv) {
  return (int64_t)tv.tv_sec * 1000000000LL + (int64_t)tv.tv_usec * 1000;
}

static int64_t rusage_ns(int who) {
  struct rusage ru;
  if (getrusage(who, &ru) != 0)
    return -1;
  return tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime);
}

/* Burn at least `ns` of the calling thread's CPU time; returns what it burned. The clock
 * is read only every so many iterations, so nearly all the time is spent in user mode. */
static int64_t burn(int64_t ns) {
  int64_t start = clock_ns(CLOCK_THREAD_CPUTIME_ID), now = start;
  volatile uint64_t x = 1;
  while (now - start < ns) {
    for (int i = 0; i < 200000; i++)
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    now = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  }
  return now - start;
}

static void *burner(void *arg) {
  *(int64_t *)arg = burn(200 * MS);
  return NULL;
}

/* A thread that burns, then waits (with its clock still readable) until released. */
static pthread_barrier_t parked;
static void *burn_then_park(void *arg) {
  *(int64_t *)arg = burn(50 * MS);
  pthread_barrier_wait(&parked);
  pthread_barrier_wait(&parked);
  return NULL;
}

/* Fields 14-17 (utime, stime, cutime, cstime) and 22 (starttime) of /proc/self/stat. */
static int proc_stat(long long *utime, long long *stime, long long *cutime, long long *cstime,
                     long long *start) {
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  /* After ") ": field 3 (state) onwards. */
  long long v[23] = {0};
  p += 2;
  for (int field = 3; field <= 22 && *p; field++) {
    char *end;
    if (field == 3) {
      end = strchr(p, ' ');
      if (!end)
        return -1;
    } else {
      v[field] = strtoll(p, &end, 10);
    }
    p = *end ? end + 1 : end;
  }
  *utime = v[14], *stime = v[15], *cutime = v[16], *cstime = v[17], *start = v[22];
  return 0;
}

static long long uptime_ticks(void) {
  FILE *f = fopen("/proc/uptime", "r");
  long long s = 0, cs = 0;
  if (!f)
    return -1;
  if (fscanf(f, "%lld.%lld", &s, &cs) != 2)
    s = -1;
  fclose(f);
  return s * 100 + cs;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);

  /* Before any child: RUSAGE_CHILDREN (an int -1, as glibc passes it) is empty. */
  struct rusage ru;
  SHOW("getrusage(RUSAGE_CHILDREN)", getrusage(RUSAGE_CHILDREN, &ru));
  BOOL("children's time zero before any child", tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime) == 0);
  SHOW("getrusage(2)", getrusage(2, &ru));
  SHOW("getrusage(-2)", getrusage(-2, &ru));

  /* Two threads burn 200 ms each. */
  pthread_t a, b;
  int64_t burned_a = 0, burned_b = 0;
  pthread_create(&a, NULL, burner, &burned_a);
  pthread_create(&b, NULL, burner, &burned_b);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  int64_t self = rusage_ns(RUSAGE_SELF), thread = rusage_ns(RUSAGE_THREAD);
  int64_t process = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  BOOL("threads burned", burned_a >= 200 * MS && burned_b >= 200 * MS);
  BOOL("RUSAGE_SELF >= each thread's burn", self >= burned_a && self >= burned_b);
  BOOL("RUSAGE_SELF >= both threads' burns", self >= burned_a + burned_b);
  BOOL("RUSAGE_THREAD < RUSAGE_SELF", thread >= 0 && thread < self);
  BOOL("RUSAGE_THREAD <= CLOCK_THREAD_CPUTIME_ID",
       thread <= clock_ns(CLOCK_THREAD_CPUTIME_ID));
  BOOL("CLOCK_PROCESS_CPUTIME_ID >= both threads' burns", process >= burned_a + burned_b);
  BOOL("CLOCK_PROCESS_CPUTIME_ID <= RUSAGE_SELF read later",
       process <= rusage_ns(RUSAGE_SELF) + 2000);
  struct timespec res;
  SHOW("clock_getres(CLOCK_PROCESS_CPUTIME_ID)", clock_getres(CLOCK_PROCESS_CPUTIME_ID, &res));
  printf("resolution: %ld s %ld ns\n", (long)res.tv_sec, res.tv_nsec);

  /* The clock ids of the process and of another (live) thread. */
  clockid_t pclock, tclock;
  SHOW("clock_getcpuclockid(0)", clock_getcpuclockid(0, &pclock));
  BOOL("clock_getcpuclockid(0) clock >= both threads' burns",
       clock_ns(pclock) >= burned_a + burned_b);
  SHOW("clock_getcpuclockid(getpid())", clock_getcpuclockid(getpid(), &pclock));
  BOOL("its clock >= both threads' burns", clock_ns(pclock) >= burned_a + burned_b);
  int64_t burned_c = 0;
  pthread_t c;
  pthread_barrier_init(&parked, NULL, 2);
  pthread_create(&c, NULL, burn_then_park, &burned_c);
  pthread_barrier_wait(&parked);
  SHOW("pthread_getcpuclockid", pthread_getcpuclockid(c, &tclock));
  int64_t other = clock_ns(tclock);
  BOOL("another thread's clock >= its burn", other >= burned_c);
  BOOL("another thread's clock < RUSAGE_SELF", other < rusage_ns(RUSAGE_SELF));
  pthread_barrier_wait(&parked);
  pthread_join(c, NULL);

  /* A child burns 200 ms; its time is the parent's children's once reaped. */
  int fds[2];
  if (pipe(fds) != 0)
    return 1;
  pid_t pid = fork();
  if (pid == 0) {
    int64_t burned = burn(200 * MS);
    if (write(fds[1], &burned, sizeof burned) != sizeof burned)
      _exit(1);
    _exit(0);
  }
  BOOL("children's time zero while the child runs", rusage_ns(RUSAGE_CHILDREN) == 0);
  int64_t child_burned = 0;
  if (read(fds[0], &child_burned, sizeof child_burned) != sizeof child_burned)
    return 1;
  int status;
  SHOW("waitpid", waitpid(pid, &status, 0) == pid ? 0 : -1);
  BOOL("child burned", child_burned >= 200 * MS);
  BOOL("RUSAGE_CHILDREN >= the child's burn", rusage_ns(RUSAGE_CHILDREN) >= child_burned);
  BOOL("RUSAGE_SELF does not count the child",
       rusage_ns(RUSAGE_SELF) < burned_a + burned_b + burned_c + child_burned);
  struct tms tms;
  BOOL("times() succeeds", times(&tms) != (clock_t)-1);
  BOOL("times() cutime+cstime > 0", tms.tms_cutime + tms.tms_cstime > 0);
  BOOL("times() utime+stime >= threads' burns in ticks - 2",
       (tms.tms_utime + tms.tms_stime + 2) * 10 * MS >= burned_a + burned_b);

  /* /proc/self/stat, in clock ticks (100 a second). */
  long long ut = 0, st = 0, cut = 0, cst = 0, start = 0;
  SHOW("read /proc/self/stat", proc_stat(&ut, &st, &cut, &cst, &start));
  BOOL("stat utime+stime > 0", ut + st > 0);
  BOOL("stat utime+stime >= threads' burns in ticks - 2",
       (ut + st + 2) * 10 * MS >= burned_a + burned_b);
  BOOL("stat cutime+cstime >= child's burn in ticks - 2",
       (cut + cst + 2) * 10 * MS >= child_burned);
  long long now = uptime_ticks();
  BOOL("stat starttime <= uptime", now >= 0 && start <= now);
  return 0;
}

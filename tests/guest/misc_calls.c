/* Calls runtimes and tools make to tune or describe their environment: memory locking,
 * scheduling policy, personality, the robust futex list, the old utime family,
 * fallocate, readahead, sync_file_range and extended attributes. Natively and in the
 * sandbox, as root. */
#include "nv.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

static void locking(void) {
  long pg = sysconf(_SC_PAGESIZE);
  char *p = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char vec[4];
  SHOW("mlock", mlock(p + 10, 2 * pg));
  mincore(p, 4 * pg, vec);
  printf("mincore after mlock: %d %d %d %d\n", vec[0] & 1, vec[1] & 1, vec[2] & 1, vec[3] & 1);
  SHOW("munlock", munlock(p, 4 * pg));
  SHOW("mlock2(ONFAULT)", syscall(SYS_mlock2, p, pg, 1));
  SHOW("mlock2(bad flags)", syscall(SYS_mlock2, p, pg, 2));
  munmap(p + pg, pg);
  SHOW("mlock over a hole", mlock(p, 4 * pg));
  SHOW("munlock over a hole", munlock(p, 4 * pg));
  SHOW("mlock(len 0)", mlock(p, 0));
  SHOW("mlockall(0)", mlockall(0));
  SHOW("mlockall(MCL_ONFAULT)", mlockall(MCL_ONFAULT));
  SHOW("mlockall(8)", mlockall(8));
  SHOW("munlockall", munlockall());
  fflush(stdout);
  /* An unprivileged caller is bound by RLIMIT_MEMLOCK. */
  pid_t c = fork();
  if (c == 0) {
    struct rlimit r = {8 * pg, 8 * pg};
    setrlimit(RLIMIT_MEMLOCK, &r);
    syscall(SYS_setresuid, 1000, 1000, 1000);
    char *q = mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SHOW("user: mlock within the limit", mlock(q, 2 * pg));
    SHOW("user: mlock past the limit", mlock(q, 16 * pg));
    r.rlim_cur = 0;
    setrlimit(RLIMIT_MEMLOCK, &r);
    SHOW("user: mlock with a zero limit", mlock(q + 8 * pg, pg));
    fflush(stdout);
    _exit(0);
  }
  waitpid(c, NULL, 0);
}

static void scheduling(void) {
  SHOW("priority max FIFO", sched_get_priority_max(SCHED_FIFO));
  SHOW("priority min RR", sched_get_priority_min(SCHED_RR));
  SHOW("priority max OTHER", sched_get_priority_max(SCHED_OTHER));
  SHOW("priority min BATCH", sched_get_priority_min(SCHED_BATCH));
  SHOW("priority max IDLE", sched_get_priority_max(SCHED_IDLE));
  SHOW("priority max 42", sched_get_priority_max(42));
  struct sched_param sp = {0};
  SHOW("getscheduler", sched_getscheduler(0));
  SHOW("setscheduler BATCH", sched_setscheduler(0, SCHED_BATCH, &sp));
  SHOW("getscheduler after", sched_getscheduler(0));
  sp.sched_priority = 5;
  SHOW("setscheduler OTHER priority 5", sched_setscheduler(0, SCHED_OTHER, &sp));
  SHOW("setparam priority 5", sched_setparam(0, &sp));
  sp.sched_priority = 0;
  SHOW("setparam priority 0", sched_setparam(0, &sp));
  SHOW("setscheduler 42", sched_setscheduler(0, 42, &sp));
  SHOW("setscheduler pid -1", sched_setscheduler(-1, SCHED_OTHER, &sp));
  SHOW("setscheduler NULL param", syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, NULL));
  SHOW("setscheduler no such pid", sched_setscheduler(999999, SCHED_OTHER, &sp));
  SHOW("setscheduler OTHER", sched_setscheduler(0, SCHED_OTHER, &sp));
  SHOW("getparam", sched_getparam(0, &sp));
  printf("priority: %d\n", sp.sched_priority);
  struct timespec ts;
  SHOW("rr_get_interval pid -1", sched_rr_get_interval(-1, &ts));
  SHOW("rr_get_interval no such pid", sched_rr_get_interval(999999, &ts));
}

static void identity(void) {
  SHOW("personality query", personality(0xffffffff));
  SHOW("personality ADDR_NO_RANDOMIZE", personality(ADDR_NO_RANDOMIZE));
  SHOW("personality query again", personality(0xffffffff));
  SHOW("personality back", personality(PER_LINUX));
  void *head;
  size_t len;
  SHOW("get_robust_list", syscall(SYS_get_robust_list, 0, &head, &len));
  printf("robust list: head set %s, len %zu\n", head ? "yes" : "no", len);
  SHOW("get_robust_list no such tid", syscall(SYS_get_robust_list, 999999, &head, &len));
  SHOW("get_robust_list bad pointer", syscall(SYS_get_robust_list, 0, (void *)8, &len));
}

static void times(void) {
  const char *f = "/tmp/nv-misc-times";
  struct stat st;
  close(open(f, O_CREAT | O_WRONLY | O_TRUNC, 0644));
  struct utimbuf ub = {1000, 2000};
  SHOW("utime", utime(f, &ub));
  stat(f, &st);
  printf("atime %ld mtime %ld\n", (long)st.st_atime, (long)st.st_mtime);
  struct timeval tv[2] = {{3, 500000}, {4, 999999}};
  SHOW("utimes", utimes(f, tv));
  stat(f, &st);
  printf("atime %ld.%09ld mtime %ld.%09ld\n", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
         (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  tv[1].tv_usec = 1000000;
  SHOW("utimes usec 1000000", utimes(f, tv));
  SHOW("utimes missing file", utimes("/tmp/nv-misc-none", NULL));
  int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
  tv[1].tv_usec = 7;
  SHOW("futimesat", syscall(SYS_futimesat, dir, "nv-misc-times", tv));
  stat(f, &st);
  printf("mtime %ld.%09ld\n", (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  SHOW("futimesat NULL times", syscall(SYS_futimesat, dir, "nv-misc-times", NULL));
  stat(f, &st);
  BOOL("mtime is now", st.st_mtime > 1000000000);
  SHOW("utime NULL path", syscall(SYS_utime, NULL, NULL));
  close(dir);
  unlink(f);
}

static void allocation(void) {
  /* /dev/shm is a tmpfs natively and in the sandbox. */
  const char *f = "/dev/shm/nv-misc-alloc";
  int fd = open(f, O_CREAT | O_RDWR | O_TRUNC, 0644);
  struct stat st;
  SHOW("fallocate 10000", fallocate(fd, 0, 0, 10000));
  fstat(fd, &st);
  printf("size %ld\n", (long)st.st_size);
  SHOW("fallocate KEEP_SIZE to 20000", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 20000));
  fstat(fd, &st);
  printf("size %ld\n", (long)st.st_size);
  char buf[300];
  memset(buf, 'x', sizeof buf);
  pwrite(fd, buf, sizeof buf, 0);
  SHOW("punch without KEEP_SIZE", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 100, 100));
  SHOW("punch 100..200", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 100));
  pread(fd, buf, sizeof buf, 0);
  printf("bytes 99..101 and 199..201: %d %d %d %d %d %d\n", buf[99], buf[100], buf[101], buf[199],
         buf[200], buf[201]);
  fstat(fd, &st);
  printf("size %ld\n", (long)st.st_size);
  SHOW("punch past the end", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5000, 100000));
  fstat(fd, &st);
  printf("size %ld\n", (long)st.st_size);
  SHOW("zero range on tmpfs", fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 10));
  SHOW("unknown mode", fallocate(fd, 0x100, 0, 10));
  SHOW("len 0", fallocate(fd, 0, 0, 0));
  SHOW("offset -1", fallocate(fd, 0, -1, 10));
  SHOW("past the largest offset", fallocate(fd, 0, 0x7fffffffffffffffL, 10));
  int ro = open(f, O_RDONLY);
  SHOW("read-only descriptor", fallocate(ro, 0, 0, 10));
  SHOW("readahead", readahead(ro, 0, 4096));
  SHOW("sync_file_range", sync_file_range(fd, 0, 0, 7));
  SHOW("sync_file_range bad flags", sync_file_range(fd, 0, 0, 8));
  SHOW("sync_file_range offset -1", sync_file_range(fd, -1, 0, 1));
  int p[2];
  pipe(p);
  SHOW("fallocate on a pipe", fallocate(p[1], 0, 0, 10));
  SHOW("readahead on a pipe", readahead(p[0], 0, 10));
  SHOW("sync_file_range on a pipe", sync_file_range(p[1], 0, 0, 1));
  int wo = open(f, O_WRONLY);
  SHOW("readahead write-only", readahead(wo, 0, 10));
  SHOW("fallocate bad fd", fallocate(99, 0, 0, 10));
  close(p[0]);
  close(p[1]);
  close(wo);
  close(ro);
  close(fd);
  unlink(f);
}

/* Attributes: a new file has none here and there; what a file system without them or
 * with none set answers is printed as "absent". */
static const char *absent(long r) {
  if (r >= 0) return "present";
  return errno == ENODATA || errno == ENOTSUP ? "absent" : errname(errno);
}

static void attributes(void) {
  const char *f = "/tmp/nv-misc-xattr";
  close(open(f, O_CREAT | O_WRONLY | O_TRUNC, 0644));
  char buf[64];
  SHOW("listxattr", listxattr(f, buf, sizeof buf));
  SHOW("listxattr size 0", listxattr(f, NULL, 0));
  SHOW("llistxattr", llistxattr(f, buf, sizeof buf));
  int fd = open(f, O_RDONLY);
  SHOW("flistxattr", flistxattr(fd, buf, sizeof buf));
  printf("getxattr user.nv: %s\n", absent(getxattr(f, "user.nv", buf, sizeof buf)));
  printf("fgetxattr user.nv: %s\n", absent(fgetxattr(fd, "user.nv", buf, sizeof buf)));
  printf("removexattr user.nv: %s\n", absent(removexattr(f, "user.nv")));
  SHOW("getxattr missing file", getxattr("/tmp/nv-misc-none", "user.nv", buf, sizeof buf));
  SHOW("listxattr missing file", listxattr("/tmp/nv-misc-none", buf, sizeof buf));
  SHOW("getxattr empty name", getxattr(f, "", buf, sizeof buf));
  char longname[300];
  memset(longname, 'a', sizeof longname);
  memcpy(longname, "user.", 5);
  longname[299] = 0;
  SHOW("getxattr long name", getxattr(f, longname, buf, sizeof buf));
  SHOW("setxattr bad flags", setxattr(f, "user.nv", "v", 1, 4));
  SHOW("fgetxattr bad fd", fgetxattr(99, "user.nv", buf, sizeof buf));
  SHOW("flistxattr bad fd", flistxattr(99, buf, sizeof buf));
  SHOW("getxattr bad path pointer", syscall(SYS_getxattr, 8, "user.nv", buf, sizeof buf));
  close(fd);
  unlink(f);
}

/* RLIMIT_NOFILE bounds descriptor numbers; past nr_open no one may raise it. */
static void descriptors(void) {
  pid_t c = fork();
  if (c == 0) {
    struct rlimit r = {64, 64};
    SHOW("lower NOFILE to 64", setrlimit(RLIMIT_NOFILE, &r));
    SHOW("dup2 to 63", dup2(0, 63));
    SHOW("dup2 to 64", dup2(0, 64));
    SHOW("fcntl F_DUPFD from 64", fcntl(0, F_DUPFD, 64));
    r.rlim_cur = r.rlim_max = 2000000;
    SHOW("NOFILE past nr_open", setrlimit(RLIMIT_NOFILE, &r));
    r.rlim_cur = 65;
    r.rlim_max = 64;
    SHOW("soft above hard", setrlimit(RLIMIT_NOFILE, &r));
    fflush(stdout);
    _exit(0);
  }
  waitpid(c, NULL, 0);
}

int main(void) {
  descriptors();
  locking();
  scheduling();
  identity();
  times();
  allocation();
  attributes();
  return 0;
}

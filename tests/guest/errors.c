/* errors: wild pointers get EFAULT (and never crash the kernel), long names ENAMETOOLONG,
 * closed fds EBADF, unimplemented syscalls ENOSYS; plus identity calls (uname, ids) whose
 * values are printed only as comparisons. */
#include "nv.h"

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#ifndef ARCH_GET_FS
#define ARCH_GET_FS 0x1003
#endif

static void section_efault(void) {
  printf("== EFAULT\n");
  /* A page that was mapped and then unmapped: a plausible user address nobody owns. */
  char *hole = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(hole, 4096);
  const struct {
    const char *name;
    void *p;
  } wild[] = {
      {"(void*)1", (void *)1},
      {"unmapped page", hole},
      {"kernel half", (void *)0xffff800000000000UL},
      {"non-canonical", (void *)0x0090000000000000UL},
  };
  int p[2];
  pipe(p);
  int zero = open("/dev/zero", O_RDONLY);
  struct stat st;
  char path[] = "/";
  for (unsigned i = 0; i < sizeof wild / sizeof wild[0]; i++) {
    void *w = wild[i].p;
    printf("-- %s\n", wild[i].name);
    write(p[1], "data", 4);
    SHOW("read from a pipe into it", syscall(SYS_read, p[0], w, 4));
    SHOW("read from /dev/zero into it", syscall(SYS_read, zero, w, 16));
    SHOW("write to a pipe from it", syscall(SYS_write, p[1], w, 4));
    SHOW("pread64 into it", syscall(SYS_pread64, zero, w, 8, 0));
    SHOW("openat path", syscall(SYS_openat, AT_FDCWD, w, O_RDONLY));
    SHOW("open path (legacy)", syscall(SYS_open, w, O_RDONLY));
    SHOW("newfstatat path", syscall(SYS_newfstatat, AT_FDCWD, w, &st, 0));
    SHOW("newfstatat buffer", syscall(SYS_newfstatat, AT_FDCWD, path, w, 0));
    SHOW("stat path (legacy)", syscall(SYS_stat, w, &st));
    SHOW("fstat buffer", syscall(SYS_fstat, 0, w));
    SHOW("statx buffer", syscall(SYS_statx, AT_FDCWD, path, 0, 0x7ff, w));
    SHOW("readv iov array", syscall(SYS_readv, zero, w, 1));
    struct iovec iov = {w, 8};
    SHOW("readv iov_base", syscall(SYS_readv, zero, &iov, 1));
    SHOW("uname", syscall(SYS_uname, w));
    SHOW("getcwd", syscall(SYS_getcwd, w, 64));
    SHOW("pipe2", syscall(SYS_pipe2, w, 0));
    SHOW("gettimeofday", syscall(SYS_gettimeofday, w, NULL));
    SHOW("readlinkat buffer", syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", w, 64));
    SHOW("getrandom", syscall(SYS_getrandom, w, 8, 0));
    SHOW("rt_sigaction old", syscall(SYS_rt_sigaction, SIGUSR1, NULL, w, 8));
    /* drain whatever the pipe still holds */
    char sink[64];
    int fl = fcntl(p[0], F_GETFL);
    fcntl(p[0], F_SETFL, fl | O_NONBLOCK);
    while (read(p[0], sink, sizeof sink) > 0) {
    }
    fcntl(p[0], F_SETFL, fl);
  }
  close(p[0]);
  close(p[1]);
  close(zero);
  /* A buffer that starts mapped and runs into unmapped memory. */
  char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(two + 4096, 4096);
  zero = open("/dev/zero", O_RDONLY);
  long r = syscall(SYS_read, zero, two + 4096 - 8, 16);
  printf("read straddling into a hole: %s\n", r < 0 ? errname(errno) : r == 8 ? "short count 8" : "other count");
  close(zero);
  munmap(two, 4096);
  printf("still alive\n");
}

static void section_names(void) {
  printf("== ENAMETOOLONG\n");
  static char longpath[PATH_MAX + 100];
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[0] = '/';
  SHOW("open path > PATH_MAX", open(longpath, O_RDONLY));
  SHOW("stat path > PATH_MAX", syscall(SYS_newfstatat, AT_FDCWD, longpath, &(struct stat){0}, 0));
  SHOW("mkdir path > PATH_MAX", mkdir(longpath, 0755));
  char comp[300] = "/tmp/";
  memset(comp + 5, 'b', 260);
  comp[265] = 0;
  SHOW("open component > NAME_MAX", open(comp, O_RDONLY));
  SHOW("open component > NAME_MAX, O_CREAT", open(comp, O_RDWR | O_CREAT, 0600));
  comp[5 + 255] = 0; /* exactly NAME_MAX: a legal name that does not exist */
  SHOW("open component == NAME_MAX", open(comp, O_RDONLY));
}

static void section_ebadf(void) {
  printf("== EBADF\n");
  int fd = open("/dev/null", O_RDONLY);
  close(fd);
  char c;
  struct stat st;
  SHOW("read closed fd", read(fd, &c, 1));
  SHOW("write closed fd", write(fd, &c, 1));
  SHOW("fstat closed fd", fstat(fd, &st));
  SHOW("close closed fd", close(fd));
  SHOW("lseek closed fd", lseek(fd, 0, SEEK_SET));
  SHOW("fcntl closed fd", fcntl(fd, F_GETFL));
  SHOW("dup closed fd", dup(fd));
  SHOW("read fd -1", read(-1, &c, 1));
  SHOW("fstat fd 1000000", fstat(1000000, &st));
  SHOW("openat relative to a closed dirfd", openat(fd, "x", O_RDONLY));
  SHOW("openat absolute ignores a closed dirfd", (fd = openat(fd, "/dev/null", O_RDONLY)) >= 0 ? 0 : -1);
  close(fd);
  fd = open("/dev/null", O_RDONLY);
  SHOW("write to O_RDONLY fd", write(fd, "x", 1));
  close(fd);
  fd = open("/dev/null", O_WRONLY);
  SHOW("read from O_WRONLY fd", read(fd, &c, 1));
  SHOW("ioctl TCGETS on /dev/null", ioctl(fd, TCGETS, &(struct termios){0}));
  SHOW("ioctl TIOCGWINSZ on /dev/null", ioctl(fd, TIOCGWINSZ, &(struct winsize){0}));
  close(fd);
}

static void section_enosys(void) {
  printf("== ENOSYS\n");
  /* The sentry must answer unknown numbers with ENOSYS, count them, and log each number once. */
  for (int i = 0; i < 3; i++) SHOW("syscall 1000", syscall(1000, 1, 2, 3));
  SHOW("syscall 999999", syscall(999999));
  SHOW("syscall -1", syscall(-1L));
  SHOW("nfsservctl (removed from Linux)", syscall(SYS_nfsservctl, 0, 0, 0));
  SHOW("tuxcall (never implemented)", syscall(SYS_tuxcall));
  /* Real but unimplemented in the sentry; this machine kind's kernel has no kexec either. */
  SHOW("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
  printf("still alive\n");
}

static void section_identity(void) {
  printf("== identity\n");
  struct utsname u;
  SHOW("uname", uname(&u));
  printf("sysname: %s\n", u.sysname);
  printf("machine: %s\n", u.machine);
  BOOL("release non-empty", u.release[0] != 0);
  BOOL("nodename non-empty", u.nodename[0] != 0);
  pid_t pid = getpid();
  BOOL("getpid > 0", pid > 0);
  BOOL("gettid == getpid", syscall(SYS_gettid) == pid);
  BOOL("getppid >= 0", getppid() >= 0);
  BOOL("getppid != getpid", getppid() != pid);
  BOOL("getuid == geteuid", getuid() == geteuid());
  BOOL("getgid == getegid", getgid() == getegid());
  uid_t r, e, s;
  BOOL("getresuid agrees", getresuid(&r, &e, &s) == 0 && r == getuid() && e == geteuid());
  mode_t old = umask(027);
  (void)old;
  SHOW("umask returns the previous mask", umask(022));
  long tid_addr_ret = syscall(SYS_set_tid_address, NULL);
  BOOL("set_tid_address returns the tid", tid_addr_ret == pid);
  unsigned long fs = 0;
  SHOW("arch_prctl ARCH_GET_FS", syscall(SYS_arch_prctl, ARCH_GET_FS, &fs));
  BOOL("FS base set (TLS)", fs != 0);
  SHOW("arch_prctl bad code", syscall(SYS_arch_prctl, 0x9999, &fs));
  unsigned char rnd[16];
  SHOW("getrandom 16", getrandom(rnd, sizeof rnd, 0));
  SHOW("getrandom GRND_NONBLOCK", getrandom(rnd, sizeof rnd, GRND_NONBLOCK));
  SHOW("getrandom bad flags", getrandom(rnd, sizeof rnd, 0x1000));
  struct rlimit rl;
  SHOW("getrlimit NOFILE", getrlimit(RLIMIT_NOFILE, &rl));
  BOOL("NOFILE cur <= max", rl.rlim_cur <= rl.rlim_max);
  SHOW("getrlimit STACK", getrlimit(RLIMIT_STACK, &rl));
  BOOL("STACK cur > 0", rl.rlim_cur > 0);
  SHOW("prlimit64 get NOFILE", syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl));
  SHOW("getrlimit bad resource", syscall(SYS_getrlimit, 1000, &rl));
  struct sysinfo si;
  SHOW("sysinfo", sysinfo(&si));
  BOOL("sysinfo totalram > 0", si.totalram > 0 && si.mem_unit > 0);
  BOOL("sysinfo procs > 0", si.procs > 0);
  /* Process group -INT_MIN cannot exist: ESRCH (the sentry once overflowed negating it). */
  SHOW("kill pid INT_MIN", syscall(SYS_kill, INT_MIN, 0));
  SHOW("wait4 pid INT_MIN WNOHANG", syscall(SYS_wait4, INT_MIN, NULL, 1, NULL));
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  section_efault();
  section_names();
  section_ebadf();
  section_enosys();
  section_identity();
  printf("done\n");
  return 0;
}

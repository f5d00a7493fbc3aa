/* files: file descriptors, reads and writes, seeking, directories, renames, dup/fcntl,
 * pipes, /dev/null and /dev/zero, /proc/self/exe, getcwd/chdir, and their errors. */
#include "nv.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* Paths in /tmp, suffixed with argv[1] when given, so that concurrent test runs on one
 * machine do not collide (the harness passes the same suffix to the native and sandboxed run). */
static char FILE_A[128], FILE_B[128], DIR_A[128];

/* DIR_A "/" name, in a static buffer per slot. */
static const char *in_dir(int slot, const char *name) {
  static char buf[4][160];
  snprintf(buf[slot], sizeof buf[slot], "%s/%s", DIR_A, name);
  return buf[slot];
}

static void cleanup(void) {
  unlink(FILE_A);
  unlink(FILE_B);
  unlink(in_dir(0, "a"));
  unlink(in_dir(0, "b"));
  unlink(in_dir(0, "c"));
  rmdir(in_dir(0, "sub"));
  rmdir(DIR_A);
}

static const char *type_name(mode_t m) {
  if (S_ISREG(m)) return "regular";
  if (S_ISDIR(m)) return "directory";
  if (S_ISCHR(m)) return "chardev";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

static const char *dtype_name(unsigned char t) {
  switch (t) {
  case DT_REG: return "reg";
  case DT_DIR: return "dir";
  case DT_LNK: return "lnk";
  case DT_UNKNOWN: return "unknown";
  default: return "other";
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_stat(const char *what, int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    printf("%s: fstat %s\n", what, errname(errno));
    return;
  }
  /* A directory's size depends on the file system, so only regular files show one. */
  if (S_ISREG(st.st_mode))
    printf("%s: type=%s perm=%04o size=%lld\n", what, type_name(st.st_mode),
           (unsigned)(st.st_mode & 07777), (long long)st.st_size);
  else
    printf("%s: type=%s perm=%04o\n", what, type_name(st.st_mode), (unsigned)(st.st_mode & 07777));
}

static void section_basic_io(void) {
  printf("== basic io\n");
  int fd = open(FILE_A, O_RDWR | O_CREAT | O_EXCL, 0640);
  BOOL("open O_CREAT|O_EXCL", fd >= 0);
  OKERR("open O_CREAT|O_EXCL again", open(FILE_A, O_RDWR | O_CREAT | O_EXCL, 0640));
  print_stat("fstat new", fd);
  SHOW("write", write(fd, "hello, world\n", 13));
  print_stat("fstat after write", fd);
  SHOW("lseek SEEK_CUR 0", lseek(fd, 0, SEEK_CUR));
  char buf[64] = {0};
  SHOW("read at eof", read(fd, buf, sizeof buf));
  SHOW("pread 5@7", pread(fd, buf, 5, 7));
  printf("pread data: %.5s\n", buf);
  SHOW("pwrite 5@0", pwrite(fd, "HELLO", 5, 0));
  SHOW("lseek SEEK_CUR after pwrite", lseek(fd, 0, SEEK_CUR));
  SHOW("lseek SEEK_SET 0", lseek(fd, 0, SEEK_SET));
  memset(buf, 0, sizeof buf);
  SHOW("read all", read(fd, buf, sizeof buf));
  printf("read data: %s", buf);
  SHOW("lseek SEEK_END -6", lseek(fd, -6, SEEK_END));
  SHOW("lseek SEEK_CUR +2", lseek(fd, 2, SEEK_CUR));
  SHOW("lseek bad whence", lseek(fd, 0, 99));
  SHOW("lseek negative", lseek(fd, -100, SEEK_SET));
  SHOW("lseek past end", lseek(fd, 100, SEEK_SET));
  SHOW("read past end", read(fd, buf, sizeof buf));

  /* writev / readv */
  SHOW("lseek SEEK_SET 0", lseek(fd, 0, SEEK_SET));
  struct iovec wv[3] = {{"abc", 3}, {"", 0}, {"defgh", 5}};
  SHOW("writev", writev(fd, wv, 3));
  char r1[2] = {0}, r2[4] = {0}, r3[32] = {0};
  struct iovec rv[3] = {{r1, 2}, {r2, 4}, {r3, sizeof r3 - 1}};
  SHOW("lseek SEEK_SET 0", lseek(fd, 0, SEEK_SET));
  SHOW("readv", readv(fd, rv, 3));
  printf("readv data: [%.2s] [%.4s] [%.5s]\n", r1, r2, r3);
  SHOW("writev bad iovcnt", syscall(SYS_writev, fd, wv, -1));

  /* ftruncate */
  SHOW("ftruncate 3", ftruncate(fd, 3));
  print_stat("fstat after ftruncate 3", fd);
  SHOW("ftruncate 10000", ftruncate(fd, 10000));
  print_stat("fstat after ftruncate 10000", fd);
  memset(buf, 'x', sizeof buf);
  SHOW("pread in hole", pread(fd, buf, 8, 5000));
  int zeros = 1;
  for (int i = 0; i < 8; i++) zeros &= buf[i] == 0;
  BOOL("hole reads zeros", zeros);
  SHOW("ftruncate negative", ftruncate(fd, -1));
  SHOW("fsync", fsync(fd));
  SHOW("close", close(fd));
  SHOW("close again", close(fd));
  SHOW("read closed fd", read(fd, buf, 1));
  SHOW("write closed fd", write(fd, buf, 1));
}

static void section_paths(void) {
  printf("== paths\n");
  struct stat st;
  SHOW("stat", stat(FILE_A, &st));
  printf("stat: type=%s perm=%04o size=%lld\n", type_name(st.st_mode),
         (unsigned)(st.st_mode & 07777), (long long)st.st_size);
  SHOW("access R_OK", access(FILE_A, R_OK));
  SHOW("faccessat F_OK", faccessat(AT_FDCWD, FILE_A, F_OK, 0));
  SHOW("access missing", access("/tmp/nv-files-missing", F_OK));
  SHOW("rename", rename(FILE_A, FILE_B));
  SHOW("stat old name", stat(FILE_A, &st));
  SHOW("stat new name", stat(FILE_B, &st));
  SHOW("rename missing", rename(FILE_A, FILE_B));
  OKERR("open missing", open("/tmp/nv-files-missing", O_RDONLY));
  char through[160];
  snprintf(through, sizeof through, "%s/x", FILE_B);
  OKERR("open through a file", open(through, O_RDONLY));
  OKERR("open dir O_WRONLY", open("/tmp", O_WRONLY));
  OKERR("open O_DIRECTORY on file", open(FILE_B, O_RDONLY | O_DIRECTORY));
  OKERR("open empty path", open("", O_RDONLY));
  SHOW("unlink", unlink(FILE_B));
  SHOW("unlink again", unlink(FILE_B));
}

static void section_dirs(void) {
  printf("== directories\n");
  SHOW("mkdir", mkdir(DIR_A, 0755));
  SHOW("mkdir again", mkdir(DIR_A, 0755));
  SHOW("mkdir missing parent", mkdir("/tmp/nv-files-missing/sub", 0755));
  int dfd = open(DIR_A, O_RDONLY | O_DIRECTORY);
  BOOL("open dir", dfd >= 0);
  print_stat("fstat dir", dfd);
  const char *names[] = {"c", "a", "b"};
  for (int i = 0; i < 3; i++) {
    int fd = openat(dfd, names[i], O_WRONLY | O_CREAT | O_EXCL, 0600);
    printf("openat %s: %s\n", names[i], fd >= 0 ? "ok" : errname(errno));
    if (fd >= 0) {
      SHOW("  write", write(fd, names[i], 1));
      close(fd);
    }
  }
  SHOW("mkdirat sub", mkdirat(dfd, "sub", 0700));
  char buf[64];
  SHOW("read dir fd", read(dfd, buf, sizeof buf));

  /* getdents64, sorted, since the order is the file system's */
  char dents[4096];
  char *seen[32];
  int n = 0;
  for (;;) {
    long got = syscall(SYS_getdents64, dfd, dents, sizeof dents);
    if (got < 0) {
      printf("getdents64: %s\n", errname(errno));
      break;
    }
    if (got == 0) break;
    for (long off = 0; off < got;) {
      struct {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      } *d = (void *)(dents + off);
      if (n < 32) {
        char *s = malloc(strlen(d->name) + 16);
        sprintf(s, "%s %s", d->name, dtype_name(d->type));
        seen[n++] = s;
      }
      off += d->reclen;
    }
  }
  qsort(seen, n, sizeof seen[0], cmp_str);
  printf("getdents64: %d entries\n", n);
  for (int i = 0; i < n; i++) {
    printf("  %s\n", seen[i]);
    free(seen[i]);
  }
  int nullfd = open("/dev/null", O_RDONLY);
  SHOW("getdents64 on a non-directory", syscall(SYS_getdents64, nullfd, dents, sizeof dents));
  close(nullfd);

  SHOW("rmdir non-empty", rmdir(DIR_A));
  SHOW("unlink a dir", unlink(in_dir(0, "sub")));
  SHOW("rmdir a file", rmdir(in_dir(0, "a")));
  SHOW("unlinkat a", unlinkat(dfd, "a", 0));
  SHOW("unlinkat sub AT_REMOVEDIR", unlinkat(dfd, "sub", AT_REMOVEDIR));
  SHOW("renameat b->bb", renameat(dfd, "b", dfd, "bb"));
  SHOW("unlinkat b", unlinkat(dfd, "b", 0));
  SHOW("unlinkat bb", unlinkat(dfd, "bb", 0));
  SHOW("unlinkat c", unlinkat(dfd, "c", 0));

  /* cwd */
  char cwd[256];
  SHOW("chdir", chdir(DIR_A));
  printf("getcwd: %s\n", getcwd(cwd, sizeof cwd) ? cwd : errname(errno));
  SHOW("getcwd tiny buffer", syscall(SYS_getcwd, cwd, 2));
  SHOW("chdir ..", chdir(".."));
  printf("getcwd: %s\n", getcwd(cwd, sizeof cwd) ? cwd : errname(errno));
  SHOW("chdir to a file", chdir("/dev/null"));
  SHOW("chdir missing", chdir("/tmp/nv-files-missing"));
  SHOW("close dir", close(dfd));
  SHOW("rmdir", rmdir(DIR_A));
  SHOW("rmdir again", rmdir(DIR_A));
}

static void section_fds(void) {
  printf("== dup and fcntl\n");
  int fd = open("/dev/null", O_RDWR);
  BOOL("open /dev/null", fd >= 0);
  int d = dup(fd);
  BOOL("dup is a new fd", d >= 0 && d != fd);
  SHOW("close dup", close(d));
  BOOL("dup reuses the lowest free fd", dup(fd) == d);
  close(d);
  SHOW("dup2 to 100", dup2(fd, 100));
  SHOW("dup2 same fd", dup2(100, 100));
  SHOW("dup2 bad fd", dup2(999, 101));
  SHOW("dup3 to 101 O_CLOEXEC", dup3(fd, 101, O_CLOEXEC));
  SHOW("dup3 same fd", dup3(101, 101, 0));
  SHOW("dup3 bad flags", dup3(fd, 102, 0x1234));
  SHOW("F_GETFD 100", fcntl(100, F_GETFD));
  SHOW("F_GETFD 101", fcntl(101, F_GETFD));
  SHOW("F_SETFD 100", fcntl(100, F_SETFD, FD_CLOEXEC));
  SHOW("F_GETFD 100", fcntl(100, F_GETFD));
  errno = 0;
  int fl = fcntl(fd, F_GETFL);
  printf("F_GETFL: accmode=%d append=%d nonblock=%d\n", fl & O_ACCMODE, !!(fl & O_APPEND),
         !!(fl & O_NONBLOCK));
  SHOW("F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, O_NONBLOCK));
  fl = fcntl(100, F_GETFL);
  printf("F_GETFL via dup: accmode=%d nonblock=%d\n", fl & O_ACCMODE, !!(fl & O_NONBLOCK));
  int r = fcntl(fd, F_DUPFD, 200);
  printf("F_DUPFD 200: %d\n", r);
  SHOW("fcntl bad fd", fcntl(999, F_GETFD));
  close(100);
  close(101);
  close(r);
  close(fd);

  printf("== pipes\n");
  int p[2];
  SHOW("pipe2 O_CLOEXEC", pipe2(p, O_CLOEXEC));
  SHOW("F_GETFD read end", fcntl(p[0], F_GETFD));
  SHOW("write pipe", write(p[1], "ping", 4));
  char buf[16] = {0};
  SHOW("read pipe", read(p[0], buf, sizeof buf));
  printf("pipe data: %s\n", buf);
  SHOW("lseek pipe", lseek(p[0], 0, SEEK_SET));
  SHOW("pread pipe", pread(p[0], buf, 1, 0));
  SHOW("read write-end", read(p[1], buf, 1));
  SHOW("write read-end", write(p[0], buf, 1));
  struct stat st;
  fstat(p[0], &st);
  printf("pipe type: %s\n", type_name(st.st_mode));
  SHOW("pipe2 bad flags", pipe2(p + 0, 0x1234));
  close(p[1]);
  SHOW("read after writer closed", read(p[0], buf, sizeof buf));
  close(p[0]);

  printf("== devices\n");
  fd = open("/dev/null", O_RDWR);
  SHOW("read /dev/null", read(fd, buf, sizeof buf));
  SHOW("write /dev/null", write(fd, "abc", 3));
  print_stat("fstat /dev/null", fd);
  close(fd);
  fd = open("/dev/zero", O_RDONLY);
  memset(buf, 'x', sizeof buf);
  SHOW("read /dev/zero", read(fd, buf, sizeof buf));
  int zeros = 1;
  for (unsigned i = 0; i < sizeof buf; i++) zeros &= buf[i] == 0;
  BOOL("/dev/zero gives zeros", zeros);
  close(fd);
}

static void section_proc(const char *argv0) {
  printf("== /proc/self/exe\n");
  char link[4096];
  ssize_t n = readlink("/proc/self/exe", link, sizeof link - 1);
  if (n < 0) {
    printf("readlink: %s\n", errname(errno));
  } else {
    link[n] = 0;
    const char *base = strrchr(link, '/');
    base = base ? base + 1 : link;
    printf("readlink basename: %s\n", base);
    const char *me = strrchr(argv0, '/');
    me = me ? me + 1 : argv0;
    BOOL("matches argv[0] basename", strcmp(base, me) == 0);
    BOOL("absolute", link[0] == '/');
  }
  SHOW("readlink not a link", readlink("/dev/null", link, sizeof link));
  SHOW("readlink missing", readlink("/tmp/nv-files-missing", link, sizeof link));
}

/* close_range: a block of fds closed, or marked close-on-exec, and the bad arguments. */
static void section_close_range(void) {
  int base = dup2(1, 40);
  dup2(1, 41);
  dup2(1, 42);
  dup2(1, 50);
  SHOW("close_range cloexec 41..42", syscall(SYS_close_range, 41, 42, 4));
  SHOW("fd 41 flags", fcntl(41, F_GETFD));
  SHOW("fd 40 flags", fcntl(40, F_GETFD));
  SHOW("close_range 40..45", syscall(SYS_close_range, base, 45, 0));
  SHOW("fd 41 after", fcntl(41, F_GETFD));
  SHOW("fd 50 untouched", fcntl(50, F_GETFD));
  SHOW("close_range unshare 50..~0", syscall(SYS_close_range, 50, ~0U, 2));
  SHOW("fd 50 after", fcntl(50, F_GETFD));
  SHOW("close_range first > last", syscall(SYS_close_range, 5, 4, 0));
  SHOW("close_range bad flags", syscall(SYS_close_range, 40, 41, 1));
}

/* /dev/shm is a writable tmpfs (POSIX shared memory and semaphores live there). */
static void section_dev_shm(const char *tag) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/nv-files-shm%s", tag);
  int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
  OKERR("create in /dev/shm", fd);
  SHOW("write", write(fd, "shared", 6));
  char back[8] = {0};
  SHOW("pread", pread(fd, back, sizeof back, 0));
  printf("read back: %s\n", back);
  close(fd);
  SHOW("unlink", unlink(path));
}

/* preadv/pwritev (Node's fs.writev/readv with a position), sync and syncfs. */
static void section_vectors(void) {
  int fd = open(FILE_A, O_CREAT | O_RDWR | O_TRUNC, 0644);
  struct iovec w[2] = {{"head", 4}, {"tail", 4}};
  SHOW("pwritev at 2", syscall(SYS_pwritev, fd, w, 2, 2L, 0L));
  SHOW("position unchanged", lseek(fd, 0, SEEK_CUR));
  char x[3] = {0}, y[6] = {0};
  struct iovec r[2] = {{x, 2}, {y, 5}};
  SHOW("preadv at 1", syscall(SYS_preadv, fd, r, 2, 1L, 0L));
  printf("read: [%s] [%s]\n", x, y);
  SHOW("preadv2 at the position (-1)", syscall(SYS_preadv2, fd, r, 2, -1L, 0L, 0L));
  SHOW("pwritev at -1", syscall(SYS_pwritev, fd, w, 2, -1L, 0L));
  SHOW("preadv2 unknown flag", syscall(SYS_preadv2, fd, r, 2, 0L, 0L, 0x1000L));
  int p[2];
  pipe(p);
  SHOW("pwritev on a pipe", syscall(SYS_pwritev, p[1], w, 2, 0L, 0L));
  close(p[0]);
  close(p[1]);
  sync();
  SHOW("syncfs", syncfs(fd));
  close(fd);
  SHOW("syncfs bad fd", syncfs(fd));
  unlink(FILE_A);
}

int main(int argc, char **argv) {
  const char *tag = argc > 1 ? argv[1] : "";
  snprintf(FILE_A, sizeof FILE_A, "/tmp/nv-files-test%s", tag);
  snprintf(FILE_B, sizeof FILE_B, "/tmp/nv-files-test-renamed%s", tag);
  snprintf(DIR_A, sizeof DIR_A, "/tmp/nv-files-dir%s", tag);
  setvbuf(stdout, NULL, _IOLBF, 0);
  umask(022);
  cleanup();
  section_basic_io();
  section_paths();
  section_dirs();
  section_fds();
  section_proc(argv[0]);
  section_close_range();
  section_dev_shm(tag);
  section_vectors();
  cleanup();
  printf("done\n");
  return 0;
}

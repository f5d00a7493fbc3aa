/* Advisory locks between processes: fcntl record locks (POSIX, owned by a process, gone
 * when it closes any descriptor of the file or ends), OFD locks (owned by the open
 * file), and flock (whole-file, a namespace of its own). Natively and in the sandbox;
 * argv[1] tags the file so runs do not meet. */
#include "nv.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static char path[128];
static int to_child[2], to_parent[2];

static int lk(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = {0};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return fcntl(fd, cmd, &fl);
}

static void say(int fd) { char c = 1; (void)!write(fd, &c, 1); }
static void hear(int fd) { char c; (void)!read(fd, &c, 1); }

static void describe(const char *what, int fd, int cmd, short type, off_t start, off_t len,
                     pid_t expect) {
  struct flock fl = {0};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  int r = fcntl(fd, cmd, &fl);
  if (r < 0) {
    printf("%s: %s\n", what, errname(errno));
    return;
  }
  if (fl.l_type == F_UNLCK) {
    printf("%s: unlocked\n", what);
    return;
  }
  printf("%s: %s lock at %ld len %ld, held by %s\n", what, fl.l_type == F_WRLCK ? "write" : "read",
         (long)fl.l_start, (long)fl.l_len,
         fl.l_pid == expect ? "the expected owner" : fl.l_pid == -1 ? "an open file" : "someone else");
}

static void child(pid_t parent) {
  int fd = open(path, O_RDWR);
  hear(to_child[0]);
  describe("child F_GETLK write 0..10", fd, F_GETLK, F_WRLCK, 0, 10, parent);
  describe("child F_GETLK read 100..", fd, F_GETLK, F_RDLCK, 100, 0, parent);
  SHOW("child F_SETLK write 50..60", lk(fd, F_SETLK, F_WRLCK, 50, 10));
  SHOW("child F_SETLK read 100..200", lk(fd, F_SETLK, F_RDLCK, 100, 100));
  fflush(stdout);
  say(to_parent[1]);
  SHOW("child F_SETLKW write 0..10 (waits for the parent)", lk(fd, F_SETLKW, F_WRLCK, 0, 10));
  fflush(stdout);
  say(to_parent[1]);
  hear(to_child[0]);
  /* The parent closed another descriptor of the file: all its record locks went. */
  SHOW("child F_SETLK write 20..30 after the parent's close", lk(fd, F_SETLK, F_WRLCK, 20, 10));
  describe("child F_OFD_GETLK write 1000..", fd, F_OFD_GETLK, F_WRLCK, 1000, 0, parent);
  SHOW("child flock LOCK_EX|LOCK_NB", flock(fd, LOCK_EX | LOCK_NB));
  SHOW("child flock LOCK_SH|LOCK_NB", flock(fd, LOCK_SH | LOCK_NB));
  SHOW("child fcntl lock beside the parent's flock", lk(fd, F_SETLK, F_WRLCK, 5000, 1));
  fflush(stdout);
  say(to_parent[1]);
  SHOW("child flock LOCK_EX (waits for the parent)", flock(fd, LOCK_EX));
  fflush(stdout);
  /* Ends holding locks: they go with it. */
  SHOW("child takes 7000..7010", lk(fd, F_SETLK, F_WRLCK, 7000, 10));
  fflush(stdout);
  _exit(0);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(path, sizeof path, "/tmp/nv-locks-%s", argc > 1 ? argv[1] : "x");
  unlink(path);
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  (void)!write(fd, "0123456789", 10);
  (void)!pipe(to_child);
  (void)!pipe(to_parent);
  pid_t me = getpid();
  SHOW("F_SETLK write 0..100", lk(fd, F_SETLK, F_WRLCK, 0, 100));
  SHOW("F_SETLK read 200..", lk(fd, F_SETLK, F_RDLCK, 200, 0));
  describe("own F_GETLK", fd, F_GETLK, F_WRLCK, 0, 10, me);
  int ro = open(path, O_RDONLY);
  SHOW("write lock on a read-only descriptor", lk(ro, F_SETLK, F_WRLCK, 0, 1));
  struct flock bad = {.l_type = F_WRLCK, .l_whence = 7};
  SHOW("bad whence", fcntl(fd, F_SETLK, &bad));
  SHOW("negative start", lk(fd, F_SETLK, F_WRLCK, -5, 1));
  SHOW("bad type", lk(fd, F_SETLK, 9, 0, 1));
  struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1000, .l_pid = 1};
  SHOW("OFD lock with l_pid set", fcntl(fd, F_OFD_SETLK, &ofd));
  fflush(stdout);

  pid_t c = fork();
  if (c == 0) child(me);
  say(to_child[1]);
  hear(to_parent[0]);
  usleep(100000);
  int unlocked = lk(fd, F_SETLK, F_UNLCK, 0, 100);
  hear(to_parent[0]);
  SHOW("parent unlocked 0..100", unlocked);
  /* An OFD lock stays with its open file; a record lock goes with any close. */
  int ofd_fd = open(path, O_RDWR);
  ofd.l_pid = 0;
  SHOW("parent OFD lock 1000..", fcntl(ofd_fd, F_OFD_SETLK, &ofd));
  SHOW("parent record lock 20..30", lk(fd, F_SETLK, F_WRLCK, 20, 10));
  close(ro);
  SHOW("parent flock LOCK_EX", flock(fd, LOCK_EX));
  int dup_fd = dup(fd);
  SHOW("flock again through a duplicate", flock(dup_fd, LOCK_EX | LOCK_NB));
  say(to_child[1]);
  hear(to_parent[0]);
  usleep(100000);
  int unflocked = flock(fd, LOCK_UN);
  int st;
  waitpid(c, &st, 0);
  SHOW("parent flock LOCK_UN", unflocked);
  printf("child exited %d\n", WEXITSTATUS(st));
  SHOW("the child's locks went with it", lk(fd, F_SETLK, F_WRLCK, 7000, 10));
  close(dup_fd);
  close(ofd_fd);
  close(fd);
  unlink(path);
  return 0;
}

/* Named pipes: mkfifo, opens that wait for the other side (or fail with ENXIO, or not
 * at all with O_RDWR), data between processes, end of file when the writer goes, and
 * mknod's other kinds. Natively and in the sandbox; argv[1] tags the paths. */
#include "nv.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  char path[128], file[128];
  snprintf(path, sizeof path, "/tmp/nv-fifo-%s", argc > 1 ? argv[1] : "x");
  snprintf(file, sizeof file, "/tmp/nv-mknod-%s", argc > 1 ? argv[1] : "x");
  unlink(path);
  unlink(file);
  SHOW("mkfifo", mkfifo(path, 0600));
  SHOW("mkfifo again", mkfifo(path, 0600));
  struct stat st;
  stat(path, &st);
  printf("a FIFO: %s, size %ld, mode %o\n", S_ISFIFO(st.st_mode) ? "yes" : "no", (long)st.st_size,
         st.st_mode & 0777);
  SHOW("open for writing, non-blocking, no reader", open(path, O_WRONLY | O_NONBLOCK));
  int r = open(path, O_RDONLY | O_NONBLOCK);
  OKERR("open for reading, non-blocking", r);
  char buf[64];
  SHOW("read with no writer", read(r, buf, sizeof buf));
  int w = open(path, O_WRONLY | O_NONBLOCK);
  OKERR("open for writing with a reader", w);
  SHOW("write", write(w, "abc", 3));
  struct pollfd pf = {r, POLLIN, 0};
  SHOW("poll", poll(&pf, 1, 0));
  SHOW("read", read(r, buf, sizeof buf));
  close(w);
  SHOW("read after the writer went", read(r, buf, sizeof buf));
  close(r);

  /* Blocking opens meet: the child writes, the parent reads to end of file. */
  pid_t c = fork();
  if (c == 0) {
    int cw = open(path, O_WRONLY);
    (void)!write(cw, "hello through the fifo", 22);
    _exit(0);
  }
  r = open(path, O_RDONLY);
  OKERR("blocking open for reading", r);
  int n, total = 0;
  while ((n = read(r, buf + total, sizeof buf - total)) > 0) total += n;
  printf("read %d bytes: %.*s, then %d\n", total, total, buf, n);
  waitpid(c, NULL, 0);
  close(r);

  int rw = open(path, O_RDWR);
  OKERR("open O_RDWR never waits", rw);
  SHOW("write to itself", write(rw, "xy", 2));
  SHOW("read back", read(rw, buf, sizeof buf));
  close(rw);

  r = open(path, O_RDONLY | O_NONBLOCK);
  w = open(path, O_WRONLY);
  close(r);
  SHOW("write with the reader gone", write(w, "z", 1));
  close(w);
  SHOW("unlink", unlink(path));

  SHOW("mknod a regular file", mknod(file, S_IFREG | 0600, 0));
  stat(file, &st);
  printf("regular: %s\n", S_ISREG(st.st_mode) ? "yes" : "no");
  SHOW("mknod over it", mknod(file, S_IFIFO | 0600, 0));
  unlink(file);
  SHOW("mknod a directory", mknod(file, S_IFDIR | 0700, 0));
  SHOW("mknod a bad type", mknod(file, 0170000, 0));
  SHOW("mknodat a FIFO", mknodat(AT_FDCWD, file, S_IFIFO | 0640, 0));
  stat(file, &st);
  printf("a FIFO: %s\n", S_ISFIFO(st.st_mode) ? "yes" : "no");
  unlink(file);
  return 0;
}

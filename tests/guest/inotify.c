/* inotify: the events of creating, writing, renaming (within and across directories,
 * over an existing file), chmod, truncation, unlinking and removing directories, as one
 * instance watching two directories and a file reads them; IN_ONESHOT, inotify_rm_watch,
 * and the errors. Runs in a fresh directory under /tmp given as argv[1]. */
#include "nv.h"
#include <fcntl.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static int ino;
static unsigned last_cookie;

static void mask_names(unsigned m) {
  static const struct { unsigned bit; const char *name; } names[] = {
      {IN_ACCESS, "ACCESS"}, {IN_MODIFY, "MODIFY"}, {IN_ATTRIB, "ATTRIB"},
      {IN_CLOSE_WRITE, "CLOSE_WRITE"}, {IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"}, {IN_OPEN, "OPEN"},
      {IN_MOVED_FROM, "MOVED_FROM"}, {IN_MOVED_TO, "MOVED_TO"}, {IN_CREATE, "CREATE"},
      {IN_DELETE, "DELETE"}, {IN_DELETE_SELF, "DELETE_SELF"}, {IN_MOVE_SELF, "MOVE_SELF"},
      {IN_Q_OVERFLOW, "Q_OVERFLOW"}, {IN_IGNORED, "IGNORED"}, {IN_ISDIR, "ISDIR"}};
  for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
    if (m & names[i].bit) printf(" %s", names[i].name);
}

/* Print every event queued now. */
static void drain(const char *after) {
  char buf[4096] __attribute__((aligned(8)));
  int queued = -1;
  ioctl(ino, FIONREAD, &queued);
  printf("after %s (%s bytes queued):\n", after, queued > 0 ? "some" : "no");
  for (;;) {
    ssize_t n = read(ino, buf, sizeof buf);
    if (n <= 0) break;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      printf("  wd %d", e->wd);
      mask_names(e->mask);
      if (e->cookie) {
        printf(" cookie %s", e->cookie == last_cookie ? "same" : "new");
        last_cookie = e->cookie;
      }
      if (e->len) printf(" name %s", e->name);
      printf("\n");
      p += sizeof *e + e->len;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2 || strlen(argv[1]) > 100) return 2;
  char a[200], b[200], f[256], g[256], t[256];
  snprintf(a, sizeof a, "%s/a", argv[1]);
  snprintf(b, sizeof b, "%s/b", argv[1]);
  mkdir(argv[1], 0755);
  mkdir(a, 0755);
  mkdir(b, 0755);
  ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  unsigned events = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE |
                    IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF;
  SHOW("watch a", inotify_add_watch(ino, a, events));
  SHOW("watch b", inotify_add_watch(ino, b, events));
  SHOW("watch a again (same wd)", inotify_add_watch(ino, a, events | IN_MASK_ADD));

  snprintf(f, sizeof f, "%s/file", a);
  int fd = open(f, O_CREAT | O_WRONLY, 0644);
  drain("create");
  SHOW("watch the file", inotify_add_watch(ino, f, events));
  write(fd, "hello", 5);
  close(fd);
  drain("write");
  chmod(f, 0600);
  drain("chmod");
  truncate(f, 1);
  drain("truncate");
  snprintf(g, sizeof g, "%s/renamed", a);
  rename(f, g);
  drain("rename within a");
  snprintf(t, sizeof t, "%s/target", b);
  close(open(t, O_CREAT | O_WRONLY, 0644));
  drain("create the target in b");
  rename(g, t);
  drain("rename over the target in b");
  unlink(t);
  drain("unlink");
  char d[256];
  snprintf(d, sizeof d, "%s/dir", b);
  mkdir(d, 0755);
  SHOW("watch the dir oneshot", inotify_add_watch(ino, d, IN_ATTRIB | IN_ONESHOT));
  chmod(d, 0700);
  chmod(d, 0755);
  rmdir(d);
  drain("mkdir, chmod twice, rmdir");
  SHOW("rm_watch b", inotify_rm_watch(ino, 2));
  SHOW("rm_watch b again", inotify_rm_watch(ino, 2));
  rmdir(b);
  drain("rm_watch and rmdir b");

  char small[8];
  snprintf(g, sizeof g, "%s/x", a);
  close(open(g, O_CREAT | O_WRONLY, 0644));
  SHOW("read into 8 bytes", read(ino, small, sizeof small));
  drain("x");
  SHOW("read with nothing queued", read(ino, small, sizeof small));
  SHOW("watch a missing path", inotify_add_watch(ino, "/nonexistent/x", IN_CREATE));
  SHOW("IN_ONLYDIR on a file", inotify_add_watch(ino, g, IN_CREATE | IN_ONLYDIR));
  SHOW("no events in the mask", inotify_add_watch(ino, a, 0));
  SHOW("add_watch on a non-inotify fd", inotify_add_watch(1, a, IN_CREATE));
  SHOW("rm_watch on a non-inotify fd", inotify_rm_watch(1, 1));
  SHOW("inotify_init1 bad flags", inotify_init1(1));
  unlink(g);
  rmdir(a);
  rmdir(argv[1]);
  drain("cleanup");
  return 0;
}

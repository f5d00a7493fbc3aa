/* Credentials: supplementary groups, a temporary drop of the effective uid and its
 * return through the saved one, a permanent drop to an unprivileged user, what is then
 * refused, and what /proc/self/status says. Run as root natively and in the sandbox; the
 * changes happen in a child, raw syscalls (glibc would broadcast them to other threads,
 * and there are none). */
#include "nv.h"
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void ids(const char *when) {
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  printf("%s: uid %u %u %u gid %u %u %u\n", when, r, e, s, gr, ge, gs);
}

static void groups(const char *when) {
  gid_t g[16];
  long n = syscall(SYS_getgroups, 0, NULL);
  long m = syscall(SYS_getgroups, 16, g);
  printf("%s: %ld groups:", when, n);
  for (long i = 0; i < m; i++) printf(" %u", g[i]);
  printf("\n");
  if (n > 0) SHOW("getgroups(size too small)", syscall(SYS_getgroups, 1, g));
}

static void status_lines(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  if (!f) { SHOW("status", -1); return; }
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7))
      printf("status %s", line);
  fclose(f);
}

static void child(void) {
  gid_t set[] = {30, 10, 20};
  SHOW("setgroups", syscall(SYS_setgroups, 3, set));
  groups("after setgroups");
  SHOW("setresuid(-1, 1000, -1)", syscall(SYS_setresuid, -1, 1000, -1));
  ids("dropped for now");
  SHOW("setgroups unprivileged", syscall(SYS_setgroups, 0, NULL));
  SHOW("setuid(0) through the saved uid", syscall(SYS_setuid, 0));
  ids("back");
  SHOW("setgid(100)", syscall(SYS_setgid, 100));
  SHOW("setreuid(1000, 1000)", syscall(SYS_setreuid, 1000, 1000));
  ids("user");
  status_lines();
  SHOW("setuid(0)", syscall(SYS_setuid, 0));
  SHOW("setresuid(0, -1, -1)", syscall(SYS_setresuid, 0, -1, -1));
  SHOW("setgid(0)", syscall(SYS_setgid, 0));
  SHOW("setregid(-1, 100)", syscall(SYS_setregid, -1, 100));
  SHOW("setgroups(0)", syscall(SYS_setgroups, 0, NULL));
  ids("end");
}

int main(void) {
  ids("start");
  fflush(stdout);
  pid_t c = fork();
  if (c == 0) {
    child();
    fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(c, &st, 0);
  printf("child exited %d\n", WEXITSTATUS(st));
  ids("parent unchanged");
  return 0;
}

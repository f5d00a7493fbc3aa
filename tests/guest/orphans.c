/* Orphans: a subreaper (as a container's init is, and tini -s makes itself) adopts the
 * children of a child that exits first: a running grandchild sees its parent change and
 * is reaped by the subreaper; a zombie grandchild is handed over too. */
#include "nv.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int main(void) {
  SHOW("PR_SET_CHILD_SUBREAPER", prctl(PR_SET_CHILD_SUBREAPER, 1));
  int on = -1;
  SHOW("PR_GET_CHILD_SUBREAPER", prctl(PR_GET_CHILD_SUBREAPER, &on));
  printf("subreaper: %d\n", on);
  pid_t me = getpid();
  int p[2];
  pipe(p);

  /* A child that leaves a running grandchild behind. */
  pid_t c = fork();
  if (c == 0) {
    pid_t mid = getpid();
    if (fork() == 0) {
      close(p[0]);
      for (int i = 0; i < 400 && getppid() == mid; i++) sleep_ms(5);
      char ok = getppid() == me ? 'y' : 'n';
      write(p[1], &ok, 1);
      _exit(5);
    }
    _exit(0);
  }
  close(p[1]);
  int st;
  SHOW("waitpid(child)", waitpid(c, &st, 0) == c);
  printf("child exited %d\n", WEXITSTATUS(st));
  char ok = '?';
  read(p[0], &ok, 1);
  printf("grandchild saw the subreaper as its parent: %c\n", ok);
  pid_t g = wait(&st);
  printf("reaped the grandchild: %s, exited %d\n", g > 0 && g != c ? "yes" : "no", WEXITSTATUS(st));

  /* A child whose own child is a zombie it never reaps. */
  c = fork();
  if (c == 0) {
    if (fork() == 0) _exit(6);
    sleep_ms(100); /* the grandchild is a zombie by now */
    _exit(0);
  }
  waitpid(c, &st, 0);
  printf("second child exited %d\n", WEXITSTATUS(st));
  g = wait(&st);
  printf("reaped the zombie grandchild: %s, exited %d\n", g > 0 ? "yes" : "no", WEXITSTATUS(st));
  SHOW("no children left", wait(&st));
  return 0;
}

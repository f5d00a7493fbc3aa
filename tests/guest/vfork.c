/* Children that share their parent's memory: vfork (the parent waits until the child
 * runs execve or ends), clone(CLONE_VM) (both run; a mapping either makes is the
 * other's), and what is built on them: posix_spawn reporting the child's exec error,
 * system() and popen(). Natively and in the sandbox. */
#include "nv.h"
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile int shared_flag;
static volatile long shared_ptr;

static int clone_child(void *arg) {
  (void)arg;
  int *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  *page = 42;
  shared_ptr = (long)page;
  shared_flag = 7;
  return 5;
}

int main(int argc, char **argv) {
  if (argc > 1) {
    usleep(300000);
    return 9;
  }
  setvbuf(stdout, NULL, _IONBF, 0);

  /* vfork: the child's writes land in the parent, which waits for its _exit. */
  pid_t c = vfork();
  if (c == 0) {
    usleep(100000);
    shared_flag = 1;
    _exit(4);
  }
  printf("vfork: parent sees the child's write: %d\n", shared_flag);
  int st;
  waitpid(c, &st, 0);
  printf("vfork child exited %d\n", WEXITSTATUS(st));

  /* vfork then execve: the parent goes on while the new program runs. */
  c = vfork();
  if (c == 0) {
    execl(argv[0], argv[0], "sleep", (char *)NULL);
    _exit(127);
  }
  SHOW("vfork+exec: child still running (waitpid WNOHANG)", waitpid(c, &st, WNOHANG));
  waitpid(c, &st, 0);
  printf("exec'd child exited %d\n", WEXITSTATUS(st));

  /* vfork whose exec fails: the child reports through memory it shares. */
  volatile int exec_errno = 0;
  c = vfork();
  if (c == 0) {
    execl("/nonexistent/prog", "prog", (char *)NULL);
    exec_errno = errno;
    _exit(127);
  }
  waitpid(c, &st, 0);
  printf("failed exec seen by the parent: %s, child exited %d\n", errname(exec_errno),
         WEXITSTATUS(st));

  /* clone(CLONE_VM): a mapping the child makes is the parent's too. */
  shared_flag = 0;
  char *stack = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  c = clone(clone_child, stack + 65536, CLONE_VM | SIGCHLD, NULL);
  waitpid(c, &st, 0);
  printf("clone(CLONE_VM): flag %d, the child's page holds %d, exited %d\n", shared_flag,
         *(int *)shared_ptr, WEXITSTATUS(st));

  /* posix_spawn reports the child's exec error, and runs what exists. */
  pid_t p;
  char *nope[] = {"nope", NULL};
  int r = posix_spawn(&p, "/nonexistent/nope", NULL, NULL, nope, environ);
  printf("posix_spawn of a missing program: %s\n", errname(r));
  char *self[] = {argv[0], "sleep", NULL};
  r = posix_spawn(&p, argv[0], NULL, NULL, self, environ);
  printf("posix_spawn: %s\n", errname(r));
  waitpid(p, &st, 0);
  printf("spawned child exited %d\n", WEXITSTATUS(st));

  /* system() and popen() run /bin/sh through posix_spawn. */
  r = system("exit 3");
  printf("system: exit %d\n", WEXITSTATUS(r));
  FILE *f = popen("echo from popen", "r");
  char line[64] = "";
  if (f && fgets(line, sizeof line, f)) printf("popen: %s", line);
  if (f) printf("pclose: %d\n", WEXITSTATUS(pclose(f)));
  return 0;
}

/* Processes: fork and wait statuses, WNOHANG, getppid, a pipe between parent and child,
 * execve, SIGCHLD, kill of a child, and EINTR vs SA_RESTART for a blocking read. */
#include "nv.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t chld, alarm_hits;
static void on_chld(int s) { (void)s; chld++; }
static void on_usr1(int s) { (void)s; alarm_hits++; }

static void show_status(const char *what, int st) {
  if (WIFEXITED(st)) printf("%s: exited %d\n", what, WEXITSTATUS(st));
  else if (WIFSIGNALED(st)) printf("%s: killed by %d\n", what, WTERMSIG(st));
  else printf("%s: other %#x\n", what, st);
}

/* Fork a child that sleeps `ms` then sends SIGUSR1 to the parent and writes to `fd`. */
static pid_t poke_later(int ms, int fd) {
  pid_t parent = getpid();
  pid_t c = fork();
  if (c == 0) {
    usleep(ms * 1000);
    kill(parent, SIGUSR1);
    usleep(20000);
    write(fd, "x", 1);
    _exit(0);
  }
  return c;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sigaction(SIGCHLD, &sa, NULL);

  pid_t me = getpid();
  pid_t c = fork();
  if (c == 0) {
    if (getppid() != me) _exit(99);
    _exit(42);
  }
  int st;
  pid_t w = waitpid(c, &st, 0);
  printf("waited for the right child: %s\n", w == c ? "yes" : "no");
  show_status("child", st);

  c = fork();
  if (c == 0) {
    pause();
    _exit(0);
  }
  printf("WNOHANG while running: %d\n", waitpid(c, &st, WNOHANG));
  kill(c, SIGTERM);
  waitpid(c, &st, 0);
  show_status("killed child", st);

  c = fork();
  if (c == 0) {
    volatile int *p = 0;
    return *p;
  }
  waitpid(c, &st, 0);
  show_status("faulting child", st);

  int fds[2];
  pipe(fds);
  c = fork();
  if (c == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    char *argv[] = {"/bin/echo", "from", "exec", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    execve("/bin/echo", argv, envp);
    _exit(127);
  }
  close(fds[1]);
  char buf[64] = {0};
  ssize_t n = 0, r;
  while ((r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0) n += r;
  close(fds[0]);
  waitpid(c, &st, 0);
  printf("exec'd child said: %s", buf);
  show_status("exec'd child", st);

  errno = 0;
  w = wait(&st);
  printf("wait with no children: %d %s\n", w, errname(errno));
  printf("SIGCHLD seen: %s\n", chld > 0 ? "yes" : "no");

  /* After fork, private memory is each process's own (copy-on-write), shared memory is
   * one. The child changes both, then the parent changes the private page again. */
  static char priv[8192] = "parent";
  char *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  strcpy(shared, "parent");
  int go[2], back[2];
  pipe(go);
  pipe(back);
  c = fork();
  if (c == 0) {
    strcpy(priv, "child");
    strcpy(shared, "child");
    write(back[1], "1", 1);
    char x;
    read(go[0], &x, 1);
    _exit(strcmp(priv, "child") == 0 ? 0 : 1);
  }
  char x;
  read(back[0], &x, 1);
  printf("after the child wrote: private %s, shared %s\n", priv, shared);
  strcpy(priv, "parent again");
  write(go[1], "1", 1);
  waitpid(c, &st, 0);
  show_status("copy-on-write child (its private page untouched by the parent)", st);

  /* EINTR: no SA_RESTART, so the blocking read fails. */
  sa.sa_handler = on_usr1;
  sa.sa_flags = 0;
  sigaction(SIGUSR1, &sa, NULL);
  pipe(fds);
  c = poke_later(30, fds[1]);
  errno = 0;
  r = read(fds[0], buf, 1);
  printf("read without SA_RESTART: %zd %s, handler ran %d\n", r, errname(r < 0 ? errno : 0), alarm_hits);
  waitpid(c, &st, 0);
  close(fds[0]);
  close(fds[1]);

  /* With SA_RESTART the read resumes and gets the byte. */
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  pipe(fds);
  c = poke_later(30, fds[1]);
  r = read(fds[0], buf, 1);
  printf("read with SA_RESTART: %zd, handler ran %d\n", r, alarm_hits);
  waitpid(c, &st, 0);
  return 0;
}

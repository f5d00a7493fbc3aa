/* /proc of another process (what ps reads): a child's directory is listed, and its
 * stat, status, cmdline and comm name it, its parent and its threads. */
#include "nv.h"
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void *idle(void *arg) {
  (void)arg;
  pause();
  return NULL;
}

static void show_file(pid_t pid, const char *file, const char *const *keep) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  FILE *f = fopen(path, "r");
  if (!f) {
    printf("%s: cannot open\n", file);
    return;
  }
  while (fgets(line, sizeof line, f))
    for (const char *const *k = keep; *k; k++)
      if (!strncmp(line, *k, strlen(*k))) printf("%s %s", file, line);
  fclose(f);
}

int main(void) {
  int ready[2];
  pipe(ready);
  pid_t c = fork();
  if (c == 0) {
    prctl(PR_SET_NAME, "nv-child");
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  char r;
  read(ready[0], &r, 1);

  int listed = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (atoi(e->d_name) == c) listed = 1;
  if (d) closedir(d);
  printf("child listed in /proc: %d\n", listed);

  static const char *const status_keys[] = {"Name:", "Threads:", "Uid:", "Gid:", NULL};
  show_file(c, "status", status_keys);
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", c);
  FILE *f = fopen(path, "r");
  if (f && fgets(buf, sizeof buf, f)) {
    int pid, ppid, threads;
    char comm[32], state;
    /* pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
       cmajflt utime stime cutime cstime priority nice num_threads */
    sscanf(buf, "%d (%31[^)]) %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %d",
           &pid, comm, &state, &ppid, &threads);
    printf("stat: pid is the child's %d, comm %s, parent is me %d, threads %d\n", pid == c,
           comm, ppid == getpid(), threads);
  }
  if (f) fclose(f);
  /* Both its threads wait in pause: the child sleeps, state S, once they get there. */
  int asleep = 0;
  for (int i = 0; i < 200 && !asleep; i++) {
    snprintf(path, sizeof path, "/proc/%d/stat", c);
    f = fopen(path, "r");
    if (f && fgets(buf, sizeof buf, f)) {
      char *close_paren = strrchr(buf, ')');
      asleep = close_paren && close_paren[2] == 'S';
    }
    if (f) fclose(f);
    if (!asleep) usleep(10000);
  }
  printf("stat: the child sleeps: %d\n", asleep);
  snprintf(path, sizeof path, "/proc/%d/comm", c);
  f = fopen(path, "r");
  if (f && fgets(buf, sizeof buf, f)) printf("comm: %s", buf);
  if (f) fclose(f);
  snprintf(path, sizeof path, "/proc/%d/cmdline", c);
  f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  printf("cmdline names this program: %d\n", n > 0 && strstr(buf, "proc_others") != NULL);

  kill(c, SIGKILL);
  int st;
  waitpid(c, &st, 0);
  snprintf(path, sizeof path, "/proc/%d/stat", c);
  printf("gone after reaping: %d\n", access(path, F_OK) != 0);
  return 0;
}

/* execve from a process with a spinning thread and a sleeping one: the new program runs
 * alone (Linux stops the other threads first) and the process exits with its status. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *spin(void *a) { (void)a; for (;;) { } return NULL; }
static void *sleeper(void *a) { (void)a; for (;;) pause(); return NULL; }
int main(void) {
  pthread_t t1, t2;
  pthread_create(&t1, NULL, spin, NULL);
  pthread_create(&t2, NULL, sleeper, NULL);
  usleep(20000);
  char *argv[] = {"/bin/echo", "exec from a threaded process", NULL};
  char *envp[] = {NULL};
  execve("/bin/echo", argv, envp);
  return 1;
}

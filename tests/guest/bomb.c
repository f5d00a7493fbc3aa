/* Run ONLY in the sandbox: forks (or, with "threads", creates threads) until the system
 * refuses, and prints the errno it refused with. Bounded at 5000 so it cannot run away. */
#include "nv.h"
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 && strcmp(argv[1], "threads") == 0;
  int n = 0, err = 0;
  for (; n < 5000; n++) {
    if (threads) {
      pthread_t t;
      pthread_attr_t a;
      pthread_attr_init(&a);
      pthread_attr_setstacksize(&a, 64 * 1024);
      err = pthread_create(&t, &a, sleeper, NULL);
      if (err) break;
    } else {
      pid_t c = fork();
      if (c < 0) { err = errno; break; }
      if (c == 0) { for (;;) pause(); }
    }
  }
  printf("%s refused with %s after at least 100: %s\n", threads ? "thread" : "fork", errname(err),
         n >= 100 ? "yes" : "no");
  return 0;
}

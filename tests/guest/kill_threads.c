// SIGKILL to a process whose threads all sleep in the kernel (epoll_wait, a futex, a
// pipe read, nanosleep) ends every thread, round after round, with other threads of the
// sandbox busy. All of them wake at once for the one SIGKILL; the thread that takes it
// ends the group, and the others must see that end rather than go back to sleep (the
// narrow race behind a Node server that outlived its SIGKILL; tests/tests/kill_node.rs
// is the test that reliably caught it). Also: a signal that was pending while blocked
// ends a sigsuspend whose mask lets it through (it used to sleep forever).
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREADS 12
#define ROUNDS 150
#define SPINNERS 3

static int ready[2], idle[2];

static void announce(void) {
  char c = 'r';
  if (write(ready[1], &c, 1) != 1) _exit(3);
}

static void *sleeper(void *arg) {
  long kind = (long)arg;
  announce();
  switch (kind % 4) {
  case 0: {
    int ep = epoll_create1(0);
    struct epoll_event ev;
    epoll_wait(ep, &ev, 1, -1);
    break;
  }
  case 1: {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    for (;;) pthread_cond_wait(&cv, &m);
  }
  case 2: {
    char c;
    (void)!read(idle[0], &c, 1);
    break;
  }
  default: {
    struct timespec ts = {1000, 0};
    nanosleep(&ts, NULL);
  }
  }
  _exit(4); /* woken without the SIGKILL: wrong */
}

static void child(void) {
  for (long i = 0; i < THREADS; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, sleeper, (void *)i) != 0) _exit(2);
  }
  announce();
  struct timespec ts = {1000, 0};
  nanosleep(&ts, NULL);
  _exit(5);
}

static volatile int stop;

/* CPU load in the sandbox, so that the killed threads' host threads are preempted in
 * the middle of their bookkeeping (where a lost wake-up hides); it makes a syscall now
 * and then, so it stops at once when told to. */
static void *spinner(void *arg) {
  (void)arg;
  while (!stop) {
    for (volatile int i = 0; i < 20000; i++) {
    }
    getppid();
  }
  return NULL;
}

static void on_usr1(int sig) { (void)sig; }

/* SIGUSR1 sent while blocked, then a sigsuspend that unblocks it: it must return. */
static int sigsuspend_sees_a_pending_signal(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  sigset_t block, empty;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigemptyset(&empty);
  sigprocmask(SIG_BLOCK, &block, NULL);
  pid_t me = getpid();
  pid_t p = fork();
  if (p == 0) {
    kill(me, SIGUSR1);
    _exit(0);
  }
  waitpid(p, NULL, 0);
  alarm(5); /* a lost signal would hang here */
  int r = sigsuspend(&empty);
  int e = errno;
  alarm(0);
  sigprocmask(SIG_UNBLOCK, &block, NULL);
  return r == -1 && e == EINTR;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("sigsuspend with a pending signal returns: %s\n",
         sigsuspend_sees_a_pending_signal() ? "yes" : "no");
  if (pipe(ready) != 0 || pipe(idle) != 0) return 1;
  pthread_t spinners[SPINNERS];
  for (int i = 0; i < SPINNERS; i++) pthread_create(&spinners[i], NULL, spinner, NULL);
  for (int round = 0; round < ROUNDS; round++) {
    pid_t p = fork();
    if (p < 0) return 1;
    if (p == 0) child();
    for (int n = 0; n < THREADS + 1; n++) {
      char c;
      if (read(ready[0], &c, 1) != 1) return 1;
    }
    /* Let the threads get into their waits, for most rounds; some rounds kill them on
     * the way in. */
    if (round % 3) usleep(1000 + round % 7 * 300);
    kill(p, SIGKILL);
    int status = 0, waited = 0;
    for (;;) {
      pid_t r = waitpid(p, &status, WNOHANG);
      if (r == p) break;
      if (r < 0 || waited >= 5000) {
        printf("round %d: the killed process did not end within 5 s\n", round);
        kill(p, SIGKILL);
        return 1;
      }
      usleep(1000);
      waited++;
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      printf("round %d: status %#x\n", round, status);
      return 1;
    }
  }
  stop = 1;
  for (int i = 0; i < SPINNERS; i++) pthread_join(spinners[i], NULL);
  printf("%d rounds of %d sleeping threads killed\n", ROUNDS, THREADS);
  return 0;
}

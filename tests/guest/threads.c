/* Threads and futexes: pthread create/join, mutex and condvar, thread-local storage,
 * thread ids, a signal sent to one thread while it runs guest code, raw futex errors,
 * and exit_group from a non-leader thread ("exit" argument). */
#include "nv.h"
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;
static __thread int tls_value;
static int turn;

static void *adder(void *arg) {
  tls_value = (int)(intptr_t)arg;
  for (int i = 0; i < 10000; i++) {
    pthread_mutex_lock(&lock);
    counter++;
    pthread_mutex_unlock(&lock);
  }
  return (void *)(intptr_t)(tls_value * 2);
}

static void *pinger(void *arg) {
  int me = (int)(intptr_t)arg;
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&lock);
    while (turn != me) pthread_cond_wait(&cond, &lock);
    turn = 1 - me;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static volatile sig_atomic_t got_usr1;
static volatile pid_t handler_tid;
static void on_usr1(int sig) {
  (void)sig;
  handler_tid = (pid_t)syscall(SYS_gettid);
  got_usr1 = 1;
}

static volatile pid_t spinner_tid;
static void *spinner(void *arg) {
  (void)arg;
  spinner_tid = (pid_t)syscall(SYS_gettid);
  while (!got_usr1) { /* pure guest code: the signal must kick us out */ }
  return NULL;
}

static void *exiter(void *arg) {
  (void)arg;
  usleep(20000);
  syscall(SYS_exit_group, 7);
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc > 1 && strcmp(argv[1], "exit") == 0) {
    pthread_t t;
    pthread_create(&t, NULL, exiter, NULL);
    pthread_join(t, NULL);
    printf("not reached\n");
    return 0;
  }

  pthread_t ts[8];
  for (int i = 0; i < 8; i++) pthread_create(&ts[i], NULL, adder, (void *)(intptr_t)(i + 1));
  long sum = 0;
  for (int i = 0; i < 8; i++) {
    void *ret;
    pthread_join(ts[i], &ret);
    sum += (long)(intptr_t)ret;
  }
  printf("counter %ld, joined values %ld, main tls %d\n", counter, sum, tls_value);

  pthread_t a, b;
  pthread_create(&a, NULL, pinger, (void *)0);
  pthread_create(&b, NULL, pinger, (void *)1);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  printf("condvar ping-pong done, turn %d\n", turn);

  printf("main tid == pid: %s\n", syscall(SYS_gettid) == getpid() ? "yes" : "no");

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_t s;
  pthread_create(&s, NULL, spinner, NULL);
  while (!spinner_tid) sched_yield();
  pthread_kill(s, SIGUSR1);
  pthread_join(s, NULL);
  printf("signal ran in the target thread: %s, target tid != pid: %s\n",
         handler_tid == spinner_tid ? "yes" : "no", spinner_tid != getpid() ? "yes" : "no");

  int word = 5;
  long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 4, NULL, NULL, 0);
  printf("futex wait on a changed word: %ld %s\n", r, errname(r ? errno : 0));
  struct timespec ts10 = {0, 10 * 1000 * 1000};
  r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 5, &ts10, NULL, 0);
  printf("futex wait timeout: %ld %s\n", r, errname(r ? errno : 0));
  r = syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  printf("futex wake with no waiter: %ld\n", r);
  r = syscall(SYS_futex, (char *)&word + 1, FUTEX_WAIT_PRIVATE, 5, NULL, NULL, 0);
  printf("futex on a misaligned word: %ld %s\n", r, errname(r ? errno : 0));
  return 0;
}

// A process tree with something of each kind open, for checkpoint tests that want a rich
// kernel state: a forked child joined by a pipe, two threads blocked (one on a futex-backed
// condvar, one in a read of the pipe), a file of the root open at an offset, a private
// anonymous mapping with data, a signal handler and a real-time timer. Prints "ready" once
// all of it exists, then "tick N" every 50 ms, forever.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int pipe_in[2];
static volatile sig_atomic_t alarms;

static void on_alarm(int s) { (void)s; alarms++; }

static void *waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) pthread_cond_wait(&cond, &lock);
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    char b[64];
    for (;;) {
        if (read(pipe_in[0], b, sizeof b) <= 0) return NULL;
    }
}

int main(void) {
    if (pipe(pipe_in) != 0) return 1;
    int to_child[2];
    if (pipe(to_child) != 0) return 1;
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
        char b[16];
        close(to_child[1]);
        for (;;) {
            if (read(to_child[0], b, sizeof b) <= 0) _exit(0);
        }
    }
    close(to_child[0]);
    int f = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    if (f >= 0) lseek(f, 3, SEEK_SET);
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    memset(m, 0x5a, 1 << 20);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200000}, {0, 200000}};
    setitimer(ITIMER_REAL, &it, NULL);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, waiter, NULL);
    pthread_create(&t2, NULL, reader, NULL);
    printf("ready\n");
    fflush(stdout);
    for (unsigned long n = 1;; n++) {
        printf("tick %lu\n", n);
        fflush(stdout);
        if (write(to_child[1], "x", 1) != 1) return 1;
        if (write(pipe_in[1], "y", 1) != 1) return 1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

// A sleep cut short by a signal: nanosleep and clock_nanosleep return EINTR with the
// time left when a handler runs, and a signal with no handler that is ignored does
// not end the sleep early.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int got;
static void on_alarm(int sig) { got = sig; }

/* A child sends SIGALRM to us after `usec` (from another process, so the signal comes
 * while this one sleeps in the kernel). */
static void arm(long usec) {
    pid_t parent = getpid();
    if (fork() == 0) {
        usleep(usec);
        kill(parent, SIGALRM);
        _exit(0);
    }
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    struct timespec req = {.tv_sec = 5}, rem = {0};
    arm(200000);
    int r = nanosleep(&req, &rem);
    int e = errno;
    printf("nanosleep: %d %s, handler ran: %d, time left 3-5 s: %d\n", r,
           r ? strerror(e) : "", got == SIGALRM, rem.tv_sec >= 3 && rem.tv_sec <= 5);

    got = 0;
    arm(200000);
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
    printf("clock_nanosleep: %s, handler ran: %d, time left 3-5 s: %d\n",
           r == EINTR ? "EINTR" : "other", got == SIGALRM, rem.tv_sec >= 3 && rem.tv_sec <= 5);

    // A sleep longer than any clock can hold still ends with the signal.
    got = 0;
    struct timespec forever = {.tv_sec = 0x7fffffffffffffffL / 2};
    arm(100000);
    r = nanosleep(&forever, NULL);
    printf("huge nanosleep: %d, handler ran: %d\n", r, got == SIGALRM);

    // An ignored signal does not interrupt.
    signal(SIGALRM, SIG_IGN);
    struct timespec short_req = {.tv_sec = 0, .tv_nsec = 300000000};
    arm(50000);
    r = nanosleep(&short_req, NULL);
    printf("nanosleep with SIGALRM ignored: %d\n", r);
    while (wait(NULL) > 0)
        ;
    return 0;
}

// ITIMER_REAL and alarm: SIGALRM arrives when the timer expires, repeats with an
// interval, getitimer reports what is left, alarm returns the previous alarm's seconds,
// and a disarmed timer stays quiet.
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile int fired;
static void on_alarm(int sig) { (void)sig; fired++; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    struct itimerval it = {.it_interval = {0, 50000}, .it_value = {0, 100000}};
    printf("setitimer: %d\n", setitimer(ITIMER_REAL, &it, NULL));
    struct itimerval cur;
    getitimer(ITIMER_REAL, &cur);
    printf("interval kept: %ld us, value pending: %d\n", (long)cur.it_interval.tv_usec,
           cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 100000);
    while (fired < 3)
        pause();
    printf("fired at least 3 times\n");
    struct itimerval off = {0};
    setitimer(ITIMER_REAL, &off, &cur);
    printf("old interval %ld us\n", (long)cur.it_interval.tv_usec);
    int before = fired;
    usleep(200000);
    printf("quiet after disarm: %d\n", fired == before);

    printf("alarm(5) returns %u\n", alarm(5));
    printf("alarm(0) returns %u\n", alarm(0));
    printf("bad which: %d\n", setitimer(7, &it, NULL));
    struct itimerval huge = {.it_value = {.tv_sec = 0x7fffffffffffffffL / 2}};
    printf("huge value: %d\n", setitimer(ITIMER_REAL, &huge, NULL));
    printf("disarm: %d\n", setitimer(ITIMER_REAL, &off, NULL));
    return 0;
}

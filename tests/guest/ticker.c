// A counter that lives only in memory: prints "tick N MONO REAL" every 50 ms, N
// counting up from 1, with CLOCK_MONOTONIC and CLOCK_REALTIME in ms, forever. A
// checkpoint taken after "tick K" restores a process whose next line is "tick K+1": its
// memory, registers and its sleep (restarted) came back; its clocks went on.
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long counter;

int main(void) {
    char line[96];
    for (;;) {
        counter++;
        struct timespec mono, real;
        clock_gettime(CLOCK_MONOTONIC, &mono);
        clock_gettime(CLOCK_REALTIME, &real);
        int n = snprintf(line, sizeof line, "tick %lu %lld %lld\n", counter,
                         (long long)mono.tv_sec * 1000 + mono.tv_nsec / 1000000,
                         (long long)real.tv_sec * 1000 + real.tv_nsec / 1000000);
        if (write(1, line, (size_t)n) != n) return 1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

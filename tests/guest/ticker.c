// A counter that lives only in memory: prints "tick N" every 50 ms, N counting up
// from 1, forever. A checkpoint taken after "tick K" restores a process whose next
// line is "tick K+1": its memory, registers and its sleep (restarted) came back.
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long counter;

int main(void) {
    char line[64];
    for (;;) {
        counter++;
        int n = snprintf(line, sizeof line, "tick %lu\n", counter);
        if (write(1, line, (size_t)n) != n) return 1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* The pod's pause container for the CRI test (tests/tests/cri.rs): holds the pod's namespaces
 * and does nothing; SIGTERM or SIGINT ends it with status 0. Not a conformance program. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void bye(int sig) {
    (void)sig;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, bye);
    signal(SIGINT, bye);
    for (;;)
        pause();
}

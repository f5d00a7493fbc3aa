/* debughook: calls Nanovisor's private `forbidden_host_syscall` debug hook (number 4096,
 * sentry/src/syscalls/debug.rs). Linux and a sandbox without debug hooks answer ENOSYS and
 * the program goes on; with NANOVISOR_DEBUG_HOOKS=1 the sentry makes a host syscall its
 * seccomp policy forbids, and the whole sandbox process dies of SIGSYS mid-call. */
#include "nv.h"

#include <sys/syscall.h>
#include <unistd.h>

#define NR_FORBIDDEN_HOST_SYSCALL 4096

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("calling the debug hook\n");
  long r = syscall(NR_FORBIDDEN_HOST_SYSCALL);
  printf("debug hook: %s\n", r == -1 ? errname(errno) : "returned");
  printf("still running\n");
  return 0;
}

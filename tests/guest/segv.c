/* segv: dereferences NULL with no handler installed. Linux kills the process with SIGSEGV,
 * so a shell (and `runsc do`) reports exit status 139 = 128 + 11. */
#include <stdio.h>

int main(void) {
  printf("about to dereference NULL\n");
  fflush(stdout);
  volatile int *p = NULL;
  int v = *p;
  printf("survived: %d\n", v);
  return 0;
}

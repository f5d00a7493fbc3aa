/* memhog: what running out of memory does to a guest. Sandbox only (natively it would
 * eat the host). Modes:
 *   touch       malloc 1 MiB blocks and write every page, forever: only the out-of-memory
 *               killer (SIGKILL) stops it. Prints "touched N MiB" every 32 MiB.
 *   bigmap MIB  one anonymous mmap of MIB MiB, a malloc of as much, and brk growth of as
 *               much: each refused with ENOMEM (heuristic overcommit); then a modest
 *               malloc still works, and the program exits 0.
 *   child       a child runs `touch`; the parent reports how it ended, then waits for a
 *               signal (the test reads `runsc events` meanwhile).
 *   children N  N times: a child runs `touch`, and the parent, as soon as waitpid says
 *               it was killed, allocates and writes 32 MiB; exits 0 if it always could.
 *               A dead child's memory must be free by the time its parent learns of the
 *               death (Linux frees it before it notifies the parent).
 * Output is unbuffered, so nothing is lost when the process is killed. */
#include "nv.h"

#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024UL * 1024UL)

static void touch_forever(void) {
  for (unsigned long mib = 1;; mib++) {
    char *p = malloc(MIB);
    if (!p) {
      printf("malloc: NULL after %lu MiB\n", mib - 1);
      continue;
    }
    for (unsigned long off = 0; off < MIB; off += 4096) p[off] = (char)mib;
    if (mib % 32 == 0) printf("touched %lu MiB\n", mib);
  }
}

static int bigmap(unsigned long mib) {
  size_t len = mib * MIB;
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  printf("mmap %lu MiB: %s\n", mib, m == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  void *p = malloc(len);
  printf("malloc %lu MiB: %s\n", mib, p ? "allocated" : errname(errno));
  void *top = sbrk(0);
  errno = 0;
  void *grown = sbrk((intptr_t)len);
  printf("sbrk %lu MiB: %s\n", mib, grown == (void *)-1 ? errname(errno) : "grown");
  printf("break unchanged: %s\n", sbrk(0) == top ? "yes" : "no");
  /* Promising what fits is fine, and so is using it. */
  char *small = malloc(16 * MIB);
  if (small) memset(small, 1, 16 * MIB);
  printf("malloc 16 MiB and touch: %s\n", small ? "ok" : "NULL");
  return 0;
}

static int children(int n) {
  for (int i = 1; i <= n; i++) {
    pid_t c = fork();
    if (c < 0) {
      printf("fork: %s\n", errname(errno));
      return 1;
    }
    if (c == 0) touch_forever();
    int st;
    if (waitpid(c, &st, 0) != c) {
      printf("waitpid: %s\n", errname(errno));
      return 1;
    }
    char *p = malloc(32 * MIB);
    if (p) memset(p, 3, 32 * MIB);
    printf("child %d: %s %d; the parent allocates 32 MiB: %s\n", i,
           WIFSIGNALED(st) ? "killed by signal" : "exited with",
           WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), p ? "ok" : "NULL");
    free(p);
  }
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  const char *mode = argc > 1 ? argv[1] : "touch";
  if (strcmp(mode, "touch") == 0) touch_forever();
  if (strcmp(mode, "bigmap") == 0 && argc > 2) return bigmap(strtoul(argv[2], NULL, 10));
  if (strcmp(mode, "child") == 0) {
    pid_t c = fork();
    if (c < 0) {
      printf("fork: %s\n", errname(errno));
      return 1;
    }
    if (c == 0) touch_forever();
    int st;
    if (waitpid(c, &st, 0) != c) {
      printf("waitpid: %s\n", errname(errno));
      return 1;
    }
    if (WIFSIGNALED(st))
      printf("child killed by signal %d\n", WTERMSIG(st));
    else
      printf("child exited with %d\n", WEXITSTATUS(st));
    /* The parent is unharmed: it can still allocate. */
    char *p = malloc(8 * MIB);
    if (p) memset(p, 2, 8 * MIB);
    printf("parent allocates after the kill: %s\n", p ? "ok" : "NULL");
    for (;;) pause();
  }
  if (strcmp(mode, "children") == 0 && argc > 2) return children(atoi(argv[2]));
  fprintf(stderr, "usage: memhog touch | bigmap MIB | child | children N\n");
  return 2;
}

/* pipe: one byte written into a pipe and read back out, N times, in a single thread: two
 * syscalls and a pipe buffer round trip per iteration. Prints the mean ns per iteration.
 * Usage: pipe [N]   (default 100000). Output: "pipe ns/op 12345.6" */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  if (n <= 0) return 2;
  int fds[2];
  if (pipe(fds) != 0) {
    perror("pipe");
    return 1;
  }
  char byte = 'x';
  for (int i = 0; i < 1000; i++) {
    if (write(fds[1], &byte, 1) != 1 || read(fds[0], &byte, 1) != 1) return 1;
  }
  double start = now_ns();
  for (long i = 0; i < n; i++) {
    if (write(fds[1], &byte, 1) != 1 || read(fds[0], &byte, 1) != 1) {
      perror("pipe write/read");
      return 1;
    }
  }
  double elapsed = now_ns() - start;
  printf("pipe ns/op %.1f\n", elapsed / (double)n);
  return 0;
}

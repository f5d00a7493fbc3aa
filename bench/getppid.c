/* getppid: the cost of the cheapest syscall there is. Calls getppid(2) N times through
 * syscall(2) (so no libc caching can skip the kernel) and prints the mean ns per call.
 * Usage: getppid [N]   (default 100000). Output: "getppid ns/op 12345.6" */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
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
  /* warm up: fault in the code and stack pages before timing */
  for (int i = 0; i < 1000; i++) syscall(SYS_getppid);
  double start = now_ns();
  for (long i = 0; i < n; i++) syscall(SYS_getppid);
  double elapsed = now_ns() - start;
  printf("getppid ns/op %.1f\n", elapsed / (double)n);
  return 0;
}

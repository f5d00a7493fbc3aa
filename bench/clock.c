/* clock: the cost of reading the clock the way programs do (glibc's clock_gettime, which
 * uses the vDSO when there is one). Prints the mean ns per call.
 * Usage: clock [N]   (default 100000). Output: "clock ns/op 12.3" */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  if (n <= 0) return 2;
  struct timespec t, a, b;
  for (int i = 0; i < 1000; i++) clock_gettime(CLOCK_MONOTONIC, &t);
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < n; i++) clock_gettime(CLOCK_MONOTONIC, &t);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
  printf("clock ns/op %.1f\n", ns / (double)n);
  return 0;
}

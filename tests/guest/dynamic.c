/* dynamic: a dynamically linked glibc program (built without -static). ld.so maps libc with
 * file-backed mmap, the program uses malloc (brk and mmap, realloc through mremap), reads
 * its environment, and dlopens libm to call cos(). */
#include "nv.h"

#include <dlfcn.h>
#include <sys/auxv.h>
#include <sys/mman.h>

extern char _start[];

int main(int argc, char **argv) {
  (void)errname;
  printf("dynamic: argc=%d argv[0] ends with dynamic: %s\n", argc,
         strstr(argv[0], "dynamic") ? "yes" : "no");
  const char *home = getenv("HOME");
  printf("HOME=%s\n", home ? home : "(unset)");
  printf("LANG=%s\n", getenv("LANG") ? getenv("LANG") : "(unset)");
  printf("NV_UNSET=%s\n", getenv("NV_UNSET") ? "set" : "(unset)");

  /* The kernel told ld.so where it and the program are. */
  BOOL("AT_BASE is set", getauxval(AT_BASE) != 0);
  BOOL("AT_ENTRY is _start", getauxval(AT_ENTRY) == (unsigned long)_start);
  BOOL("AT_PHDR is set", getauxval(AT_PHDR) != 0);

  /* Small blocks come from brk, large ones from mmap; realloc of a large block mremaps. */
  char *small = malloc(100);
  strcpy(small, "small block");
  printf("%s\n", small);
  size_t big = 1 << 20;
  char *p = malloc(big);
  memset(p, 'x', big);
  char *q = realloc(p, 16 << 20);
  BOOL("realloc grew", q != NULL);
  BOOL("realloc kept the bytes", q[0] == 'x' && q[big - 1] == 'x');
  memset(q + big, 'y', (16 << 20) - big);
  q = realloc(q, 256 << 10);
  BOOL("realloc shrank and kept the bytes", q[0] == 'x' && q[(256 << 10) - 1] == 'x');
  free(q);
  free(small);
  long sum = 0;
  for (int i = 0; i < 2000; i++) {
    int *v = malloc(64 + i);
    v[0] = i;
    sum += v[0];
    free(v);
  }
  printf("malloc loop sum=%ld\n", sum);

  void *libm = dlopen("libm.so.6", RTLD_NOW);
  if (!libm) {
    printf("dlopen libm.so.6 failed: %s\n", dlerror());
    return 1;
  }
  double (*cosine)(double) = (double (*)(double))dlsym(libm, "cos");
  if (!cosine) {
    printf("dlsym cos failed: %s\n", dlerror());
    return 1;
  }
  printf("cos(0)=%.9f cos(1)=%.9f cos(3.14159)=%.9f\n", cosine(0.0), cosine(1.0), cosine(3.14159));
  printf("dlclose=%d\n", dlclose(libm));
  void *none = dlopen("libnv-does-not-exist.so.1", RTLD_NOW);
  BOOL("dlopen of a missing library fails", none == NULL);
  fflush(stdout);
  return 0;
}

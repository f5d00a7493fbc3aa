/* Shared mappings of a file in a volume (a writable bind in a container): the maps, read
 * and write agree inside the sandbox, another process's map sees the same bytes, and
 * the host file gets what was stored through a map by msync and munmap. argv[1] is the
 * directory; the file left there is checked by the test. */
#include "nv.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  char path[256];
  snprintf(path, sizeof path, "%s/mapped", argc > 1 ? argv[1] : "/tmp");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  ftruncate(fd, 2 * PG);
  char *a = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  char *b = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
  a[10] = 'A';
  printf("one map to another: %c\n", b[10]);
  pwrite(fd, "P", 1, PG + 5);
  printf("pwrite to the maps: %c %c\n", a[PG + 5], b[PG + 5]);
  a[20] = 'Z';
  char c = 0;
  pread(fd, &c, 1, 20);
  printf("map to pread: %c\n", c);
  SHOW("msync", msync(a, 2 * PG, MS_SYNC));
  pid_t p = fork();
  if (p == 0) {
    int cfd = open(path, O_RDWR);
    char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    printf("child sees: %c %c\n", m[10], m[20]);
    m[30] = 'C';
    munmap(m, 2 * PG);
    _exit(0);
  }
  waitpid(p, NULL, 0);
  printf("parent sees the child's store: %c\n", b[30]);
  a[40] = 'E';
  munmap(a, 2 * PG);
  munmap(b, 2 * PG);
  char got[41];
  pread(fd, got, sizeof got, 0);
  printf("file: %c %c %c %c\n", got[10], got[20], got[30], got[40]);
  close(fd);
  return 0;
}

/* Files mapped MAP_SHARED: every mapping of a file, in any process, shows the same
 * bytes as read and write do (LMDB reads through a map what it wrote with pwrite;
 * SQLite's WAL index and POSIX semaphores are shared maps of one file by several
 * processes). On the overlay (/tmp) and on a tmpfs (/dev/shm), natively and in the
 * sandbox. */
#include "nv.h"
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096

static void on(const char *path) {
  printf("-- %s\n", strncmp(path, "/tmp", 4) ? "a tmpfs" : "the overlay");
  unlink(path);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ftruncate(fd, 2 * PG);
  char *a = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  char *b = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
  a[10] = 'A';
  printf("a store through one map, read through another: %c\n", b[10]);
  char c = 'P';
  pwrite(fd, &c, 1, PG + 5);
  printf("pwrite, read through the maps: %c %c\n", a[PG + 5], b[PG + 5]);
  a[20] = 'Z';
  char got = 0;
  pread(fd, &got, 1, 20);
  printf("a store through a map, pread: %c\n", got);
  msync(a, 2 * PG, MS_SYNC);
  munmap(a, 2 * PG);
  munmap(b, 2 * PG);
  got = 0;
  pread(fd, &got, 1, 20);
  printf("after munmap, pread: %c\n", got);

  /* Another process maps the file on its own and writes; we see it. */
  char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) {
    int cfd = open(path, O_RDWR);
    char *cm = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    cm[100] = 'C';
    printf("child sees the parent's earlier store: %c\n", cm[10]);
    fflush(stdout);
    _exit(0);
  }
  waitpid(p, NULL, 0);
  printf("parent sees the child's store: %c\n", m[100]);

  /* A private map made now starts from the file as it is. */
  char *priv = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  printf("a private map reads: %c %c\n", priv[10], priv[100]);
  priv[10] = 'x';
  printf("its store stays its own: map %c, file map %c\n", priv[10], m[10]);

  /* Shrinking the file zeroes the rest of its last page; growing it back reads zeros. */
  ftruncate(fd, 50);
  ftruncate(fd, 2 * PG);
  printf("after shrinking to 50 and growing: byte 20 %c, byte 100 %d, page 2 byte 5 %d\n", m[20],
         m[100], m[PG + 5]);
  struct stat st;
  fstat(fd, &st);
  printf("size %ld\n", (long)st.st_size);
  munmap(m, 2 * PG);
  munmap(priv, PG);
  close(fd);
  unlink(path);
}

int main(int argc, char **argv) {
  /* A tag keeps concurrent runs (native and sandboxed, two test runs) apart. */
  const char *tag = argc > 1 ? argv[1] : "x";
  char path[128], sem[64];
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(path, sizeof path, "/tmp/nv-shared-file-%s", tag);
  on(path);
  snprintf(path, sizeof path, "/dev/shm/nv-shared-file-%s", tag);
  on(path);
  snprintf(sem, sizeof sem, "/nv-sem-%s", tag);

  /* A named POSIX semaphore: a shared map of a file in /dev/shm, opened by each process
   * on its own. */
  sem_unlink(sem);
  sem_t *s = sem_open(sem, O_CREAT | O_EXCL, 0600, 0);
  pid_t p = fork();
  if (p == 0) {
    sem_t *cs = sem_open(sem, 0);
    usleep(50000);
    sem_post(cs);
    _exit(0);
  }
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 5;
  SHOW("sem_timedwait for the child's post", sem_timedwait(s, &deadline));
  waitpid(p, NULL, 0);
  sem_unlink(sem);

  /* An unnamed process-shared semaphore in shared anonymous memory: the child posts
   * while it still runs (its exit must not be what wakes the parent). */
  sem_t *anon = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  sem_init(anon, 1, 0);
  int hold[2];
  (void)!pipe(hold);
  p = fork();
  if (p == 0) {
    close(hold[1]);
    usleep(50000);
    sem_post(anon);
    char c;
    (void)!read(hold[0], &c, 1);
    _exit(0);
  }
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 5;
  SHOW("sem_timedwait on shared anonymous memory", sem_timedwait(anon, &deadline));
  close(hold[1]);
  waitpid(p, NULL, 0);
  return 0;
}

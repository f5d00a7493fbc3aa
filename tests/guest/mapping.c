/* mapping: file mappings as ld.so makes them (offsets, PROT_EXEC, MAP_FIXED over part of a
 * file mapping, mprotect, the zero tail past end of file, SIGBUS beyond it), and mremap,
 * msync and mincore. Argument 1 (optional) suffixes the /tmp file name. */
#include "nv.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PAGE 4096UL
#define FILE_LEN (3 * PAGE + 100)

static char path[128];
static int fd;

static sigjmp_buf jump;
static volatile int fault_sig;
static volatile int fault_code;

static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  fault_sig = sig;
  fault_code = si->si_code;
  siglongjmp(jump, 1);
}

/* Reads (or writes) one byte at addr and prints what happened. */
static void probe(const char *what, volatile char *addr, int write) {
  fault_sig = 0;
  if (sigsetjmp(jump, 1) == 0) {
    if (write)
      *addr = 42;
    else
      (void)*addr;
    printf("%s: ok\n", what);
  } else {
    const char *code = fault_sig == SIGSEGV && fault_code == SEGV_MAPERR   ? "SIGSEGV SEGV_MAPERR"
                       : fault_sig == SIGSEGV && fault_code == SEGV_ACCERR ? "SIGSEGV SEGV_ACCERR"
                       : fault_sig == SIGBUS && fault_code == BUS_ADRERR   ? "SIGBUS BUS_ADRERR"
                                                                           : "other";
    printf("%s: %s\n", what, code);
  }
}

static unsigned char file_byte(size_t off) { return (unsigned char)(off * 7 + off / PAGE + 1); }

/* Whether mem holds the file's bytes from off for n bytes (zeros past the end of file). */
static int matches_file(const char *mem, size_t off, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char want = off + i < FILE_LEN ? file_byte(off + i) : 0;
    if ((unsigned char)mem[i] != want) return 0;
  }
  return 1;
}

static int all_bytes(const char *p, size_t n, char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v) return 0;
  return 1;
}

static void *map_file(void *addr, size_t len, int prot, int flags, off_t off) {
  return mmap(addr, len, prot, MAP_PRIVATE | flags, fd, off);
}

static void section_file(void) {
  printf("== file mappings\n");
  char *p = map_file(NULL, 5 * PAGE, PROT_READ, 0, 0);
  BOOL("mmap 5 pages of a 3-page+100 file", p != MAP_FAILED);
  BOOL("file pages match", matches_file(p, 0, 3 * PAGE + 100));
  BOOL("rest of the last page reads zero", all_bytes(p + 3 * PAGE + 100, PAGE - 100, 0));
  probe("read a page wholly past end of file", p + 4 * PAGE, 0);
  munmap(p, 5 * PAGE);

  p = map_file(NULL, 2 * PAGE, PROT_READ | PROT_EXEC, 0, PAGE);
  BOOL("mmap with offset and PROT_EXEC", p != MAP_FAILED);
  BOOL("offset mapping matches the file", matches_file(p, PAGE, 2 * PAGE));
  munmap(p, 2 * PAGE);

  errno = 0;
  p = map_file(NULL, PAGE, PROT_READ, 0, 100);
  printf("mmap unaligned offset: %s\n", p == MAP_FAILED ? errname(errno) : "mapped");

  /* Private writable: copy-on-write, the file never changes. */
  p = map_file(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, 0, 0);
  memset(p + PAGE, 'Z', 10);
  char buf[10];
  pread(fd, buf, 10, PAGE);
  BOOL("private write is visible in the mapping", p[PAGE] == 'Z' && p[PAGE + 9] == 'Z');
  BOOL("private write did not reach the file", memcmp(buf, "ZZZZZZZZZZ", 10) != 0 && matches_file(buf, PAGE, 10));
  BOOL("other pages untouched", matches_file(p, 0, PAGE) && matches_file(p + 2 * PAGE, 2 * PAGE, PAGE));
  munmap(p, 3 * PAGE);

  /* ld.so: reserve the whole span from the file, then MAP_FIXED segments over it. */
  p = map_file(NULL, 3 * PAGE, PROT_READ, 0, 0);
  char *q = mmap(p + PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  BOOL("MAP_FIXED anonymous over the middle", q == p + PAGE);
  BOOL("first page still the file's", matches_file(p, 0, PAGE));
  BOOL("middle page is zero", all_bytes(p + PAGE, PAGE, 0));
  BOOL("last page still the file's, at its offset", matches_file(p + 2 * PAGE, 2 * PAGE, PAGE));
  q = map_file(p + PAGE, PAGE, PROT_READ | PROT_EXEC, MAP_FIXED, 3 * PAGE);
  BOOL("MAP_FIXED file page over the middle", q == p + PAGE);
  BOOL("middle page shows the file's fourth page", matches_file(p + PAGE, 3 * PAGE, PAGE));
  SHOW("munmap the first page", munmap(p, PAGE));
  probe("read the unmapped first page", p, 0);
  BOOL("last page intact after munmap", matches_file(p + 2 * PAGE, 2 * PAGE, PAGE));
  munmap(p, 3 * PAGE);

  /* mprotect on file mappings, as ld.so does for RELRO. */
  p = map_file(NULL, 2 * PAGE, PROT_READ, 0, 0);
  probe("write a read-only file page", p, 1);
  SHOW("mprotect second page RW", mprotect(p + PAGE, PAGE, PROT_READ | PROT_WRITE));
  probe("write it", p + PAGE + 1, 1);
  probe("first page still read-only", p, 1);
  SHOW("mprotect back to read-only", mprotect(p + PAGE, PAGE, PROT_READ));
  probe("write it again", p + PAGE + 1, 1);
  BOOL("written byte kept", p[PAGE + 1] == 42 && matches_file(p + PAGE + 2, PAGE + 2, 100));
  SHOW("mprotect PROT_NONE", mprotect(p, 2 * PAGE, PROT_NONE));
  probe("read PROT_NONE file page", p, 0);
  SHOW("mprotect PROT_READ", mprotect(p, 2 * PAGE, PROT_READ));
  BOOL("contents survived", matches_file(p, 0, PAGE) && p[PAGE + 1] == 42);
  munmap(p, 2 * PAGE);
}

static void fill(char *p, size_t n, char seed) {
  for (size_t i = 0; i < n; i++) p[i] = (char)(seed + i / PAGE);
}

static int filled(const char *p, size_t n, char seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (char)(seed + i / PAGE)) return 0;
  return 1;
}

static void *anon(size_t len) {
  return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

#define REMAP(what, expr)                                                      \
  do {                                                                         \
    errno = 0;                                                                 \
    void *nv_r_ = (expr);                                                      \
    printf("%s: %s\n", (what), nv_r_ == MAP_FAILED ? errname(errno) : "ok");   \
  } while (0)

static void section_mremap(void) {
  printf("== mremap\n");
  char *p = anon(2 * PAGE);
  fill(p, 2 * PAGE, 'a');
  char *q = mremap(p, 2 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
  BOOL("grow with MREMAP_MAYMOVE", q != MAP_FAILED);
  BOOL("contents moved", filled(q, 2 * PAGE, 'a'));
  BOOL("new pages are zero", all_bytes(q + 2 * PAGE, 62 * PAGE, 0));
  if (q != p) probe("old range is unmapped after a move", p, 0);
  else printf("old range is unmapped after a move: SIGSEGV SEGV_MAPERR\n");

  char *r = mremap(q, 64 * PAGE, 3 * PAGE, 0);
  BOOL("shrink stays in place", r == q);
  probe("shrunk-off page is unmapped", q + 3 * PAGE, 0);
  BOOL("kept contents", filled(q, 2 * PAGE, 'a'));
  munmap(q, 3 * PAGE);

  /* Grow in place when the pages after are free. */
  p = anon(4 * PAGE);
  fill(p, 2 * PAGE, 'b');
  munmap(p + 2 * PAGE, 2 * PAGE);
  q = mremap(p, 2 * PAGE, 4 * PAGE, 0);
  BOOL("grow in place into free pages", q == p);
  BOOL("contents kept", filled(p, 2 * PAGE, 'b') && all_bytes(p + 2 * PAGE, 2 * PAGE, 0));
  /* Part of an area cannot grow in place. */
  REMAP("grow a page inside an area without MAYMOVE", mremap(p, PAGE, 2 * PAGE, 0));

  /* MREMAP_FIXED to a chosen place, replacing what is there. */
  char *target = anon(6 * PAGE);
  memset(target, 'T', 6 * PAGE);
  q = mremap(p, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target + PAGE);
  BOOL("MREMAP_FIXED lands at the address", q == target + PAGE);
  BOOL("moved contents", filled(q, 2 * PAGE, 'b'));
  BOOL("pages around it untouched", target[0] == 'T' && target[5 * PAGE] == 'T');
  probe("source is unmapped", p, 0);
  REMAP("MREMAP_FIXED overlapping the source", mremap(target, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target + PAGE));
  REMAP("MREMAP_FIXED without MAYMOVE", mremap(target, PAGE, PAGE, MREMAP_FIXED, p));
  REMAP("MREMAP_FIXED unaligned target", mremap(target, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, p + 1));

  /* MREMAP_DONTUNMAP: the pages move, the old area stays and reads zero. */
  memset(target, 'D', PAGE);
  q = mremap(target, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
  BOOL("MREMAP_DONTUNMAP moves", q != MAP_FAILED && q != target);
  if (q != MAP_FAILED) {
    BOOL("moved page has the data", all_bytes(q, PAGE, 'D'));
    BOOL("old page still mapped, now zero", all_bytes(target, PAGE, 0));
    munmap(q, PAGE);
  }
  REMAP("MREMAP_DONTUNMAP with a new size", mremap(target, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL));
  munmap(target, 6 * PAGE);

  /* A file mapping grows with more of the file. */
  p = map_file(NULL, PAGE, PROT_READ, 0, PAGE);
  q = mremap(p, PAGE, 3 * PAGE, MREMAP_MAYMOVE);
  BOOL("file mapping grew", q != MAP_FAILED);
  BOOL("grown file mapping shows the file", q != MAP_FAILED && matches_file(q, PAGE, 2 * PAGE + 100));
  if (q != MAP_FAILED) munmap(q, 3 * PAGE);

  p = anon(4 * PAGE);
  munmap(p + 2 * PAGE, 2 * PAGE); /* a hole after the mapping */
  REMAP("unknown flag", mremap(p, PAGE, PAGE, 0x100));
  REMAP("unaligned address", mremap(p + 1, PAGE, PAGE, 0));
  REMAP("new length 0", mremap(p, PAGE, 0, MREMAP_MAYMOVE));
  REMAP("old length 0 of a private mapping", mremap(p, 0, PAGE, MREMAP_MAYMOVE));
  REMAP("old range past the area", mremap(p, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE));
  munmap(p, 2 * PAGE);
  REMAP("unmapped address", mremap(p, PAGE, 2 * PAGE, MREMAP_MAYMOVE));
}

static void section_msync_mincore(void) {
  printf("== msync\n");
  char *p = map_file(NULL, 3 * PAGE, PROT_READ, 0, 0);
  munmap(p + 2 * PAGE, PAGE); /* a hole after the mapping */
  SHOW("msync MS_SYNC", msync(p, 2 * PAGE, MS_SYNC));
  SHOW("msync MS_ASYNC|MS_INVALIDATE", msync(p, PAGE, MS_ASYNC | MS_INVALIDATE));
  SHOW("msync length 0", msync(p, 0, MS_SYNC));
  SHOW("msync MS_ASYNC|MS_SYNC", msync(p, PAGE, MS_ASYNC | MS_SYNC));
  SHOW("msync unknown flag", msync(p, PAGE, 8));
  SHOW("msync unaligned", msync(p + 1, PAGE, MS_SYNC));
  SHOW("msync past the mapping", msync(p, 3 * PAGE, MS_SYNC));
  munmap(p, 2 * PAGE);
  SHOW("msync unmapped", msync(p, PAGE, MS_SYNC));

  printf("== mincore\n");
  p = anon(5 * PAGE);
  munmap(p + 4 * PAGE, PAGE); /* a hole after the mapping */
  unsigned char vec[4];
  p[0] = 1;
  p[2 * PAGE] = 1;
  SHOW("mincore", mincore(p, 4 * PAGE, vec));
  /* Only touched pages have a defined answer: Linux may populate neighbours too
   * (transparent huge pages; the sandbox's fault-around). */
  printf("residency of touched pages: %d %d\n", vec[0] & 1, vec[2] & 1);
  madvise(p, PAGE, MADV_DONTNEED);
  SHOW("mincore after MADV_DONTNEED", mincore(p, 4 * PAGE, vec));
  printf("residency of the dropped page and a touched one: %d %d\n", vec[0] & 1, vec[2] & 1);
  SHOW("mincore partial last page", mincore(p, 2 * PAGE + 1, vec));
  SHOW("mincore length 0", mincore(p, 0, vec));
  SHOW("mincore unaligned", mincore(p + 1, PAGE, vec));
  SHOW("mincore bad vector", mincore(p, PAGE, (unsigned char *)8));
  SHOW("mincore past the mapping", mincore(p, 5 * PAGE, vec));
  munmap(p, 4 * PAGE);
  SHOW("mincore unmapped", mincore(p, PAGE, vec));
}

int main(int argc, char **argv) {
  snprintf(path, sizeof path, "/tmp/nv-mapping%s", argc > 1 ? argv[1] : "");
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    printf("open %s: %s\n", path, errname(errno));
    return 1;
  }
  unlink(path);
  char data[FILE_LEN];
  for (size_t i = 0; i < FILE_LEN; i++) data[i] = (char)file_byte(i);
  if (write(fd, data, FILE_LEN) != (ssize_t)FILE_LEN) {
    printf("write failed\n");
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  section_file();
  section_mremap();
  section_msync_mincore();
  return 0;
}

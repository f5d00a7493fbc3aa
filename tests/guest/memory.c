/* memory: anonymous and file-backed mmap, MAP_FIXED, munmap, mprotect, brk, madvise, and the
 * SIGSEGV/SIGBUS a bad access gets (checked with a handler that siglongjmps back). */
#include "nv.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
/* In /tmp, suffixed with argv[1] when given (see files.c). */
static char MAPFILE[128];

static sigjmp_buf jump;
static volatile int fault_sig;
static volatile int fault_code;
static void *volatile fault_addr;

static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  fault_sig = sig;
  fault_code = si->si_code;
  fault_addr = si->si_addr;
  siglongjmp(jump, 1);
}

static const char *code_name(int sig, int code) {
  if (sig == SIGSEGV && code == SEGV_MAPERR) return "SEGV_MAPERR";
  if (sig == SIGSEGV && code == SEGV_ACCERR) return "SEGV_ACCERR";
  if (sig == SIGBUS && code == BUS_ADRERR) return "BUS_ADRERR";
  static char buf[32];
  snprintf(buf, sizeof buf, "code%d", code);
  return buf;
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
    printf("%s: %s %s addr_matches=%s\n", what, fault_sig == SIGSEGV ? "SIGSEGV" : fault_sig == SIGBUS ? "SIGBUS" : "other",
           code_name(fault_sig, fault_code), fault_addr == (void *)addr ? "yes" : "no");
  }
}

static int all_bytes(const char *p, size_t n, char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v) return 0;
  return 1;
}

static void section_anon(void) {
  printf("== anonymous mappings\n");
  char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  BOOL("mmap anon", p != MAP_FAILED);
  BOOL("page aligned", ((uintptr_t)p & (PAGE - 1)) == 0);
  BOOL("fresh pages are zero", all_bytes(p, 4 * PAGE, 0));
  for (size_t i = 0; i < 4 * PAGE; i++) p[i] = (char)(i / PAGE + 1);
  int good = 1;
  for (size_t i = 0; i < 4 * PAGE; i++) good &= p[i] == (char)(i / PAGE + 1);
  BOOL("write then read back", good);

  char *q = mmap(p + PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  BOOL("MAP_FIXED returns the address", q == p + PAGE);
  BOOL("MAP_FIXED page is fresh", all_bytes(p + PAGE, PAGE, 0));
  BOOL("neighbours kept", all_bytes(p, PAGE, 1) && all_bytes(p + 2 * PAGE, PAGE, 3));
  errno = 0;
  q = mmap(p + PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  printf("MAP_FIXED_NOREPLACE over a mapping: %s\n", q == MAP_FAILED ? errname(errno) : "mapped");

  SHOW("munmap middle page", munmap(p + 2 * PAGE, PAGE));
  probe("read unmapped page", p + 2 * PAGE + 17, 0);
  probe("write unmapped page", p + 2 * PAGE, 1);
  probe("page after the hole still mapped", p + 3 * PAGE, 0);
  SHOW("munmap already unmapped", munmap(p + 2 * PAGE, PAGE));

  SHOW("mprotect PROT_READ", mprotect(p, PAGE, PROT_READ));
  probe("read read-only page", p + 5, 0);
  probe("write read-only page", p + 5, 1);
  SHOW("mprotect PROT_NONE", mprotect(p, PAGE, PROT_NONE));
  probe("read PROT_NONE page", p + 6, 0);
  SHOW("mprotect PROT_READ|PROT_WRITE", mprotect(p, PAGE, PROT_READ | PROT_WRITE));
  probe("write after restoring", p + 7, 1);
  BOOL("contents survived mprotect", p[0] == 1 && p[7] == 42);
  SHOW("mprotect unaligned", mprotect(p + 1, PAGE, PROT_READ));
  SHOW("mprotect over a hole", mprotect(p, 4 * PAGE, PROT_READ | PROT_WRITE));

  memset(p + 3 * PAGE, 'z', PAGE);
  SHOW("madvise MADV_DONTNEED", madvise(p + 3 * PAGE, PAGE, MADV_DONTNEED));
  BOOL("MADV_DONTNEED page reads zero", all_bytes(p + 3 * PAGE, PAGE, 0));
  BOOL("other pages untouched", p[0] == 1 && all_bytes(p + PAGE, PAGE, 0));
  SHOW("madvise unaligned", madvise(p + 1, PAGE, MADV_DONTNEED));

  SHOW("munmap all", munmap(p, 4 * PAGE));
  probe("read after munmap", p, 0);
  probe("read NULL page", (char *)16, 0);
  probe("read kernel address", (char *)0xffff800000000000UL, 0);
}

static void section_errors(void) {
  printf("== mmap errors\n");
  errno = 0;
  void *r = mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  printf("mmap length 0: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  r = mmap((void *)0x10000001, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  printf("mmap unaligned MAP_FIXED: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  r = mmap(NULL, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0);
  printf("mmap neither private nor shared: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  r = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_SHARED, -1, 0);
  printf("mmap private and shared, no fd: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  r = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 999, 0);
  printf("mmap bad fd: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  r = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 1);
  printf("mmap unaligned offset: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  errno = 0;
  r = mmap(NULL, (size_t)-PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  printf("mmap huge length: %s\n", r == MAP_FAILED ? errname(errno) : "mapped");
  SHOW("munmap unaligned", munmap((void *)0x10000001, PAGE));
  SHOW("munmap length 0", munmap((void *)0x10000000, 0));
}

static void section_file(void) {
  printf("== file-backed mappings\n");
  unlink(MAPFILE);
  int fd = open(MAPFILE, O_RDWR | O_CREAT | O_TRUNC, 0600);
  BOOL("create file", fd >= 0);
  char buf[PAGE];
  for (int pg = 0; pg < 2; pg++) {
    memset(buf, 'A' + pg, sizeof buf);
    write(fd, buf, sizeof buf);
  }
  SHOW("write tail", write(fd, "tail", 4)); /* file is 2 pages + 4 bytes */
  close(fd);

  fd = open(MAPFILE, O_RDONLY);
  char *m = mmap(NULL, 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
  BOOL("mmap file read-only", m != MAP_FAILED);
  BOOL("page 0 is A", all_bytes(m, PAGE, 'A'));
  BOOL("page 1 is B", all_bytes(m + PAGE, PAGE, 'B'));
  BOOL("tail bytes", memcmp(m + 2 * PAGE, "tail", 4) == 0);
  BOOL("rest of last page is zero", all_bytes(m + 2 * PAGE + 4, PAGE - 4, 0));
  probe("write to read-only file mapping", m, 1);
  probe("read past the end of the file", m + 3 * PAGE, 0);
  munmap(m, 4 * PAGE);

  m = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, PAGE);
  BOOL("mmap at offset 1 page", m != MAP_FAILED && all_bytes(m, PAGE, 'B'));
  munmap(m, PAGE);

  m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  BOOL("private writable mapping of a read-only fd", m != MAP_FAILED);
  if (m != MAP_FAILED) {
    m[0] = 'Z';
    char c = 0;
    pread(fd, &c, 1, 0);
    BOOL("private write stays private", m[0] == 'Z' && c == 'A');
    munmap(m, PAGE);
  }
  errno = 0;
  m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  printf("shared writable mapping of a read-only fd: %s\n", m == MAP_FAILED ? errname(errno) : "mapped");
  close(fd);
  unlink(MAPFILE);
}

static void section_brk(void) {
  printf("== brk\n");
  char *start = sbrk(0);
  BOOL("sbrk(0) works", start != (void *)-1);
  char *old = sbrk(10 * PAGE);
  BOOL("sbrk grow returns the old break", old == start);
  BOOL("break moved", (char *)sbrk(0) == start + 10 * PAGE);
  memset(old, 'b', 10 * PAGE);
  BOOL("new heap is writable", all_bytes(old, 10 * PAGE, 'b'));
  old = sbrk(-(long)(5 * PAGE));
  BOOL("sbrk shrink", (char *)sbrk(0) == start + 5 * PAGE);
  BOOL("kept part intact", all_bytes(start, 5 * PAGE, 'b'));
  sbrk(5 * PAGE);
  BOOL("regrown part is zero", all_bytes(start + 5 * PAGE, PAGE, 0));
  sbrk(-(long)(10 * PAGE));
  BOOL("back to start", (char *)sbrk(0) == start);
}

static void section_large(void) {
  printf("== large mapping\n");
  size_t len = 256UL << 20;
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  BOOL("mmap 256 MiB", p != MAP_FAILED);
  if (p == MAP_FAILED) return;
  long sum = 0;
  for (size_t off = 0; off < len; off += 1 << 20) p[off] = (char)(off >> 20);
  for (size_t off = 0; off < len; off += 1 << 20) sum += p[off];
  p[len - 1] = 7;
  printf("sparse sum: %ld last=%d\n", sum, p[len - 1]);
  SHOW("munmap 256 MiB", munmap(p, len));
}

int main(int argc, char **argv) {
  snprintf(MAPFILE, sizeof MAPFILE, "/tmp/nv-memory-file%s", argc > 1 ? argv[1] : "");
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  section_anon();
  section_errors();
  section_file();
  section_brk();
  section_large();
  printf("done\n");
  return 0;
}

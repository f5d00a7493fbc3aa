/* fault: CPU faults become signals with the right siginfo (SIGSEGV, SIGFPE, SIGILL, SIGTRAP);
 * a handler may fix the cause and return to retry, or edit the saved context; plus
 * rt_sigprocmask, rt_sigaction and sigaltstack round trips. */
#include "nv.h"

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGE 4096UL
#define ALTSTACK_SIZE (64 * 1024)

extern char nv_ud2[], nv_int3_after[];

static sigjmp_buf jump;
static char *altstack;

/* What the last handler saw. */
static volatile int h_sig, h_code, h_addr_ok, h_on_altstack, h_ss_onstack, h_sig_blocked;
static void *volatile expected_addr;
static volatile int fix_by_mprotect; /* SIGSEGV handler: make the page writable and return */

static void record(int sig, siginfo_t *si) {
  char local;
  h_sig = sig;
  h_code = si->si_code;
  h_addr_ok = si->si_addr == expected_addr;
  h_on_altstack = &local >= altstack && &local < altstack + ALTSTACK_SIZE;
  stack_t ss;
  h_ss_onstack = sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK);
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  h_sig_blocked = sigismember(&cur, sig);
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  record(sig, si);
  if (fix_by_mprotect) {
    uintptr_t page = (uintptr_t)si->si_addr & ~(PAGE - 1);
    mprotect((void *)page, PAGE, PROT_READ | PROT_WRITE);
    return; /* the faulting instruction runs again */
  }
  siglongjmp(jump, 1);
}

static void on_fpe(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  expected_addr = (void *)uc->uc_mcontext.gregs[REG_RIP]; /* si_addr is the faulting instruction */
  record(sig, si);
  siglongjmp(jump, 1);
}

static volatile int ill_rip_ok;
static void on_ill(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  record(sig, si);
  ill_rip_ok = uc->uc_mcontext.gregs[REG_RIP] == (greg_t)nv_ud2;
  uc->uc_mcontext.gregs[REG_RIP] += 2; /* skip the ud2 and carry on */
}

static volatile int trap_rip_ok;
static void on_trap(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  record(sig, si);
  trap_rip_ok = uc->uc_mcontext.gregs[REG_RIP] == (greg_t)nv_int3_after;
}

static const char *sig_name(int s) {
  switch (s) {
  case SIGSEGV: return "SIGSEGV";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  case SIGTRAP: return "SIGTRAP";
  case SIGBUS: return "SIGBUS";
  case 0: return "none";
  default: return "other";
  }
}

static const char *code_name(int sig, int code) {
  if (code == SI_KERNEL) return "SI_KERNEL";
  if (code == SI_USER) return "SI_USER";
  if (sig == SIGSEGV && code == SEGV_MAPERR) return "SEGV_MAPERR";
  if (sig == SIGSEGV && code == SEGV_ACCERR) return "SEGV_ACCERR";
  if (sig == SIGFPE && code == FPE_INTDIV) return "FPE_INTDIV";
  if (sig == SIGILL && code == ILL_ILLOPN) return "ILL_ILLOPN";
  if (sig == SIGTRAP && code == TRAP_BRKPT) return "TRAP_BRKPT";
  static char buf[32];
  snprintf(buf, sizeof buf, "code%d", code);
  return buf;
}

static void report(const char *what) {
  printf("%s: sig=%s code=%s addr_matches=%s altstack=%s ss_onstack=%s sig_blocked_in_handler=%s\n", what,
         sig_name(h_sig), code_name(h_sig, h_code), h_addr_ok ? "yes" : "no", h_on_altstack ? "yes" : "no",
         h_ss_onstack ? "yes" : "no", h_sig_blocked ? "yes" : "no");
  h_sig = 0;
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) < 0) printf("sigaction %d: %s\n", sig, errname(errno));
}

static void section_altstack(void) {
  printf("== sigaltstack\n");
  stack_t ss, old;
  memset(&old, 0, sizeof old);
  SHOW("query", sigaltstack(NULL, &old));
  BOOL("initially disabled", old.ss_flags == SS_DISABLE);
  altstack = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ss.ss_sp = altstack;
  ss.ss_size = 1024;
  ss.ss_flags = 0;
  SHOW("too small", sigaltstack(&ss, NULL));
  ss.ss_size = ALTSTACK_SIZE;
  ss.ss_flags = 0x1234;
  SHOW("bad flags", sigaltstack(&ss, NULL));
  ss.ss_flags = 0;
  SHOW("set", sigaltstack(&ss, NULL));
  SHOW("query", sigaltstack(NULL, &old));
  BOOL("round trip", old.ss_sp == altstack && old.ss_size == ALTSTACK_SIZE && old.ss_flags == 0);
  SHOW("bad pointer", sigaltstack((void *)1, NULL));
}

static void section_segv(void) {
  printf("== SIGSEGV\n");
  install(SIGSEGV, on_segv, SA_ONSTACK);

  expected_addr = NULL;
  fix_by_mprotect = 0;
  if (sigsetjmp(jump, 1) == 0) {
    (void)*(volatile int *)NULL;
    printf("NULL read did not fault\n");
  }
  report("NULL read");
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  BOOL("SIGSEGV unblocked after siglongjmp", !sigismember(&cur, SIGSEGV));

  char *page = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  expected_addr = page + 100;
  if (sigsetjmp(jump, 1) == 0) {
    *(volatile char *)(page + 100) = 1;
    printf("read-only write did not fault\n");
  }
  report("write to read-only page");

  /* The handler makes the page writable and returns; the write is retried and lands. */
  fix_by_mprotect = 1;
  expected_addr = page + 200;
  *(volatile char *)(page + 200) = 77;
  report("write, fixed by the handler");
  BOOL("retried write landed", page[200] == 77);
  fix_by_mprotect = 0;

  sigprocmask(SIG_BLOCK, NULL, &cur);
  BOOL("SIGSEGV unblocked after the handler returned", !sigismember(&cur, SIGSEGV));
  stack_t ss;
  sigaltstack(NULL, &ss);
  BOOL("back off the altstack", !(ss.ss_flags & SS_ONSTACK));

  /* Without SA_ONSTACK the handler runs on the normal stack. */
  install(SIGSEGV, on_segv, 0);
  expected_addr = NULL;
  if (sigsetjmp(jump, 1) == 0) (void)*(volatile int *)NULL;
  report("NULL read, no SA_ONSTACK");
  munmap(page, PAGE);
}

static void section_others(void) {
  printf("== SIGFPE\n");
  install(SIGFPE, on_fpe, SA_ONSTACK);
  volatile int zero = 0, x = 1;
  if (sigsetjmp(jump, 1) == 0) {
    x = x / zero;
    printf("division did not fault\n");
  }
  report("integer divide by zero");

  printf("== SIGILL\n");
  install(SIGILL, on_ill, 0);
  expected_addr = nv_ud2;
  __asm__ volatile(".globl nv_ud2\nnv_ud2: ud2" ::: "memory");
  report("ud2");
  BOOL("saved RIP is the ud2", ill_rip_ok);
  printf("resumed after ud2 by editing the context\n");

}

/* Optional (run as `fault int3`): a breakpoint gives SIGTRAP with si_code SI_KERNEL on x86-64
 * Linux, and the saved RIP points after the int3. */
static void section_int3(void) {
  printf("== SIGTRAP\n");
  install(SIGTRAP, on_trap, 0);
  expected_addr = NULL;
  __asm__ volatile("int3\n.globl nv_int3_after\nnv_int3_after:" ::: "memory");
  report("int3");
  BOOL("saved RIP is after the int3", trap_rip_ok);
}

static void section_masks(void) {
  printf("== rt_sigprocmask\n");
  sigset_t set, old, cur;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGKILL);
  sigaddset(&set, SIGSTOP);
  sigaddset(&set, SIGRTMIN + 1);
  SHOW("block USR1 KILL STOP RTMIN+1", sigprocmask(SIG_BLOCK, &set, &old));
  BOOL("old mask empty", !sigismember(&old, SIGUSR1));
  sigprocmask(SIG_BLOCK, NULL, &cur);
  BOOL("USR1 blocked", sigismember(&cur, SIGUSR1));
  BOOL("RTMIN+1 blocked", sigismember(&cur, SIGRTMIN + 1));
  BOOL("KILL not blockable", !sigismember(&cur, SIGKILL));
  BOOL("STOP not blockable", !sigismember(&cur, SIGSTOP));
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  SHOW("unblock USR1", sigprocmask(SIG_UNBLOCK, &set, NULL));
  sigprocmask(SIG_BLOCK, NULL, &cur);
  BOOL("USR1 unblocked", !sigismember(&cur, SIGUSR1));
  BOOL("RTMIN+1 still blocked", sigismember(&cur, SIGRTMIN + 1));
  SHOW("SIG_SETMASK {USR1}", sigprocmask(SIG_SETMASK, &set, NULL));
  sigprocmask(SIG_BLOCK, NULL, &cur);
  BOOL("mask is exactly USR1", sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGRTMIN + 1));
  sigemptyset(&set);
  sigprocmask(SIG_SETMASK, &set, NULL);
  SHOW("bad how", syscall(SYS_rt_sigprocmask, 99, &set, NULL, 8));
  SHOW("bad sigsetsize", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 4));
  SHOW("bad pointer", syscall(SYS_rt_sigprocmask, SIG_BLOCK, (void *)1, NULL, 8));

  printf("== rt_sigaction\n");
  struct sigaction sa, prev;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  SHOW("SIGKILL", sigaction(SIGKILL, &sa, NULL));
  SHOW("SIGSTOP", sigaction(SIGSTOP, &sa, NULL));
  SHOW("signal 0", sigaction(0, &sa, NULL));
  SHOW("signal 65", sigaction(65, &sa, NULL));
  SHOW("SIGUSR2 ignore", sigaction(SIGUSR2, &sa, NULL));
  SHOW("SIGUSR2 query", sigaction(SIGUSR2, NULL, &prev));
  BOOL("SIGUSR2 was set to SIG_IGN", prev.sa_handler == SIG_IGN);
  SHOW("query SIGKILL", sigaction(SIGKILL, NULL, &prev));
  BOOL("SIGKILL default", prev.sa_handler == SIG_DFL);
  SHOW("bad sigsetsize", syscall(SYS_rt_sigaction, SIGUSR2, NULL, &prev, 4));
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strcmp(argv[1], "int3") == 0) {
    section_int3();
    printf("done\n");
    return 0;
  }
  section_altstack();
  section_segv();
  section_others();
  section_masks();
  printf("done\n");
  return 0;
}

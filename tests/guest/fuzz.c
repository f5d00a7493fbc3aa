/* fuzz: a hostile guest. Children make raw syscalls with PRNG-chosen numbers and arguments
 * (wild pointers, pointers running off a buffer's end, real fds, huge lengths); the sandbox
 * must survive whatever they do to themselves. Usage: fuzz SEED CHILDREN [CALLS [v]].
 *
 * Each child opens a few real fds (/dev/null, a pipe, a file, a directory, a socketpair,
 * a UDP socket, an eventfd), maps a scratch buffer with a guard page after it, and makes
 * CALLS syscalls: numbers 0..462 (numbers that answered ENOSYS are mostly drawn again)
 * and a few past the table. One child in four fuzzes from three threads at once, and
 * every third batch of children is SIGKILLed mid-call. Calls that would leave the child
 * (signals to others, ptrace), hang it (pause, infinite timeouts) or touch host-wide
 * state (clock, mounts, modules, reboot) are tamed or skipped in `tame`.
 *
 * Run it in the sandbox only. Natively the children are root processes making random
 * syscalls; the exclusions keep them away from the host's clock, mounts, modules, power,
 * other processes and files outside their own directory, but nothing here is a security
 * boundary.
 *
 * This is not a conformance test: what the children do differs natively and in the
 * sandbox, and only the parent's lines on stdout are deterministic. With a fourth
 * argument, how each child ended goes to stderr, for whoever tunes the fuzzer. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SCRATCH_PAGES 2
#define PAGE 4096UL
#define SCRATCH_LEN (SCRATCH_PAGES * PAGE)
/* Children run this many at a time, so one that blocks until its watchdog does not stall
 * the rest. */
#define BATCH 4
/* The child's own watchdog (alarm) and the parent's, which also covers a child that
 * blocked or ignored SIGALRM. */
#define CHILD_WATCHDOG_S 2
#define BATCH_TIMEOUT_S 6
/* Seconds after the SIGKILLs before the parent gives up on a child that would not die. */
#define UNKILLABLE_S 20
/* Syscall numbers are drawn below this (the x86-64 table ends at 462, mseal, in Linux 6.10). */
#define MAX_NR 463

/* xorshift64*: deterministic for a seed, the same natively and in the sandbox. */
static __thread uint64_t rng_state;
static uint64_t rnd_seed; /* the child's first state, from which its threads' derive */
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

/* What a child's arguments draw from. */
static char *scratch;    /* SCRATCH_LEN read-write bytes, then a PROT_NONE guard page */
static char *ro_page;    /* one read-only page */
static char *hole;       /* a page that was mapped, then unmapped */
static long fds[10];
static int nfds;
static pid_t self;

/* Shared with the parent, for the stderr report: how far each child got. */
struct progress {
  int calls;
  uint64_t last_nr;
};
static struct progress *progress;

/* Offsets of fixed contents inside scratch. */
enum {
  OFF_ZERO = 0,        /* 128 zero bytes: a zero timespec/timeval for timeouts */
  OFF_IOV = 128,       /* an iovec array mixing good, overrunning and wild entries */
  OFF_PATHS = 256,     /* NUL-terminated path names, 64 bytes apart */
  OFF_RANDOM = 2048,   /* random bytes from here on */
};
static const char *const paths[] = {"f",
                                    "d",
                                    "sub/x",
                                    "/proc/self/status",
                                    "/nonexistent/x",
                                    "f/..",
                                    "",
                                    ".",
                                    "/proc/self/maps",
                                    "/proc/self/fd/3",
                                    "/proc/self/exe",
                                    "/proc/self/task",
                                    "d/../f",
                                    "/proc/self/mem",
                                    "/bin/true"};
/* The last one, /bin/true, is only ever given to execve: any other call with it could,
 * natively, change the host's file. */
#define NPATHS (sizeof paths / sizeof paths[0] - 1)
#define PATH_BIN_TRUE NPATHS
#define PATH_NONEXISTENT 4

static void fill_scratch(void) {
  memset(scratch, 0, OFF_RANDOM);
  struct {
    void *base;
    size_t len;
  } *iov = (void *)(scratch + OFF_IOV);
  iov[0].base = scratch + OFF_RANDOM;
  iov[0].len = 64;
  iov[1].base = scratch + SCRATCH_LEN - 16; /* runs into the guard page */
  iov[1].len = 4096;
  iov[2].base = (void *)0xffff800000000000UL;
  iov[2].len = 8;
  iov[3].base = NULL;
  iov[3].len = 0;
  for (unsigned i = 0; i < sizeof paths / sizeof paths[0]; i++)
    strcpy(scratch + OFF_PATHS + 64 * i, paths[i]);
  for (size_t i = OFF_RANDOM; i < SCRATCH_LEN; i++) {
    char c = (char)rnd();
    /* No '/' or '.': a random name never leaves the child's own directory. */
    scratch[i] = (c == '/' || c == '.') ? 'x' : c;
  }
}

static uint64_t wild_pointer(void) {
  static const uint64_t wild[] = {
      1,
      8,
      0x1000,
      0xfff,                    /* unaligned, first page */
      0x00007ffffffff000UL,     /* top of user space */
      0x00007fffffffffffUL,
      0x0000800000000000UL,     /* first non-canonical */
      0x0090000000000000UL,     /* non-canonical */
      0xffff800000000000UL,     /* kernel half */
      0xffffffffff600000UL,     /* vsyscall page */
      0xfffffffffffff000UL,
      0xffffffffffffffffUL,
  };
  switch (below(4)) {
  case 0: return (uint64_t)hole + below(PAGE);
  case 1: return (uint64_t)ro_page + below(PAGE);
  case 2: return (uint64_t)&fill_scratch; /* code: readable, not writable */
  default: return wild[below(sizeof wild / sizeof wild[0])];
  }
}

static uint64_t arg(void) {
  static const uint64_t big[] = {
      0x7fffffff, 0x80000000, 0xffffffff, 0x100000000UL, 1UL << 40,
      0x7fffffffffffffffUL, 0x8000000000000000UL, 0xfffffffffffff000UL,
  };
  switch (below(18)) {
  case 16: return below(0x1000); /* flag-like bits */
  case 17: return 1UL << below(64);
  case 0: return 0;
  case 1: return (uint64_t)-1;
  case 2: return below(8);
  case 3: return below(64);
  case 4:
  case 5: return (uint64_t)fds[below(nfds)];
  case 6: return (uint64_t)scratch + below(SCRATCH_LEN);
  case 7: return (uint64_t)scratch + (below(SCRATCH_LEN / 8) * 8);
  case 8: return (uint64_t)scratch + SCRATCH_LEN - below(64); /* runs past the end */
  case 9: return (uint64_t)scratch + OFF_PATHS + 64 * below(NPATHS);
  case 10: return (uint64_t)scratch + OFF_IOV;
  case 11: return wild_pointer();
  case 12: return big[below(sizeof big / sizeof big[0])];
  case 13: return PAGE * (1 + below(16));
  case 14: return (uint32_t)rnd();
  default: return rnd();
  }
}

/* Numbers that answered ENOSYS: drawn again mostly elsewhere, so calls reach code. */
static unsigned char nosys[MAX_NR];

static uint64_t syscall_number(void) {
  static const uint64_t odd[] = {
      463, 500, 511, 512, 547, 548, 1000, 0x1000, 0x1001, 0x40000000,
      0x40000000 + 1, 0x7fffffff, 0xffffffff, 0x8000000000000000UL, (uint64_t)-1,
  };
  if (below(20) == 0)
    return odd[below(sizeof odd / sizeof odd[0])];
  uint64_t nr = below(MAX_NR);
  for (int tries = 0; tries < 4 && nosys[nr]; tries++)
    nr = below(MAX_NR);
  return nr;
}

/* A signal for a child to send itself: never a stop, and mostly one whose default
 * action is to ignore it, so that most children live to make their last call. */
static uint64_t tame_signal(uint64_t sig) {
  static const uint64_t harmless[] = {0, SIGCHLD, SIGURG, SIGWINCH, SIGCONT};
  if (below(4) != 0 || (sig >= SIGSTOP && sig <= SIGTTOU))
    return harmless[below(sizeof harmless / sizeof harmless[0])];
  return sig;
}

/* Makes one drawn call safe to make, or returns 0 to skip it. The rules keep the call
 * inside the child (signals, pids), keep blocking calls short (zero timeouts, WNOHANG)
 * and keep the host's clock, mounts, modules and power out of reach. */
static int tame(uint64_t nr, uint64_t *a) {
  uint64_t zero = (uint64_t)scratch + OFF_ZERO;
  switch (nr) {
  /* The end of the child comes only after its last call. */
  case SYS_exit:
  case SYS_exit_group:
  /* Would block until the watchdog, or remove the watchdog. */
  case SYS_pause:
  case SYS_rt_sigsuspend:
  case SYS_alarm:
  case SYS_semop:
  case SYS_semtimedop:
  /* A child sharing our memory and stack corrupts it; plain fork is drawn below. */
  case SYS_vfork:
  /* Host-wide state: never, not even natively. */
  case SYS_ptrace:
  case SYS_syslog:
  case SYS_vhangup:
  case SYS_pivot_root:
  case SYS_acct:
  case SYS_settimeofday:
  case SYS_clock_settime:
  case SYS_adjtimex:
  case SYS_clock_adjtime:
  case SYS_mount:
  case SYS_umount2:
  case SYS_swapon:
  case SYS_swapoff:
  case SYS_reboot:
  case SYS_sethostname:
  case SYS_setdomainname:
  case SYS_iopl:
  case SYS_ioperm:
  case SYS_init_module:
  case SYS_finit_module:
  case SYS_delete_module:
  case SYS_quotactl:
  case SYS_kexec_load:
  case SYS_kexec_file_load:
  case SYS_perf_event_open:
  case SYS_bpf:
  case SYS_fanotify_init:
  case SYS_migrate_pages:
  case SYS_move_pages:
  case SYS_shmget:
  case SYS_semget:
  case SYS_msgget:
  case 428 ... 433: /* open_tree, move_mount, fsopen, fsconfig, fsmount, fspick */
  case 440:         /* process_madvise */
  case 442:         /* mount_setattr */
  case 448:         /* process_mrelease */
    return 0;
  /* Signals go to the child itself, and never stop it. */
  case SYS_kill:
  case SYS_tkill:
  case SYS_rt_sigqueueinfo:
    /* Beyond PID_MAX_LIMIT no process exists; INT_MIN is an edge case of its own. */
    if ((int)a[0] != INT32_MIN && (int)a[0] <= 0x400000)
      a[0] = self;
    a[1] = tame_signal(a[1]);
    break;
  case SYS_tgkill:
  case SYS_rt_tgsigqueueinfo:
    a[0] = a[1] = self;
    a[2] = tame_signal(a[2]);
    break;
  /* Unmapping or protecting the stack or code ends the child; make it the rarer case. */
  case SYS_munmap:
  case SYS_mprotect:
  case SYS_mremap:
  case SYS_madvise:
  case SYS_pkey_mprotect:
    if (below(4) != 0)
      a[1] = below(3 * SCRATCH_LEN);
    break;
  case SYS_rt_sigaction:
    if ((int)a[0] == SIGALRM)
      a[0] = SIGUSR1;
    break;
  case SYS_setitimer:
    if (a[0] == ITIMER_REAL)
      a[0] = ITIMER_VIRTUAL;
    break;
  /* Calls naming a process name the child. */
  case SYS_setpgid:
  case SYS_sched_setaffinity:
  case SYS_sched_setparam:
  case SYS_sched_setscheduler:
  case SYS_prlimit64:
  case SYS_process_vm_readv:
  case SYS_process_vm_writev:
  case SYS_pidfd_open:
    a[0] = 0;
    if (nr == SYS_process_vm_readv || nr == SYS_process_vm_writev || nr == SYS_pidfd_open)
      a[0] = self;
    break;
  case SYS_setpriority:
  case SYS_ioprio_set:
    a[1] = 0;
    break;
  case SYS_rt_sigreturn:
    /* Returns through a garbage frame: the child dies of SIGSEGV. Drawn uniformly it
     * would end half the children before their 300th call. */
    return below(32) == 0;
  case SYS_clone:
    a[0] = SIGCHLD; /* a plain fork: no shared memory, no new namespaces */
    a[1] = 0;
    break;
  case SYS_clone3:
    a[0] = wild_pointer();
    break;
  case SYS_execve:
    /* Mostly a path that does not exist; sometimes /bin/true with wild argv and envp,
     * which ends the child if the sentry accepts them. */
    a[0] = (uint64_t)scratch + OFF_PATHS + 64 * (below(4) == 0 ? PATH_BIN_TRUE : PATH_NONEXISTENT);
    break;
  case SYS_execveat:
    a[1] = (uint64_t)scratch + OFF_PATHS + 64 * PATH_NONEXISTENT;
    a[4] = 0;
    break;
  /* Random 32-bit requests and options almost never name one that exists. */
  case SYS_ioctl: {
    static const uint64_t requests[] = {
        0x5401, 0x5402, 0x5403, 0x540b, 0x540e, 0x540f, 0x5410, 0x5413, 0x5414, 0x541b,
        0x5421, 0x5422, 0x5450, 0x5451, 0x5452, 0x5460, 0x8910, 0x8912, 0x8913, 0x8915,
        0x8921, 0x8927, 0x8933, 0x80045430, 0x40045431, 0x80086601, 0xc0189436,
    };
    if (below(4) != 0)
      a[1] = requests[below(sizeof requests / sizeof requests[0])];
    break;
  }
  case SYS_setsockopt:
  case SYS_getsockopt: {
    static const uint64_t levels[] = {0, 1, 6, 17, 41, 255, 263};
    if (below(4) != 0) {
      a[1] = levels[below(sizeof levels / sizeof levels[0])];
      a[2] = below(80);
    }
    break;
  }
  case SYS_socket:
    if (a[0] == AF_PACKET)
      a[0] = AF_UNIX;
    break;
  /* Blocking calls get a zero timeout or WNOHANG. */
  case SYS_nanosleep:
    a[0] = zero;
    break;
  case SYS_clock_nanosleep:
    a[1] &= ~1UL; /* TIMER_ABSTIME with a zero time would also return at once */
    a[2] = zero;
    break;
  case SYS_poll:
    a[2] = 0;
    break;
  case SYS_select:
  case SYS_pselect6:
    a[4] = zero;
    break;
  case SYS_ppoll:
    a[2] = zero;
    break;
  case SYS_epoll_wait:
  case SYS_epoll_pwait:
    a[3] = 0;
    break;
  case SYS_epoll_pwait2:
  case SYS_futex:
  case SYS_futex_waitv:
    a[3] = zero;
    break;
  case SYS_rt_sigtimedwait:
    a[2] = zero;
    break;
  case SYS_mq_timedsend:
  case SYS_mq_timedreceive:
  case SYS_io_getevents:
    a[4] = zero;
    break;
  case 455: /* futex_wait */
    a[4] = zero;
    break;
  case SYS_wait4:
    a[2] |= WNOHANG;
    break;
  case SYS_waitid:
    a[3] |= WNOHANG;
    break;
  case SYS_msgrcv:
    a[4] |= 04000; /* IPC_NOWAIT */
    break;
  }
  return 1;
}

static void add_fd(long fd) {
  if (fd >= 0 && nfds < (int)(sizeof fds / sizeof fds[0]))
    fds[nfds++] = fd;
}

/* Makes `calls` fuzzed calls; the main thread (`report`) records its progress. */
static void fuzz_calls(int index, int calls, int report) {
  for (int i = 0; i < calls; i++) {
    uint64_t nr = syscall_number();
    uint64_t a[6];
    for (int k = 0; k < 6; k++)
      a[k] = arg();
    if (!tame(nr, a))
      continue;
    if (report) {
      progress[index].calls = i;
      progress[index].last_nr = nr;
    }
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r == -1 && errno == ENOSYS && nr < MAX_NR)
      nosys[nr] = 1;
    if (r == 0 && (nr == SYS_fork || nr == SYS_clone || nr == SYS_clone3))
      _exit(0); /* the grandchild: done */
    if (nr == SYS_rt_sigprocmask) {
      /* Keep the watchdog deliverable. */
      sigset_t alrm;
      sigemptyset(&alrm);
      sigaddset(&alrm, SIGALRM);
      sigprocmask(SIG_UNBLOCK, &alrm, NULL);
    }
  }
}

static int thread_calls;
static void *fuzz_thread(void *arg) {
  rng_state = rnd_seed + (uintptr_t)arg * 0x94D049BB133111EBULL;
  fuzz_calls(0, thread_calls, 0);
  return NULL;
}

static void child(uint64_t seed, int index, int calls) {
  /* Fuzzed calls never reach the parent's output: 0, 1 and 2 become /dev/null. */
  int null = open("/dev/null", O_RDWR);
  dup2(null, 0);
  dup2(null, 1);
  dup2(null, 2);
  for (int sig = 1; sig < 32; sig++)
    signal(sig, SIG_DFL);
  alarm(CHILD_WATCHDOG_S);
  self = getpid();
  rng_state = seed * 0x9E3779B97F4A7C15ULL + (uint64_t)index * 0xBF58476D1CE4E5B9ULL + 1;
  rnd_seed = rng_state;
  thread_calls = calls;

  char dir[32];
  snprintf(dir, sizeof dir, "c%d", index);
  mkdir(dir, 0700);
  if (chdir(dir) != 0)
    _exit(120);
  mkdir("d", 0700);

  scratch = mmap(NULL, SCRATCH_LEN + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ro_page = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  hole = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (scratch == MAP_FAILED || ro_page == MAP_FAILED || hole == MAP_FAILED)
    _exit(121);
  mprotect(scratch + SCRATCH_LEN, PAGE, PROT_NONE);
  munmap(hole, PAGE);
  fill_scratch();

  int p[2];
  fds[nfds++] = 100; /* a closed fd */
  add_fd(null);
  if (pipe2(p, O_NONBLOCK) == 0) {
    add_fd(p[0]);
    add_fd(p[1]);
  }
  add_fd(open("f", O_RDWR | O_CREAT, 0600));
  add_fd(open(".", O_RDONLY | O_DIRECTORY));
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0) {
    add_fd(sv[0]);
    add_fd(sv[1]);
  }
  add_fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  add_fd(syscall(SYS_eventfd2, 0, O_NONBLOCK));

  if (index % 4 == 1) {
    /* Two more threads fuzz the same address space and fd table at the same time. */
    for (int k = 0; k < 2; k++) {
      pthread_t th;
      pthread_create(&th, NULL, fuzz_thread, (void *)(uintptr_t)(k + 1));
    }
  }
  fuzz_calls(index, calls, 1);
  progress[index].calls = calls;
  syscall(SYS_exit_group, 0);
}

/* The batch timeout. It fires again every second until cancelled: a signal that lands
 * between two waitpid calls interrupts nothing, and the next one then would wait forever. */
static volatile sig_atomic_t batch_overran;
static void on_alarm(int sig) {
  (void)sig;
  batch_overran++;
  alarm(1);
}

/* After the fuzzing: the kernel still moves bytes through a pipe, forks, and reports a
 * child's exit status. */
static int still_works(void) {
  int p[2];
  char buf[4] = {0};
  if (pipe(p) != 0 || write(p[1], "ok", 3) != 3 || read(p[0], buf, sizeof buf) != 3 ||
      strcmp(buf, "ok") != 0)
    return 0;
  close(p[0]);
  close(p[1]);
  pid_t pid = fork();
  if (pid == 0)
    _exit(7);
  int status;
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 7;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fuzz SEED CHILDREN [CALLS]\n");
    return 2;
  }
  uint64_t seed = strtoull(argv[1], NULL, 0);
  int children = atoi(argv[2]);
  int calls = argc > 3 ? atoi(argv[3]) : 300;
  int verbose = argc > 4;
  progress = mmap(NULL, sizeof *progress * (children > 0 ? children : 1), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (progress == MAP_FAILED) {
    perror("fuzz: mmap");
    return 1;
  }
  memset(progress, 0, sizeof *progress * (children > 0 ? children : 1));

  /* A child can reach us only through signals (F_SETOWN, SIGIO, a pgrp signal): ignore
   * all of those we can. SIGALRM is the batch timeout; SIGCHLD keeps its default. */
  for (int sig = 1; sig < 32; sig++)
    if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD && sig != SIGALRM)
      signal(sig, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART: waitpid returns EINTR */
  sigaction(SIGALRM, &sa, NULL);

  char tmp[] = "/tmp/nv-fuzz-XXXXXX";
  if (!mkdtemp(tmp) || chdir(tmp) != 0) {
    perror("fuzz: temporary directory");
    return 1;
  }

  rng_state = seed + 1;
  int exited = 0, signaled = 0, timed_out = 0;
  for (int first = 0; first < children; first += BATCH) {
    pid_t pids[BATCH];
    int n = 0;
    for (; n < BATCH && first + n < children; n++) {
      fflush(NULL);
      pid_t pid = fork();
      if (pid == 0)
        child(seed, first + n, calls);
      pids[n] = pid;
    }
    if ((first / BATCH) % 3 == 2) {
      /* Every third batch dies of SIGKILL mid-call, wherever its calls have got to. */
      usleep(1000 + below(50000));
      for (int k = 0; k < n; k++)
        if (pids[k] > 0)
          kill(pids[k], SIGKILL);
    }
    batch_overran = 0;
    alarm(BATCH_TIMEOUT_S);
    int killed = 0;
    for (int k = 0; k < n; k++) {
      if (pids[k] < 0)
        continue;
      int status;
      while (waitpid(pids[k], &status, 0) < 0) {
        if (errno != EINTR) {
          perror("fuzz: waitpid");
          return 1;
        }
        if (!batch_overran)
          continue;
        if (batch_overran > UNKILLABLE_S) {
          /* SIGKILL always ends a process: if it did not, the sandbox's kernel is broken. */
          printf("fuzz: child %d survives SIGKILL\n", first + k);
          return 3;
        }
        /* The batch overran: its children are stuck. */
        for (int j = k; j < n; j++)
          if (pids[j] > 0)
            kill(pids[j], SIGKILL);
        killed = 1;
      }
      struct progress pr = progress[first + k];
      if (verbose)
        fprintf(stderr, "fuzz: child %d: %s %d after %d calls, last nr %llu\n", first + k,
                killed ? "timeout" : WIFEXITED(status) ? "exit" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), pr.calls,
                (unsigned long long)pr.last_nr);
      if (killed)
        timed_out++;
      else if (WIFEXITED(status))
        exited++;
      else
        signaled++;
    }
    alarm(0);
    /* Grandchildren whose parent died before reaping them may be ours now. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
  fprintf(stderr, "fuzz: seed %llu: %d exited, %d killed by a signal, %d timed out\n",
          (unsigned long long)seed, exited, signaled, timed_out);
  printf("fuzz: %d children done\n", children);
  if (still_works())
    printf("fuzz: the sandbox still works\n");
  return 0;
}

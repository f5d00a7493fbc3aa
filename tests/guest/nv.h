/* Helpers shared by the guest conformance programs: errno names and result printing.
 * Every line a program prints must be deterministic (no addresses, pids, times, inode
 * numbers), because the harness compares native and sandboxed output byte for byte. */
#ifndef NV_H
#define NV_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *errname(int e) {
  switch (e) {
  case 0: return "OK";
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EINTR: return "EINTR";
  case EIO: return "EIO";
  case ENXIO: return "ENXIO";
  case E2BIG: return "E2BIG";
  case ENOEXEC: return "ENOEXEC";
  case EBADF: return "EBADF";
  case ECHILD: return "ECHILD";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case EXDEV: return "EXDEV";
  case ENODEV: return "ENODEV";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case EINVAL: return "EINVAL";
  case ENFILE: return "ENFILE";
  case EMFILE: return "EMFILE";
  case ENOTTY: return "ENOTTY";
  case EFBIG: return "EFBIG";
  case ENOSPC: return "ENOSPC";
  case ESPIPE: return "ESPIPE";
  case EROFS: return "EROFS";
  case EMLINK: return "EMLINK";
  case EPIPE: return "EPIPE";
  case EDOM: return "EDOM";
  case ERANGE: return "ERANGE";
  case ENAMETOOLONG: return "ENAMETOOLONG";
  case ENOSYS: return "ENOSYS";
  case ENOTEMPTY: return "ENOTEMPTY";
  case ELOOP: return "ELOOP";
  case EOVERFLOW: return "EOVERFLOW";
  case ENOTSUP: return "ENOTSUP";
  default: {
    static char buf[32];
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
  }
  }
}

/* Prints "what: = RET" on success or "what: -1 ENAME" on failure. Use for calls whose
 * return value is deterministic (a count, 0, a small fd number). */
#define SHOW(what, expr)                                                       \
  do {                                                                         \
    errno = 0;                                                                 \
    long nv_r_ = (long)(expr);                                                 \
    if (nv_r_ < 0)                                                             \
      printf("%s: -1 %s\n", (what), errname(errno));                           \
    else                                                                       \
      printf("%s: = %ld\n", (what), nv_r_);                                    \
  } while (0)

/* Prints "what: ok" when the call succeeded (return >= 0) and the errno name otherwise.
 * Use for calls whose return value is not deterministic (fds, addresses). */
#define OKERR(what, expr)                                                      \
  do {                                                                         \
    errno = 0;                                                                 \
    long nv_r_ = (long)(expr);                                                 \
    printf("%s: %s\n", (what), nv_r_ < 0 ? errname(errno) : "ok");             \
  } while (0)

#define BOOL(what, cond) printf("%s: %s\n", (what), (cond) ? "yes" : "no")

#endif

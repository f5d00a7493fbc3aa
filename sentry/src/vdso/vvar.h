/* The vvar page: what the sentry publishes for the guest vDSO (vdso.c). It sits one
 * page below the vDSO's ELF header, mapped read-only. The layout is fixed: the Rust
 * writer (`clock.rs`, `VvarData::encode`) uses the same offsets, checked below. */
#ifndef NV_VVAR_H
#define NV_VVAR_H

typedef unsigned int nv_u32;
typedef unsigned long nv_u64;

/* `mode`: how the vDSO answers. */
#define NV_MODE_SYSCALL 0 /* ask the sentry with a real syscall (no usable TSC yet) */
#define NV_MODE_TSC 1     /* extrapolate from the TSC with the lines below */

struct nv_vvar {
  /* Seqlock: odd while the sentry rewrites the fields below. */
  nv_u32 seq;
  nv_u32 mode;
  /* Both lines pass through this TSC value. */
  nv_u64 tsc_base;
  /* CLOCK_MONOTONIC at tsc_base, in ns, and ns per TSC cycle as a 32.32 fixed-point. */
  nv_u64 mono_ns;
  nv_u64 mono_mult;
  /* CLOCK_MONOTONIC_RAW, likewise. */
  nv_u64 raw_ns;
  nv_u64 raw_mult;
  /* CLOCK_REALTIME - CLOCK_MONOTONIC and CLOCK_BOOTTIME - CLOCK_MONOTONIC, in ns. */
  nv_u64 real_offset;
  nv_u64 boot_offset;
  /* Resolution of the _COARSE clocks in ns; 0 means the page is not set up. */
  nv_u64 coarse_res;
};

_Static_assert(__builtin_offsetof(struct nv_vvar, seq) == 0, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, mode) == 4, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, tsc_base) == 8, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, mono_ns) == 16, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, mono_mult) == 24, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, raw_ns) == 32, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, raw_mult) == 40, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, real_offset) == 48, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, boot_offset) == 56, "vvar layout");
_Static_assert(__builtin_offsetof(struct nv_vvar, coarse_res) == 64, "vvar layout");
_Static_assert(sizeof(struct nv_vvar) == 72, "vvar layout");

#endif

//! Whether guest code reads the host's TSC: the guest vDSO (`crate::vdso`) turns TSC
//! values into time with parameters the sentry computes from the host's own TSC, so the
//! two must be the same counter.
//!
//! KVM's guest TSC is `host TSC × ratio + offset`. We never ask for a different guest
//! frequency (KVM_SET_TSC_KHZ), so the ratio is 1; the offset KVM picks at vCPU creation
//! (the guest TSC starting near zero, on hardware KVM) is set to 0 where KVM lets us
//! (KVM_VCPU_TSC_OFFSET, Linux ≥ 5.16). kvm_pvm already runs guests on the host TSC.
//! Every new vCPU is then checked: its IA32_TSC, read through KVM, must fall between two
//! host `rdtsc`s taken around the read. One failure marks the TSC unusable for the rest
//! of the process, and the vDSO asks the sentry with real syscalls instead.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};

use kvm_bindings::{kvm_device_attr, kvm_msr_entry, Msrs, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET};
use kvm_ioctls::VcpuFd;

const MSR_IA32_TSC: u32 = 0x10;
/// `_IOW(KVMIO, 0xe1, struct kvm_device_attr)` and `_IOW(KVMIO, 0xe3, …)`: kvm-ioctls
/// offers these on vCPU fds only for aarch64.
const KVM_SET_DEVICE_ATTR: libc::c_ulong = 0x4018_aee1;
const KVM_HAS_DEVICE_ATTR: libc::c_ulong = 0x4018_aee3;
/// Slack allowed around the bracketing `rdtsc`s, in cycles (a few µs at any clock rate).
const SLACK: u64 = 10_000;

const UNKNOWN: u8 = 0;
const SAME: u8 = 1;
const DIFFERENT: u8 = 2;

static VERDICT: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether guest `rdtsc` returns the host's TSC: `None` before the first vCPU exists,
/// `Some(false)` once any vCPU was seen to differ.
pub fn guest_tsc_is_host_tsc() -> Option<bool> {
    match VERDICT.load(Ordering::Acquire) {
        SAME => Some(true),
        DIFFERENT => Some(false),
        _ => None,
    }
}

/// The host's TSC, ordered after earlier loads.
pub fn host_tsc() -> u64 {
    // SAFETY: LFENCE and RDTSC only read the time-stamp counter; both exist on every
    // x86-64 CPU (SSE2 is part of the base ISA).
    unsafe {
        std::arch::x86_64::_mm_lfence();
        std::arch::x86_64::_rdtsc()
    }
}

/// Make `vcpu`'s TSC the host's where KVM allows it, check it, and record the result.
pub(super) fn align_to_host(vcpu: &VcpuFd) {
    let offset = 0u64;
    let attr = kvm_device_attr {
        flags: 0,
        group: KVM_VCPU_TSC_CTRL,
        attr: KVM_VCPU_TSC_OFFSET as u64,
        addr: &offset as *const u64 as u64,
    };
    // SAFETY: KVM_HAS_DEVICE_ATTR reads the `kvm_device_attr` we pass and nothing else.
    let has = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_HAS_DEVICE_ATTR, &attr) } == 0;
    if has {
        // SAFETY: KVM_SET_DEVICE_ATTR reads `attr` and the u64 its `addr` points to,
        // which lives until the call returns.
        let set = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_SET_DEVICE_ATTR, &attr) };
        if set != 0 {
            tracing::debug!("KVM_VCPU_TSC_OFFSET: {}", std::io::Error::last_os_error());
        }
    }
    let same = matches_host(vcpu);
    if !same {
        tracing::warn!("guest TSC differs from the host's: the vDSO will use syscalls");
    }
    let _ = VERDICT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match v {
        DIFFERENT => None,
        _ => Some(if same { SAME } else { DIFFERENT }),
    });
}

/// Whether the vCPU's IA32_TSC falls between two host TSC reads (best of three tries,
/// as a preempted ioctl widens the bracket).
fn matches_host(vcpu: &VcpuFd) -> bool {
    for _ in 0..3 {
        let Ok(mut msrs) = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }]) else {
            return false;
        };
        let before = host_tsc();
        let read = vcpu.get_msrs(&mut msrs);
        let after = host_tsc();
        if !matches!(read, Ok(1)) {
            return false;
        }
        let guest = msrs.as_slice()[0].data;
        if before.saturating_sub(SLACK) <= guest && guest <= after.saturating_add(SLACK) {
            return true;
        }
    }
    false
}

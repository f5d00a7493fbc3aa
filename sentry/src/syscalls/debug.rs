//! Nanovisor-private syscalls: debug hooks for the operator's security tests.
//!
//! They live at numbers Linux will never use (from [`super::PRIVATE_BASE`]) and answer
//! ENOSYS, exactly as an unknown number does, unless the operator enabled them for the
//! whole sandbox (`Kernel::enable_debug_hooks`, which `runsc boot` calls when the
//! `runsc` it was started by had `NANOVISOR_DEBUG_HOOKS=1` in its environment). Nothing
//! a guest controls can enable them.
//!
//! `forbidden_host_syscall` makes the sentry itself perform one host syscall that the
//! sandbox process's seccomp policy (`runsc/src/confine/seccomp_policy.json`) does not
//! allow, to show that a sentry gone astray kills its own sandbox (SIGSYS) and nothing
//! else. The call is harmless if it does get through (`runsc do`, or
//! `NANOVISOR_SECCOMP=log`): `personality(0xffffffff)` only reads the persona.

use super::{SyscallDef, SyscallResult, PRIVATE_BASE};
use crate::kernel::task::Task;
use crate::syscall;

/// The number of the `forbidden_host_syscall` hook.
pub const NR_FORBIDDEN_HOST_SYSCALL: u32 = PRIVATE_BASE;

/// The host syscall the hook makes, by its name in seccomp policies.
pub const FORBIDDEN_HOST_SYSCALL: &str = "personality";

/// personality(2)'s "query only" argument.
const PERSONALITY_QUERY: libc::c_ulong = 0xffff_ffff;

pub const SYSCALLS: &[SyscallDef] = &[syscall!(
    NR_FORBIDDEN_HOST_SYSCALL,
    nanovisor_forbidden_host_syscall,
    Unsupported,
    "Nanovisor-private debug hook: ENOSYS unless the operator ran runsc with NANOVISOR_DEBUG_HOOKS=1; then the sentry calls host personality(0xffffffff), outside its seccomp policy, and the sandbox process dies of SIGSYS",
    sys_forbidden_host_syscall
)];

fn sys_forbidden_host_syscall(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    if !t.kernel.debug_hooks_enabled() {
        return super::unknown(t, NR_FORBIDDEN_HOST_SYSCALL.into());
    }
    tracing::warn!(
        pid = t.process.pid,
        "debug hook: the sentry makes host syscall {FORBIDDEN_HOST_SYSCALL}(0xffffffff), which its seccomp policy forbids"
    );
    // SAFETY: personality with 0xffffffff changes nothing and returns the current
    // persona; it touches no memory of ours.
    let persona = unsafe { libc::personality(PERSONALITY_QUERY) };
    // Reached only when no seccomp policy is in force (or it only logs).
    Ok(persona as u32 as u64)
}

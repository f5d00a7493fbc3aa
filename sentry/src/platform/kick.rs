//! Kicking a thread out of the guest: a signal to its host thread makes `KVM_RUN`
//! return (or, if it arrives just before `KVM_RUN`, makes the next one return at once
//! through `kvm_run.immediate_exit`), and interrupts any host syscall it is blocked in.
//!
//! The signal handler only sets a flag through a pointer the thread published for itself,
//! which is async-signal-safe.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Once;

/// The host signal used for kicks (a real-time signal nobody else in the sentry uses).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

thread_local! {
    /// The `immediate_exit` byte of the vCPU this thread runs, if any.
    static IMMEDIATE_EXIT: Cell<*const AtomicU8> = const { Cell::new(std::ptr::null()) };
}

extern "C" fn on_kick(_: libc::c_int) {
    let flag = IMMEDIATE_EXIT.with(|c| c.get());
    if !flag.is_null() {
        // SAFETY: the pointer was published by this thread for a kvm_run mapping that
        // outlives its use here (cleared before the mapping goes away).
        unsafe { (*flag).store(1, Ordering::SeqCst) };
    }
}

/// Install the kick handler once per process (without SA_RESTART, so blocked host calls
/// return EINTR).
pub fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is a valid
        // argument; the handler is async-signal-safe (one atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Publish (or clear, with null) the `immediate_exit` byte of the vCPU the calling thread
/// is about to run.
pub fn publish_immediate_exit(flag: *const AtomicU8) {
    IMMEDIATE_EXIT.with(|c| c.set(flag));
}

/// A handle to kick one host thread.
#[derive(Clone, Copy, Debug)]
pub struct Kicker(libc::pthread_t);

impl Kicker {
    /// A kicker for the calling thread.
    pub fn current() -> Kicker {
        // SAFETY: pthread_self has no preconditions.
        Kicker(unsafe { libc::pthread_self() })
    }

    /// Kick the thread. Harmless if it is not in the guest or has exited... as long as
    /// the caller knows the thread is still alive (pthread ids are reused).
    pub fn kick(&self) {
        // SAFETY: the handler is installed before any vCPU runs; the thread id is that of
        // a live thread (the caller holds its thread group's lock).
        unsafe { libc::pthread_kill(self.0, kick_signal()) };
    }
}

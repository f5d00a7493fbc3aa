//! The sentry: a user-space kernel that implements Linux's system-call interface for
//! programs running in ring 3 of a KVM guest with no guest OS.
//!
//! Dependency direction: `abi ← arch ← platform ← mm ← vfs ← kernel ← syscalls`.

pub mod abi;
pub mod arch;
pub mod kernel;
pub mod loader;
pub mod mm;
pub mod net;
pub mod platform;
pub mod sandbox;
pub mod syscalls;
pub mod vdso;
pub mod vfs;
pub mod waiter;

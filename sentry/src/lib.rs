//! The sentry: a user-space kernel that implements Linux's system-call interface for
//! programs running in ring 3 of a KVM guest with no guest OS.
//!
//! Dependency direction: `abi ← arch ← platform ← mm ← vfs ← kernel ← syscalls`.

pub mod abi;
pub mod arch;
pub mod platform;

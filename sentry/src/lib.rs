//! The sentry: a user-space kernel that implements Linux's system-call interface for
//! programs running in ring 3 of a KVM guest with no guest OS.
//!
//! Dependency direction: `abi ← arch ← platform ← mm ← vfs ← kernel ← syscalls`.

/// This sentry's version: a checkpoint image records the version that wrote it, and
/// only the same version restores it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod abi;
pub mod arch;
pub mod kernel;
pub mod loader;
pub mod mm;
pub mod net;
pub mod platform;
pub mod sandbox;
pub mod state;
pub mod steps;
pub mod syscalls;
pub mod vdso;
pub mod vfs;
pub mod waiter;

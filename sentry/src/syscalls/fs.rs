//! File-system syscalls (read, write, openat, stat, …). Filled in with the VFS.

use super::SyscallDef;

pub const SYSCALLS: &[SyscallDef] = &[];

//! The platform across a checkpoint: which guest frames are in use, the kernel half of
//! the page tables and each vCPU's area (see `KvmPlatformState`). Guest memory itself
//! goes to `memory.img`.

pub use crate::platform::kvm::KvmPlatformState as PlatformState;

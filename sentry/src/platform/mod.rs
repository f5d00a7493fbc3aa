//! How guest code runs and how its traps reach the sentry.
//!
//! A [`Platform`] makes address spaces and execution contexts. A [`Context`] runs a guest
//! thread's user registers in some [`AddressSpace`] until the thread traps: a syscall, a
//! CPU fault, or an interruption by the sentry. KVM is the first platform; a seccomp
//! ("systrap") platform for hosts without virtualization would be a second.

pub mod kick;
pub mod kvm;
pub mod memory;

use crate::arch::UserRegs;
use memory::{Gpa, MemoryError};

/// Access rights of a user page.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Perms {
    pub const NONE: Perms = Perms {
        read: false,
        write: false,
        exec: false,
    };
    pub const R: Perms = Perms {
        read: true,
        write: false,
        exec: false,
    };
    pub const RW: Perms = Perms {
        read: true,
        write: true,
        exec: false,
    };
    pub const RX: Perms = Perms {
        read: true,
        write: false,
        exec: true,
    };
    pub const RWX: Perms = Perms {
        read: true,
        write: true,
        exec: true,
    };

    /// From mmap/mprotect `PROT_*` bits.
    pub fn from_prot(prot: u64) -> Perms {
        Perms {
            read: prot & 1 != 0,
            write: prot & 2 != 0,
            exec: prot & 4 != 0,
        }
    }

    /// Whether `self` allows at least everything `other` allows.
    pub fn covers(self, other: Perms) -> bool {
        (self.read || !other.read) && (self.write || !other.write) && (self.exec || !other.exec)
    }

    /// Whether nothing is allowed (PROT_NONE).
    pub fn is_none(self) -> bool {
        !self.read && !self.write && !self.exec
    }
}

/// What the CPU reported when a guest instruction faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The exception vector (14 = page fault, 13 = general protection, …).
    pub vector: u8,
    /// The error code the CPU pushed, or 0 for vectors without one.
    pub error_code: u64,
    /// For page faults, the faulting address (CR2); otherwise 0.
    pub address: u64,
}

impl Fault {
    pub const DIVIDE: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const BREAKPOINT: u8 = 3;
    pub const OVERFLOW: u8 = 4;
    pub const BOUND: u8 = 5;
    pub const INVALID_OPCODE: u8 = 6;
    pub const DEVICE_NOT_AVAILABLE: u8 = 7;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const PAGE_FAULT: u8 = 14;
    pub const X87: u8 = 16;
    pub const ALIGNMENT_CHECK: u8 = 17;
    pub const SIMD: u8 = 19;

    /// Page-fault error code: the page was present (a protection violation).
    pub fn pf_present(&self) -> bool {
        self.error_code & 1 != 0
    }
    /// Page-fault error code: the access was a write.
    pub fn pf_write(&self) -> bool {
        self.error_code & 2 != 0
    }
    /// Page-fault error code: the access was an instruction fetch.
    pub fn pf_exec(&self) -> bool {
        self.error_code & 0x10 != 0
    }
}

/// Why a guest thread stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// The thread executed `syscall`; `regs.rax` holds the number and `regs.rip` points
    /// after the instruction.
    Syscall,
    /// The thread faulted; `regs.rip` points at the faulting instruction.
    Fault(Fault),
    /// The sentry asked the thread to stop (a signal is pending, or it is being killed).
    Interrupted,
}

/// Host-side failures of the platform. None of them is caused by a well-formed request;
/// a guest can only reach them by crashing its own sandbox.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("opening /dev/kvm: {0} (is KVM available and are we allowed to use it?)")]
    OpenKvm(std::io::Error),
    #[error("KVM: {what}")]
    Kvm {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("KVM lacks a required capability: {0}")]
    MissingCapability(&'static str),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("the vCPU stopped unexpectedly: {0}")]
    UnexpectedExit(String),
    #[error("the ring-0 stub faulted (vector {vector}, rip {rip:#x}, error code {error_code:#x})")]
    KernelFault {
        vector: u8,
        rip: u64,
        error_code: u64,
    },
    #[error("an address space from another platform was passed to a KVM vCPU")]
    ForeignAddressSpace,
    #[error("too many vCPUs (limit {0})")]
    TooManyContexts(usize),
    /// A checkpoint's platform state does not fit this host or is inconsistent.
    #[error("the checkpoint does not fit this platform: {0}")]
    Incompatible(String),
}

impl PlatformError {
    pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> PlatformError {
        move |e| PlatformError::Kvm {
            what,
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    }
}

/// A guest address space: the user half of a set of page tables.
///
/// The memory manager decides what is mapped; the address space only records it in the
/// form the hardware reads. Frames are owned by the caller: `unmap` hands them back.
pub trait AddressSpace: Send + Sync + std::any::Any {
    /// For a context to reach its platform's own address-space type.
    fn as_any(&self) -> &dyn std::any::Any;

    /// Map the page at `addr` to `frame` with `perms`, replacing what was there.
    /// Returns the frame previously mapped there, if any.
    fn map(&self, addr: u64, frame: Gpa, perms: Perms) -> Result<Option<Gpa>, PlatformError>;

    /// Unmap every page in `[start, end)`, calling `released(addr, frame)` for each frame
    /// that was mapped.
    fn unmap(&self, start: u64, end: u64, released: &mut dyn FnMut(u64, Gpa));

    /// Give back frames a caller unmapped: they are freed once no vCPU can still reach
    /// them through a translation it cached before the unmap.
    fn free_after_flush(&self, frames: Vec<Gpa>);

    /// Change the rights of every mapped page in `[start, end)`.
    fn protect(&self, start: u64, end: u64, perms: Perms);

    /// The frame and rights of the page at `addr`, if mapped.
    fn translate(&self, addr: u64) -> Option<(Gpa, Perms)>;

    /// For a checkpoint: the root of the tables (the rest is in guest memory), and the
    /// frames unmapped but not freed yet for fear of a vCPU's cached translation (free in
    /// a restored VM, whose vCPUs never saw them).
    fn checkpoint(&self) -> (Gpa, Vec<Gpa>);

    /// Visit every page in `[start, end)` that holds a frame (PROT_NONE pages included,
    /// with empty rights), in address order.
    fn for_each_page(&self, start: u64, end: u64, visit: &mut dyn FnMut(u64, Gpa, Perms));

    /// Pages holding a frame now, and the most that ever did (since it was made or
    /// restored): RSS and its high-water mark.
    fn resident_pages(&self) -> (u64, u64);
}

/// A guest thread's execution context (on KVM: one vCPU).
pub trait Context: Send {
    /// Make kicks of the calling thread (`kick::Kicker`) reach this context: from now on
    /// until the thread publishes another target, a kick that comes while the thread is
    /// not in the guest makes its next `switch` return `Trap::Interrupted` at once rather
    /// than run guest code until the next trap. Call it on the thread that will run the
    /// context, before it first checks for work a kick announces.
    fn arm_kicks(&mut self);

    /// Run `regs` in ring 3 of `space` until the thread traps; `regs` is updated with the
    /// thread's state at the trap. `space` must come from the same platform.
    fn switch(
        &mut self,
        space: &dyn AddressSpace,
        regs: &mut UserRegs,
    ) -> Result<Trap, PlatformError>;

    /// The thread's FPU/SSE/AVX state as a standard (non-compacted) XSAVE image of
    /// `fpu_size()` bytes, as Linux stores it in a signal frame.
    fn fpu_state(&mut self) -> Result<Vec<u8>, PlatformError>;

    /// Load an XSAVE image. The caller has validated it (`arch::fpu::validate`); the
    /// platform may still refuse it.
    fn set_fpu_state(&mut self, image: &[u8]) -> Result<(), PlatformError>;

    /// Size of the XSAVE image for the features enabled in this context.
    fn fpu_size(&self) -> usize;

    /// The XSAVE features enabled in this context (XCR0).
    fn fpu_features(&self) -> u64;
}

/// A way to run guest code.
pub trait Platform: Send + Sync {
    type Context: Context;

    /// The guest physical memory every address space of this platform draws frames from.
    fn memory(&self) -> &std::sync::Arc<memory::GuestMemory>;

    /// A new, empty user address space.
    fn new_address_space(&self) -> Result<std::sync::Arc<dyn AddressSpace>, PlatformError>;

    /// An address space whose tables are in guest memory already, rooted at `root` (a
    /// restored checkpoint's).
    fn restore_address_space(
        &self,
        root: Gpa,
    ) -> Result<std::sync::Arc<dyn AddressSpace>, PlatformError>;

    /// A new execution context for one guest thread.
    fn new_context(&self) -> Result<Self::Context, PlatformError>;
}

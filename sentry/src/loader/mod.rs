//! Loading a program into a fresh address space: ELF segments, the initial stack with
//! argv/envp/auxv, and the registers the program starts with.

mod elf;
pub mod script;
mod stack;

pub use elf::{restored_image, ElfInfo, LoadError, Opener};

use std::sync::Arc;

use crate::arch::UserRegs;
use crate::mm::MemoryManager;
use crate::vfs::FileDescription;

/// What the new program is given.
pub struct ExecArgs<'a> {
    /// The path as the guest named it (AT_EXECFN, /proc/self/exe).
    pub path: &'a [u8],
    pub argv: &'a [Vec<u8>],
    pub envp: &'a [Vec<u8>],
    pub uid: u32,
    pub gid: u32,
}

/// Load `file` into `mm` (which must be empty) and return the starting registers.
/// A dynamic program's interpreter (PT_INTERP) is opened with `open`, which resolves
/// the path as execve would (same root, same working directory, exec permission).
pub fn load(
    mm: &MemoryManager,
    file: Arc<dyn FileDescription>,
    open: Opener<'_>,
    args: &ExecArgs<'_>,
) -> Result<UserRegs, LoadError> {
    let info = elf::load_elf(mm, file, open)?;
    // Linux maps the vDSO after the program and its interpreter, before the stack.
    let vdso = crate::vdso::map(mm).map_err(LoadError::Vdso)?;
    let sp = stack::build(mm, &info, args, vdso)?;
    Ok(UserRegs {
        rip: info.start,
        rsp: sp,
        rflags: 0x202,
        ..Default::default()
    })
}

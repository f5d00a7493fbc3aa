//! Memory syscalls: decoding arguments for the memory manager.

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::mm::syscalls_api::{MmapRequest, MAP_ANONYMOUS};
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(
        9,
        mmap,
        Partial,
        "MAP_SHARED file mappings are private copies (no write-back); MAP_HUGETLB → ENOMEM; heuristic overcommit: one accounted mapping larger than guest memory → ENOMEM (mprotect and mremap do not check)",
        sys_mmap
    ),
    syscall!(10, mprotect, Full, "", sys_mprotect),
    syscall!(11, munmap, Full, "", sys_munmap),
    syscall!(
        12,
        brk,
        Full,
        "growth by more than guest memory at once is refused, as Linux's heuristic overcommit does",
        sys_brk
    ),
    syscall!(
        25,
        mremap,
        Partial,
        "moves page-table entries, never copies; old_len 0 (duplicating a shared mapping) → EINVAL",
        sys_mremap
    ),
    syscall!(
        26,
        msync,
        Partial,
        "validates flags and range; no write-back: MAP_SHARED file mappings are private copies",
        sys_msync
    ),
    syscall!(
        27,
        mincore,
        Partial,
        "reports pages populated in this address space (Linux: page-cache residency for files)",
        sys_mincore
    ),
    syscall!(
        28,
        madvise,
        Partial,
        "DONTNEED/FREE drop pages; other known advice is accepted and ignored; unknown → EINVAL",
        sys_madvise
    ),
];

fn sys_mmap(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = a[3];
    let file = if flags & MAP_ANONYMOUS != 0 {
        None
    } else {
        let f = task.files.get(a[4] as i32)?;
        let access = f.status_flags() & 3; // O_ACCMODE
                                           // Linux: a file opened without read access cannot be mapped, and a shared
                                           // writable mapping needs a file opened for writing (EACCES).
        let shared = flags & crate::mm::syscalls_api::MAP_SHARED_VALIDATE
            != crate::mm::syscalls_api::MAP_PRIVATE;
        if access == 1 || (shared && a[2] & crate::mm::syscalls_api::PROT_WRITE != 0 && access != 2)
        {
            return Err(Errno::EACCES);
        }
        let m = f.mappable().ok_or(Errno::ENODEV)?;
        Some((m, a[5]))
    };
    task.mm.mmap(MmapRequest {
        addr: a[0],
        len: a[1],
        prot: a[2],
        flags,
        file,
    })
}

fn sys_mprotect(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.mprotect(a[0], a[1], a[2]).map(|_| 0)
}

fn sys_munmap(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.munmap(a[0], a[1]).map(|_| 0)
}

fn sys_brk(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    Ok(task.mm.brk(a[0]))
}

fn sys_madvise(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.madvise(a[0], a[1], a[2]).map(|_| 0)
}

fn sys_mremap(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.mremap(a[0], a[1], a[2], a[3], a[4])
}

fn sys_msync(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.msync(a[0], a[1], a[2]).map(|_| 0)
}

fn sys_mincore(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.mincore(a[0], a[1], a[2]).map(|_| 0)
}

//! Memory syscalls: decoding arguments for the memory manager.

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::mm::lock::{MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT};
use crate::mm::syscalls_api::{MmapRequest, MAP_ANONYMOUS};
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(
        9,
        mmap,
        Partial,
        "MAP_SHARED file mappings share their pages with every other mapping and with read/write in the sandbox; a writable bind's file gets the bytes stored through a mapping at msync, fsync, munmap and when its last mapping goes (host processes see them then), and such a mapping is refused by a checkpoint; MAP_HUGETLB → ENOMEM; heuristic overcommit: one accounted mapping larger than guest memory → ENOMEM (mprotect and mremap do not check)",
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
        "writes back to writable binds' files what shared mappings stored (overlay and tmpfs files need none: their mappings are their pages)",
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
    syscall!(149, mlock, Partial, LOCK_NOTE, sys_mlock),
    syscall!(150, munlock, Partial, LOCK_NOTE, sys_munlock),
    syscall!(151, mlockall, Partial, LOCK_NOTE, sys_mlockall),
    syscall!(152, munlockall, Partial, LOCK_NOTE, sys_munlockall),
    syscall!(325, mlock2, Partial, LOCK_NOTE, sys_mlock2),
];

const LOCK_NOTE: &str = "the sentry never pages guest memory out; the range is checked and populated (not with MLOCK_ONFAULT/MCL_ONFAULT), RLIMIT_MEMLOCK bounds one request of a non-root caller, and nothing is counted in VmLck";

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

const RLIMIT_MEMLOCK: usize = 8;

/// RLIMIT_MEMLOCK, for a caller without CAP_IPC_LOCK (root has it).
fn check_lock_limit(task: &Task, len: u64) -> Result<(), Errno> {
    if task.creds.euid == 0 {
        return Ok(());
    }
    let limit = task.rlimits.0[RLIMIT_MEMLOCK].0;
    if limit == 0 {
        return Err(Errno::EPERM);
    }
    if len > limit {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}

fn sys_mlock(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    check_lock_limit(task, a[1])?;
    task.mm.mlock(a[0], a[1], true).map(|_| 0)
}

fn sys_mlock2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[2] & !MLOCK_ONFAULT != 0 {
        return Err(Errno::EINVAL);
    }
    check_lock_limit(task, a[1])?;
    task.mm
        .mlock(a[0], a[1], a[2] & MLOCK_ONFAULT == 0)
        .map(|_| 0)
}

fn sys_munlock(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    task.mm.mlock(a[0], a[1], false).map(|_| 0)
}

fn sys_mlockall(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = a[0];
    if flags == 0 || flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || flags == MCL_ONFAULT
    {
        return Err(Errno::EINVAL);
    }
    if task.creds.euid != 0 && task.rlimits.0[RLIMIT_MEMLOCK].0 == 0 {
        return Err(Errno::EPERM);
    }
    if flags & MCL_CURRENT != 0 && flags & MCL_ONFAULT == 0 {
        task.mm.mlock_all();
    }
    Ok(0)
}

fn sys_munlockall(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(0)
}

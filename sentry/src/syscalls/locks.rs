//! fcntl's record locks and flock(2), decoded for the sandbox's lock tables
//! (`vfs::locks`), and the releases a close implies.

use std::sync::Arc;

use super::SyscallResult;
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::vfs::locks::{LockKind, LockTable, Owner};
use crate::vfs::FileDescription;

const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;
const F_GETLK: u64 = 5;
const F_SETLKW: u64 = 7;
const F_OFD_GETLK: u64 = 36;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;
const SEEK_SET: i16 = 0;
const SEEK_CUR: i16 = 1;
const SEEK_END: i16 = 2;

const LOCK_SH: u64 = 1;
const LOCK_EX: u64 = 2;
const LOCK_NB: u64 = 4;
const LOCK_UN: u64 = 8;

/// sizeof(struct flock): l_type, l_whence, (pad), l_start, l_len, l_pid.
const FLOCK_SIZE: usize = 32;

fn key_of(f: &Arc<dyn FileDescription>) -> Result<(u64, u64), Errno> {
    let st = f.stat()?;
    Ok((st.dev, st.ino))
}

/// The byte range `[start, end)` a struct flock names (`end` u64::MAX: to the end).
fn range(
    f: &Arc<dyn FileDescription>,
    whence: i16,
    start: i64,
    len: i64,
) -> Result<(u64, u64), Errno> {
    let base: i64 = match whence {
        SEEK_SET => 0,
        SEEK_CUR => f.seek(0, SEEK_CUR as u32)? as i64,
        SEEK_END => f.stat()?.size,
        _ => return Err(Errno::EINVAL),
    };
    let start = base.checked_add(start).ok_or(Errno::EOVERFLOW)?;
    let (start, end) = match len {
        0 => (start, None),
        l if l > 0 => (start, Some(start.checked_add(l).ok_or(Errno::EOVERFLOW)?)),
        l => (start.checked_add(l).ok_or(Errno::EOVERFLOW)?, Some(start)),
    };
    if start < 0 {
        return Err(Errno::EINVAL);
    }
    Ok((start as u64, end.map_or(u64::MAX, |e| e as u64)))
}

/// F_GETLK/F_SETLK/F_SETLKW and their OFD forms on `f`, with the struct flock at `arg`.
pub(super) fn fcntl_lock(
    t: &Task,
    f: &Arc<dyn FileDescription>,
    cmd: u64,
    arg: u64,
) -> SyscallResult {
    let mut b = [0u8; FLOCK_SIZE];
    t.mm.copy_in(arg, &mut b)?;
    let typ = i16::from_le_bytes([b[0], b[1]]);
    let whence = i16::from_le_bytes([b[2], b[3]]);
    let start = i64::from_le_bytes(b[8..16].try_into().map_err(|_| Errno::EFAULT)?);
    let len = i64::from_le_bytes(b[16..24].try_into().map_err(|_| Errno::EFAULT)?);
    let pid = i32::from_le_bytes(b[24..28].try_into().map_err(|_| Errno::EFAULT)?);
    let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
    if ofd && pid != 0 {
        return Err(Errno::EINVAL);
    }
    let kind = match typ {
        F_RDLCK => Some(LockKind::Read),
        F_WRLCK => Some(LockKind::Write),
        F_UNLCK => None,
        _ => return Err(Errno::EINVAL),
    };
    let (from, to) = range(f, whence, start, len)?;
    let owner = if ofd {
        Owner::file(f)
    } else {
        Owner::Process(t.group.tgid)
    };
    let key = key_of(f)?;
    let table = &t.kernel.locks.records;
    if matches!(cmd, F_GETLK | F_OFD_GETLK) {
        let kind = kind.ok_or(Errno::EINVAL)?;
        match table.test(key, &owner, kind, from, to) {
            None => b[..2].copy_from_slice(&F_UNLCK.to_le_bytes()),
            Some(c) => {
                let typ = if c.kind == LockKind::Read {
                    F_RDLCK
                } else {
                    F_WRLCK
                };
                b[..2].copy_from_slice(&typ.to_le_bytes());
                b[2..4].copy_from_slice(&SEEK_SET.to_le_bytes());
                b[8..16].copy_from_slice(&(c.start as i64).to_le_bytes());
                let len = c.end.map_or(0, |e| (e - c.start) as i64);
                b[16..24].copy_from_slice(&len.to_le_bytes());
                b[24..28].copy_from_slice(&c.pid.to_le_bytes());
            }
        }
        return t.mm.copy_out(arg, &b).map(|_| 0);
    }
    // A lock needs the access it claims: reading for a read lock, writing for a write lock.
    let access = f.status_flags() & libc::O_ACCMODE as u32;
    match kind {
        Some(LockKind::Read) if access == libc::O_WRONLY as u32 => return Err(Errno::EBADF),
        Some(LockKind::Write) if access == libc::O_RDONLY as u32 => return Err(Errno::EBADF),
        _ => {}
    }
    match kind {
        Some(kind) if matches!(cmd, F_SETLKW | F_OFD_SETLKW) => {
            table.set_wait(key, &owner, kind, from, to, &t.waiter)
        }
        _ => table.set(key, &owner, kind, from, to),
    }
    .map(|_| 0)
}

/// flock(2): whole-file locks owned by the open file description.
pub(super) fn flock(t: &Task, f: &Arc<dyn FileDescription>, op: u64) -> SyscallResult {
    let kind = match op & !LOCK_NB {
        LOCK_SH => Some(LockKind::Read),
        LOCK_EX => Some(LockKind::Write),
        LOCK_UN => None,
        _ => return Err(Errno::EINVAL),
    };
    let key = key_of(f)?;
    let owner = Owner::file(f);
    let table = &t.kernel.locks.flocks;
    match kind {
        Some(kind) if op & LOCK_NB == 0 => {
            table.set_wait(key, &owner, kind, 0, u64::MAX, &t.waiter)
        }
        // EWOULDBLOCK is EAGAIN.
        _ => table.set(key, &owner, kind, 0, u64::MAX),
    }
    .map(|_| 0)
}

/// The process closed a descriptor of `f`: its POSIX record locks on the file go (all of
/// them, whichever descriptor took them, as POSIX says), and waiters look again in case
/// that was the last reference to a description holding OFD or flock locks.
pub(super) fn closed(t: &Task, f: Arc<dyn FileDescription>) {
    let locks = &t.kernel.locks;
    if locks.records.is_empty() && locks.flocks.is_empty() {
        return;
    }
    if let Ok(key) = key_of(&f) {
        locks
            .records
            .release_file(key, &Owner::Process(t.group.tgid));
    }
    drop(f);
    wake(&locks.records);
    wake(&locks.flocks);
}

fn wake(table: &LockTable) {
    if !table.is_empty() {
        table.poke();
    }
}

//! File-system syscalls on the namespace: directories, renames, links, permissions,
//! times and ownership. Shares argument helpers with `fs.rs`.

use super::fs::*;
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;
use crate::vfs::{self, Found, Node, TimeSpec};

const MKNOD_NOTE: &str = "regular files and FIFOs in the overlay and tmpfs mounts; in writable binds, and device nodes and sockets anywhere (no CAP_MKNOD) → EPERM; an open FIFO is refused by a checkpoint";

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(21, access, Full, "", sys_access),
    syscall!(78, getdents, Full, "", sys_getdents),
    syscall!(79, getcwd, Full, "", sys_getcwd),
    syscall!(80, chdir, Full, "", sys_chdir),
    syscall!(81, fchdir, Full, "", sys_fchdir),
    syscall!(82, rename, Full, "", sys_rename),
    syscall!(83, mkdir, Full, "", sys_mkdir),
    syscall!(84, rmdir, Full, "", sys_rmdir),
    syscall!(86, link, Full, "", sys_link),
    syscall!(87, unlink, Full, "", sys_unlink),
    syscall!(88, symlink, Full, "", sys_symlink),
    syscall!(89, readlink, Full, "", sys_readlink),
    syscall!(90, chmod, Full, "", sys_chmod),
    syscall!(91, fchmod, Full, "", sys_fchmod),
    syscall!(92, chown, Full, "", sys_chown),
    syscall!(93, fchown, Full, "", sys_fchown),
    syscall!(94, lchown, Full, "", sys_lchown),
    syscall!(95, umask, Full, "", sys_umask),
    syscall!(217, getdents64, Full, "", sys_getdents64),
    syscall!(258, mkdirat, Full, "", sys_mkdirat),
    syscall!(133, mknod, Partial, MKNOD_NOTE, sys_mknod),
    syscall!(259, mknodat, Partial, MKNOD_NOTE, sys_mknodat),
    syscall!(260, fchownat, Full, "", sys_fchownat),
    syscall!(263, unlinkat, Full, "", sys_unlinkat),
    syscall!(264, renameat, Full, "", sys_renameat),
    syscall!(265, linkat, Full, "", sys_linkat),
    syscall!(266, symlinkat, Full, "", sys_symlinkat),
    syscall!(267, readlinkat, Full, "", sys_readlinkat),
    syscall!(268, fchmodat, Full, "", sys_fchmodat),
    syscall!(269, faccessat, Full, "", sys_faccessat),
    syscall!(280, utimensat, Full, "", sys_utimensat),
    syscall!(132, utime, Full, "", sys_utime),
    syscall!(235, utimes, Full, "", sys_utimes),
    syscall!(261, futimesat, Full, "", sys_futimesat),
    syscall!(
        316,
        renameat2,
        Partial,
        "RENAME_WHITEOUT → EINVAL",
        sys_renameat2
    ),
    syscall!(439, faccessat2, Full, "", sys_faccessat2),
];

// ---- directories ----

fn do_getdents(t: &Task, fd: i32, addr: u64, count: u64, old_format: bool) -> SyscallResult {
    let f = t.files.get(fd)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    let cap = (count as usize).min(MAX_IO);
    let mut out: Vec<u8> = Vec::new();
    let mut too_small = false;
    f.readdir(&mut |e, next| {
        let (head, tail) = if old_format { (18, 2) } else { (19, 1) };
        let reclen = (head + e.name.len() + tail + 7) & !7;
        if out.len() + reclen > cap {
            too_small = out.is_empty();
            return false;
        }
        let start = out.len();
        out.resize(start + reclen, 0);
        let r = &mut out[start..];
        r[..8].copy_from_slice(&e.ino.to_le_bytes());
        r[8..16].copy_from_slice(&next.to_le_bytes());
        r[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
        if old_format {
            r[18..18 + e.name.len()].copy_from_slice(&e.name);
            r[reclen - 1] = e.kind;
        } else {
            r[18] = e.kind;
            r[19..19 + e.name.len()].copy_from_slice(&e.name);
        }
        true
    })?;
    if too_small {
        return Err(Errno::EINVAL);
    }
    t.mm.copy_out(addr, &out)?;
    Ok(out.len() as u64)
}

fn sys_getdents64(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_getdents(t, a[0] as i32, a[1], a[2], false)
}

fn sys_getdents(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_getdents(t, a[0] as i32, a[1], a[2], true)
}

fn sys_getcwd(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let mut p = t.fs.cwd.clone();
    p.push(0);
    if (a[1] as usize) < p.len() {
        return Err(Errno::ERANGE);
    }
    t.mm.copy_out(a[0], &p)?;
    Ok(p.len() as u64)
}

fn sys_chdir(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    let base = base_dir(t, AT_FDCWD, &p)?;
    let vfs = t.fs.vfs.clone();
    let (uid, gid) = (t.creds.euid, t.creds.egid);
    let cwd = with_lookup(t, &base, |lk| -> Result<Vec<u8>, Errno> {
        let r = vfs.resolve(lk, &p, true)?;
        match &r.found {
            Found::Node(n) if n.is_dir() => {
                if !vfs::permits(&n.stat(), uid, gid, 1) {
                    return Err(Errno::EACCES);
                }
                Ok(r.path())
            }
            Found::Node(_) | Found::Magic(_) => Err(Errno::ENOTDIR),
            Found::Missing => Err(Errno::ENOENT),
        }
    })?;
    t.fs.cwd = cwd;
    crate::kernel::process::publish_view(t);
    Ok(0)
}

fn sys_fchdir(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    match f.vfs_node() {
        Some(n) if n.is_dir() => {
            t.fs.cwd = f.path().into_bytes();
            crate::kernel::process::publish_view(t);
            Ok(0)
        }
        _ => Err(Errno::ENOTDIR),
    }
}

fn do_mkdirat(t: &Task, dirfd: i32, addr: u64, mode: u32) -> SyscallResult {
    let p = path_arg(t, addr)?;
    let base = base_dir(t, dirfd, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| vfs.mkdir(lk, &p, mode)).map(|_| 0)
}

/// mknod/mknodat: regular files and FIFOs; device nodes need CAP_MKNOD, which the
/// guest does not get.
fn do_mknodat(t: &Task, dirfd: i32, addr: u64, mode: u32) -> SyscallResult {
    let typ = match mode & libc::S_IFMT {
        0 | libc::S_IFREG => libc::S_IFREG,
        libc::S_IFIFO => libc::S_IFIFO,
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFSOCK | libc::S_IFDIR => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    let p = path_arg(t, addr)?;
    let base = base_dir(t, dirfd, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| vfs.mknod(lk, &p, typ, mode)).map(|_| 0)
}

fn sys_mknod(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_mknodat(t, AT_FDCWD, a[0], a[1] as u32)
}

fn sys_mknodat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_mknodat(t, a[0] as i32, a[1], a[2] as u32)
}

fn sys_mkdir(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_mkdirat(t, AT_FDCWD, a[0], a[1] as u32)
}

fn sys_mkdirat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_mkdirat(t, a[0] as i32, a[1], a[2] as u32)
}

fn do_unlinkat(t: &Task, dirfd: i32, addr: u64, flags: u64) -> SyscallResult {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let p = path_arg(t, addr)?;
    let base = base_dir(t, dirfd, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| {
        if flags & AT_REMOVEDIR != 0 {
            vfs.rmdir(lk, &p)
        } else {
            vfs.unlink(lk, &p)
        }
    })
    .map(|_| 0)
}

fn sys_unlink(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_unlinkat(t, AT_FDCWD, a[0], 0)
}

fn sys_rmdir(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_unlinkat(t, AT_FDCWD, a[0], AT_REMOVEDIR)
}

fn sys_unlinkat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_unlinkat(t, a[0] as i32, a[1], a[2])
}

fn do_renameat2(
    t: &Task,
    olddirfd: i32,
    old: u64,
    newdirfd: i32,
    new: u64,
    flags: u32,
) -> SyscallResult {
    let op = path_arg(t, old)?;
    let np = path_arg(t, new)?;
    let ob = base_dir(t, olddirfd, &op)?;
    let nb = base_dir(t, newdirfd, &np)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &ob, |lo| {
        with_lookup(t, &nb, |ln| vfs.rename(lo, &op, ln, &np, flags))
    })
    .map(|_| 0)
}

fn sys_rename(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_renameat2(t, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)
}

fn sys_renameat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_renameat2(t, a[0] as i32, a[1], a[2] as i32, a[3], 0)
}

fn sys_renameat2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_renameat2(t, a[0] as i32, a[1], a[2] as i32, a[3], a[4] as u32)
}

fn do_linkat(
    t: &Task,
    olddirfd: i32,
    old: u64,
    newdirfd: i32,
    new: u64,
    flags: u64,
) -> SyscallResult {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let op = path_arg(t, old)?;
    let np = path_arg(t, new)?;
    let nb = base_dir(t, newdirfd, &np)?;
    let vfs = t.fs.vfs.clone();
    if op.is_empty() && flags & AT_EMPTY_PATH != 0 {
        let f = t.files.get(olddirfd)?;
        return match f.vfs_node() {
            Some(Node::Tmp(inode)) => {
                with_lookup(t, &nb, |ln| vfs.link_inode(ln, &np, inode)).map(|_| 0)
            }
            Some(n) if n.is_dir() => Err(Errno::EPERM),
            Some(_) => {
                let fp = f.path().into_bytes();
                with_lookup(t, b"/", |lo| {
                    with_lookup(t, &nb, |ln| vfs.link(lo, &fp, false, ln, &np))
                })
                .map(|_| 0)
            }
            None => Err(Errno::ENOENT),
        };
    }
    let ob = base_dir(t, olddirfd, &op)?;
    let follow = flags & AT_SYMLINK_FOLLOW != 0;
    with_lookup(t, &ob, |lo| {
        with_lookup(t, &nb, |ln| vfs.link(lo, &op, follow, ln, &np))
    })
    .map(|_| 0)
}

fn sys_link(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_linkat(t, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)
}

fn sys_linkat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_linkat(t, a[0] as i32, a[1], a[2] as i32, a[3], a[4])
}

fn do_symlinkat(t: &Task, target: u64, dirfd: i32, linkpath: u64) -> SyscallResult {
    let target = path_arg(t, target)?;
    let p = path_arg(t, linkpath)?;
    let base = base_dir(t, dirfd, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| vfs.symlink(lk, &target, &p)).map(|_| 0)
}

fn sys_symlink(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_symlinkat(t, a[0], AT_FDCWD, a[1])
}

fn sys_symlinkat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_symlinkat(t, a[0], a[1] as i32, a[2])
}

fn do_readlinkat(t: &Task, dirfd: i32, addr: u64, buf: u64, size: u64) -> SyscallResult {
    let p = path_arg(t, addr)?;
    if (size as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    let target = if p.is_empty() {
        // Linux: an empty path reads the link an O_PATH dirfd refers to.
        let f = t.files.get(dirfd)?;
        match f.vfs_node() {
            Some(n) => n.readlink().ok_or(Errno::ENOENT)?,
            None => return Err(Errno::ENOENT),
        }
    } else {
        let base = base_dir(t, dirfd, &p)?;
        let vfs = t.fs.vfs.clone();
        with_lookup(t, &base, |lk| vfs.readlink(lk, &p))?
    };
    let n = target.len().min(size as i32 as usize);
    t.mm.copy_out(buf, &target[..n])?;
    Ok(n as u64)
}

fn sys_readlink(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_readlinkat(t, AT_FDCWD, a[0], a[1], a[2])
}

fn sys_readlinkat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_readlinkat(t, a[0] as i32, a[1], a[2], a[3])
}

// ---- permissions and times ----

fn do_fchmodat(t: &Task, dirfd: i32, addr: u64, mode: u32, flags: u64) -> SyscallResult {
    let p = path_arg(t, addr)?;
    let base = base_dir(t, dirfd, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| {
        vfs.chmod(lk, &p, mode, flags & AT_SYMLINK_NOFOLLOW == 0)
    })
    .map(|_| 0)
}

fn sys_chmod(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_fchmodat(t, AT_FDCWD, a[0], a[1] as u32, 0)
}

fn sys_fchmodat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_fchmodat(t, a[0] as i32, a[1], a[2] as u32, 0)
}

fn sys_fchmod(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    match f.vfs_node() {
        Some(Node::Tmp(inode)) => {
            vfs::chmod_inode(&inode, a[1] as u32);
            t.fs.vfs.raise_on_file(&*f, vfs::inotify::IN_ATTRIB);
            Ok(0)
        }
        Some(Node::Host(_)) => {
            let fp = f.path().into_bytes();
            let vfs = t.fs.vfs.clone();
            with_lookup(t, b"/", |lk| vfs.chmod(lk, &fp, a[1] as u32, false)).map(|_| 0)
        }
        // Devices, /proc files, pipes and stdio: accepted, nothing to keep.
        _ => Ok(0),
    }
}

fn sys_umask(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let old = t.fs.umask;
    t.fs.umask = (a[0] as u32) & 0o777;
    Ok(old as u64)
}

fn do_faccessat(t: &Task, dirfd: i32, addr: u64, mode: u32, flags: u64) -> SyscallResult {
    if flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = path_arg(t, addr)?;
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let (uid, gid) = if flags & AT_EACCESS != 0 {
        (t.creds.euid, t.creds.egid)
    } else {
        (t.creds.uid, t.creds.gid)
    };
    let st = stat_at(t, dirfd, &p, flags)?;
    if mode == 0 || vfs::permits(&st, uid, gid, mode) {
        Ok(0)
    } else {
        Err(Errno::EACCES)
    }
}

fn sys_access(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_faccessat(t, AT_FDCWD, a[0], a[1] as u32, 0)
}

fn sys_faccessat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_faccessat(t, a[0] as i32, a[1], a[2] as u32, 0)
}

fn sys_faccessat2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_faccessat(t, a[0] as i32, a[1], a[2] as u32, a[3])
}

const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

fn sys_utimensat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (dirfd, path, times_addr, flags) = (a[0] as i32, a[1], a[2], a[3]);
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let times = if times_addr == 0 {
        [TimeSpec::Now, TimeSpec::Now]
    } else {
        let mut b = [0u8; 32];
        t.mm.copy_in(times_addr, &mut b)?;
        let mut out = [TimeSpec::Omit; 2];
        for (i, c) in b.chunks_exact(16).enumerate() {
            let sec = i64::from_le_bytes(c[..8].try_into().map_err(|_| Errno::EFAULT)?);
            let nsec = i64::from_le_bytes(c[8..].try_into().map_err(|_| Errno::EFAULT)?);
            out[i] = match nsec {
                UTIME_NOW => TimeSpec::Now,
                UTIME_OMIT => TimeSpec::Omit,
                n if (0..1_000_000_000).contains(&n) => TimeSpec::At(sec, n),
                _ => return Err(Errno::EINVAL),
            };
        }
        out
    };
    set_times(t, dirfd, path, times, flags)
}

/// utimes/futimesat: two `struct timeval`s (access, modification), or NULL for now.
fn read_timevals(t: &Task, addr: u64) -> Result<[TimeSpec; 2], Errno> {
    if addr == 0 {
        return Ok([TimeSpec::Now, TimeSpec::Now]);
    }
    let mut b = [0u8; 32];
    t.mm.copy_in(addr, &mut b)?;
    let mut out = [TimeSpec::Omit; 2];
    for (i, c) in b.chunks_exact(16).enumerate() {
        let sec = i64::from_le_bytes(c[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let usec = i64::from_le_bytes(c[8..].try_into().map_err(|_| Errno::EFAULT)?);
        if !(0..1_000_000).contains(&usec) {
            return Err(Errno::EINVAL);
        }
        out[i] = TimeSpec::At(sec, usec * 1000);
    }
    Ok(out)
}

fn sys_utime(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // struct utimbuf { actime, modtime }: whole seconds.
    let times = if a[1] == 0 {
        [TimeSpec::Now, TimeSpec::Now]
    } else {
        [
            TimeSpec::At(t.mm.read_u64(a[1])? as i64, 0),
            TimeSpec::At(t.mm.read_u64(a[1] + 8)? as i64, 0),
        ]
    };
    set_times(t, AT_FDCWD, a[0], times, 0)
}

fn sys_utimes(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let times = read_timevals(t, a[1])?;
    set_times(t, AT_FDCWD, a[0], times, 0)
}

fn sys_futimesat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let times = read_timevals(t, a[2])?;
    set_times(t, a[0] as i32, a[1], times, 0)
}

/// The common part of utimensat and its older forms: a path (or, with a NULL path or
/// AT_EMPTY_PATH, `dirfd` itself) gets `times`.
fn set_times(t: &Task, dirfd: i32, path: u64, times: [TimeSpec; 2], flags: u64) -> SyscallResult {
    // Linux: no path with AT_FDCWD is a path lookup of NULL.
    if path == 0 && dirfd == AT_FDCWD {
        return Err(Errno::EFAULT);
    }
    let vfs = t.fs.vfs.clone();
    let p = if path == 0 {
        Vec::new()
    } else {
        path_arg(t, path)?
    };
    if p.is_empty() {
        if path != 0 && flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        // futimens: the file dirfd refers to.
        let f = t.files.get(dirfd)?;
        return match f.vfs_node() {
            Some(Node::Tmp(inode)) => {
                vfs::set_times(&inode, times);
                vfs.raise_on_file(&*f, crate::vfs::inotify::IN_ATTRIB);
                Ok(0)
            }
            Some(Node::Host(_)) => {
                let fp = f.path().into_bytes();
                with_lookup(t, b"/", |lk| vfs.utimes(lk, &fp, times, false)).map(|_| 0)
            }
            _ => Ok(0),
        };
    }
    let base = base_dir(t, dirfd, &p)?;
    with_lookup(t, &base, |lk| {
        vfs.utimes(lk, &p, times, flags & AT_SYMLINK_NOFOLLOW == 0)
    })
    .map(|_| 0)
}

// ---- ownership ----

fn do_fchownat(t: &Task, dirfd: i32, addr: u64, uid: u32, gid: u32, flags: u64) -> SyscallResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = path_arg(t, addr)?;
    if p.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        return chown_fd(t, dirfd, uid, gid);
    }
    let base = base_dir(t, dirfd, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| {
        vfs.chown(lk, &p, uid, gid, flags & AT_SYMLINK_NOFOLLOW == 0)
    })
    .map(|_| 0)
}

fn chown_fd(t: &Task, fd: i32, uid: u32, gid: u32) -> SyscallResult {
    let f = t.files.get(fd)?;
    if t.creds.euid != 0 {
        return Err(Errno::EPERM);
    }
    match f.vfs_node() {
        Some(Node::Tmp(inode)) => {
            vfs::chown_inode(&inode, uid, gid);
            Ok(0)
        }
        Some(Node::Host(_)) => {
            let fp = f.path().into_bytes();
            let vfs = t.fs.vfs.clone();
            with_lookup(t, b"/", |lk| vfs.chown(lk, &fp, uid, gid, false)).map(|_| 0)
        }
        _ => Ok(0),
    }
}

fn sys_chown(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_fchownat(t, AT_FDCWD, a[0], a[1] as u32, a[2] as u32, 0)
}

fn sys_lchown(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_fchownat(
        t,
        AT_FDCWD,
        a[0],
        a[1] as u32,
        a[2] as u32,
        AT_SYMLINK_NOFOLLOW,
    )
}

fn sys_fchownat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_fchownat(t, a[0] as i32, a[1], a[2] as u32, a[3] as u32, a[4])
}

fn sys_fchown(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    chown_fd(t, a[0] as i32, a[1] as u32, a[2] as u32)
}

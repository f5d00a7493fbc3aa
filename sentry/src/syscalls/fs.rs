//! File-system syscalls on open files: read/write, open/close/dup, pipes, fcntl, ioctl,
//! stat, sendfile. Guest arguments are decoded here (every pointer through
//! `task.mm`, every length capped) for the VFS and the fd table; the namespace calls
//! (directories, links, permissions, ownership) are in `fs_tree.rs`; poll and the other
//! readiness waits in `events.rs`.
//!
//! A read or write that would block on a pipe (or any file with a wait queue) parks the
//! task on the file's queue through `vfs::wait` and returns EINTR if a signal interrupts
//! it before anything was transferred.

use std::sync::Arc;

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;
use crate::vfs::path::PATH_MAX;
use crate::vfs::{self, FileDescription, Found, Lookup, Node, ProcSnapshot, Stat};

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(0, read, Full, "", sys_read),
    syscall!(1, write, Full, "", sys_write),
    syscall!(2, open, Full, "", sys_open),
    syscall!(3, close, Full, "", sys_close),
    syscall!(436, close_range, Full, "", sys_close_range),
    syscall!(4, stat, Full, "", sys_stat),
    syscall!(5, fstat, Full, "", sys_fstat),
    syscall!(6, lstat, Full, "", sys_lstat),
    syscall!(8, lseek, Full, "", sys_lseek),
    syscall!(16, ioctl, Partial, "FIOCLEX, FIONCLEX, FIONBIO, FIONREAD, and TCGETS/TCSETS/TCSETSW/TCSETSF/TIOCGWINSZ/TIOCGPGRP on a tty; others → ENOTTY", sys_ioctl),
    syscall!(17, pread64, Full, "", sys_pread64),
    syscall!(18, pwrite64, Full, "", sys_pwrite64),
    syscall!(19, readv, Full, "", sys_readv),
    syscall!(20, writev, Full, "", sys_writev),
    syscall!(295, preadv, Full, "", sys_preadv),
    syscall!(296, pwritev, Full, "", sys_pwritev),
    syscall!(327, preadv2, Partial, "RWF_* flags are accepted and have no effect", sys_preadv2),
    syscall!(328, pwritev2, Partial, "RWF_* flags are accepted and have no effect (RWF_APPEND included: the offset given is used)", sys_pwritev2),
    syscall!(22, pipe, Full, "", sys_pipe),
    syscall!(32, dup, Full, "", sys_dup),
    syscall!(33, dup2, Full, "", sys_dup2),
    syscall!(40, sendfile, Full, "", sys_sendfile),
    syscall!(72, fcntl, Partial, "record locks (POSIX and OFD) are held between the sandbox's processes, without deadlock detection, and not kept across a checkpoint; F_SETPIPE_SZ keeps 64 KiB; leases, notify and seals → EINVAL", sys_fcntl),
    syscall!(73, flock, Partial, "locks are held between the sandbox's processes, not kept across a checkpoint", sys_flock),
    syscall!(74, fsync, Full, "", sys_fsync),
    syscall!(162, sync, Full, "the overlay is in memory; writable binds are written through already", sys_sync),
    syscall!(306, syncfs, Full, "", sys_fsync),
    syscall!(75, fdatasync, Full, "", sys_fsync),
    syscall!(76, truncate, Full, "", sys_truncate),
    syscall!(77, ftruncate, Full, "", sys_ftruncate),
    syscall!(85, creat, Full, "", sys_creat),
    syscall!(137, statfs, Partial, "block and inode counts are synthetic", sys_statfs),
    syscall!(138, fstatfs, Partial, "block and inode counts are synthetic", sys_fstatfs),
    syscall!(221, fadvise64, Full, "", sys_fadvise64),
    syscall!(187, readahead, Full, "", sys_readahead),
    syscall!(277, sync_file_range, Full, "the overlay is in memory; writable binds are written through already", sys_sync_file_range),
    syscall!(285, fallocate, Partial, "overlay and tmpfs files: allocation (with or without KEEP_SIZE) and PUNCH_HOLE, as Linux's tmpfs; other modes → EOPNOTSUPP; writable binds: the host file system's", sys_fallocate),
    syscall!(257, openat, Full, "", sys_openat),
    syscall!(262, newfstatat, Full, "", sys_newfstatat),
    syscall!(292, dup3, Full, "", sys_dup3),
    syscall!(293, pipe2, Partial, "O_DIRECT (packet mode) is accepted but pipes stay byte streams", sys_pipe2),
    syscall!(332, statx, Partial, "reports STATX_BASIC_STATS only (no birth time, no mount id)", sys_statx),
];

pub(super) const AT_FDCWD: i32 = -100;
pub(super) const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
pub(super) const AT_REMOVEDIR: u64 = 0x200;
pub(super) const AT_EACCESS: u64 = 0x200;
pub(super) const AT_SYMLINK_FOLLOW: u64 = 0x400;
pub(super) const AT_NO_AUTOMOUNT: u64 = 0x800;
pub(super) const AT_EMPTY_PATH: u64 = 0x1000;
pub(super) const AT_STATX_SYNC_TYPE: u64 = 0x6000;

pub(super) const SEEK_CUR: u32 = 1;
/// Bytes one read/write call moves at most (Linux caps at MAX_RW_COUNT = 0x7ffff000;
/// the sentry buffers, so it caps lower and returns a short count).
pub(super) const MAX_IO: usize = 64 << 20;
/// Linux IOV_MAX.
pub(super) const IOV_MAX: u64 = 1024;
pub(super) const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
pub(super) const O_NONBLOCK: u32 = libc::O_NONBLOCK as u32;

/// What /proc shows of `task`, taken when a lookup enters /proc.
pub fn proc_snapshot(t: &Task) -> ProcSnapshot {
    let join = |v: &[Vec<u8>]| {
        let mut o = Vec::new();
        for s in v {
            o.extend_from_slice(s);
            o.push(0);
        }
        o
    };
    let memory = t.mm.guest_memory();
    let (rss, rss_peak) = t.mm.resident();
    ProcSnapshot {
        pid: t.process.pid,
        ppid: t.group.ppid(),
        pgid: t.group.pgid.load(std::sync::atomic::Ordering::Relaxed),
        sid: t.group.sid.load(std::sync::atomic::Ordering::Relaxed),
        tid: t.tid,
        uid: t.creds.euid,
        gid: t.creds.egid,
        uids: [t.creds.uid, t.creds.euid, t.creds.suid],
        gids: [t.creds.gid, t.creds.egid, t.creds.sgid],
        groups: t.creds.groups.clone(),
        umask: t.fs.umask,
        exe: t.process.exe.clone(),
        cwd: t.fs.cwd.clone(),
        cmdline: join(&t.process.argv),
        environ: join(&t.process.envp),
        comm: t.process.comm.clone(),
        maps: t.mm.maps(),
        vm_size: t.mm.virtual_size(),
        rss,
        rss_peak,
        fds: t.files.list(),
        mem_total: memory.size(),
        mem_free: crate::mm::free_bytes(memory),
        cpuinfo: t.kernel.cpuinfo.clone(),
        forks: t.kernel.next_tid().saturating_sub(1) as u64,
        threads: t.group.count(),
        asleep: false,
        cpu: t.group.proc_cpu(t.kernel.boot),
        others: Some(others_of(t)),
        ..kernel_fields(&t.kernel)
    }
}

/// What every process's /proc snapshot says of the sandbox's kernel.
fn kernel_fields(kernel: &crate::kernel::task::Kernel) -> ProcSnapshot {
    ProcSnapshot {
        hostname: kernel
            .hostname
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default(),
        release: super::misc::RELEASE.to_vec(),
        version: super::misc::VERSION.to_vec(),
        uptime: kernel.boot.elapsed(),
        ..ProcSnapshot::default()
    }
}

/// The other processes of `t`'s container, for /proc: each as its main thread last
/// published it (`process::publish_view`), built only when /proc is listed or one of them
/// is looked up.
fn others_of(t: &Task) -> crate::vfs::proc::Others {
    let kernel = t.kernel.clone();
    let container = t.group.container();
    let me = t.process.pid;
    Arc::new(move |only: Option<i32>| {
        let base = kernel_fields(&kernel);
        let groups = match only {
            Some(pid) => kernel.processes.get(pid).into_iter().collect(),
            None => kernel.processes.all(),
        };
        groups
            .into_iter()
            .filter(|g| g.tgid != me && g.count() > 0 && g.container() == container)
            .map(|g| {
                let v = g.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let mm = v.mm.upgrade();
                let (rss, rss_peak) = mm.as_ref().map(|m| m.resident()).unwrap_or_default();
                Arc::new(ProcSnapshot {
                    pid: g.tgid,
                    ppid: g.ppid(),
                    pgid: g.pgid.load(std::sync::atomic::Ordering::Relaxed),
                    sid: g.sid.load(std::sync::atomic::Ordering::Relaxed),
                    tid: g.tgid,
                    uid: v.uids[1],
                    gid: v.gids[1],
                    uids: v.uids,
                    gids: v.gids,
                    exe: v.exe,
                    cwd: v.cwd,
                    cmdline: v.cmdline,
                    comm: v.comm,
                    vm_size: mm.as_ref().map(|m| m.virtual_size()).unwrap_or_default(),
                    rss,
                    rss_peak,
                    threads: g.count(),
                    asleep: g.asleep(),
                    cpu: g.proc_cpu(kernel.boot),
                    ..base.clone()
                })
            })
            .collect()
    })
}

// ---- argument helpers ----

/// A path argument: EFAULT for a bad pointer, ENAMETOOLONG at PATH_MAX.
pub(super) fn path_arg(t: &Task, addr: u64) -> Result<Vec<u8>, Errno> {
    let p = t.mm.read_cstring(addr, PATH_MAX)?;
    if p.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(p)
}

/// The directory a relative path starts from: the cwd or a directory fd.
pub(super) fn base_dir(t: &Task, dirfd: i32, path: &[u8]) -> Result<Vec<u8>, Errno> {
    if path.starts_with(b"/") {
        return Ok(b"/".to_vec());
    }
    if dirfd == AT_FDCWD {
        return Ok(t.fs.cwd.clone());
    }
    let f = t.files.get(dirfd)?;
    match f.vfs_node() {
        Some(n) if n.is_dir() => Ok(f.path().into_bytes()),
        _ => Err(Errno::ENOTDIR),
    }
}

pub(super) fn nofile(t: &Task) -> u64 {
    t.rlimits.0[7].0
}

/// Run `f` with a lookup context for `t` relative to `base` (effective ids).
pub(super) fn with_lookup<R>(t: &Task, base: &[u8], f: impl FnOnce(&Lookup) -> R) -> R {
    let snap = || proc_snapshot(t);
    let lk = Lookup::new(base, t.creds.euid, t.creds.egid, t.fs.umask, &snap);
    f(&lk)
}

pub(super) fn readable(f: &Arc<dyn FileDescription>) -> Result<(), Errno> {
    let acc = f.status_flags() & libc::O_ACCMODE as u32;
    if f.is_path_only() || !(acc == 0 || acc == 2) {
        return Err(Errno::EBADF);
    }
    Ok(())
}

pub(super) fn writable(f: &Arc<dyn FileDescription>) -> Result<(), Errno> {
    let acc = f.status_flags() & libc::O_ACCMODE as u32;
    if f.is_path_only() || !(acc == 1 || acc == 2) {
        return Err(Errno::EBADF);
    }
    Ok(())
}

pub(super) fn offset_arg(v: u64) -> Result<Option<u64>, Errno> {
    if (v as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(v))
}

// ---- read / write ----

fn do_read(t: &Task, fd: i32, buf: u64, count: u64, off: Option<u64>) -> SyscallResult {
    let f = t.files.get(fd)?;
    readable(&f)?;
    let len = (count as usize).min(MAX_IO);
    let mut b = vec![0u8; len];
    let n = vfs::wait::read(&*f, &t.waiter, &mut b, off)?;
    let copied = copy_out_partial(t, buf, &b[..n]);
    if copied < n && off.is_none() {
        // Give back what did not reach the guest: Linux moves the offset only by what
        // it copied.
        let _ = f.seek(-((n - copied) as i64), SEEK_CUR);
    }
    if copied == 0 && n > 0 {
        return Err(Errno::EFAULT);
    }
    Ok(copied as u64)
}

/// Copy `data` out to `addr` as far as guest memory allows (a buffer that runs into
/// unmapped memory gets a short count, as on Linux); the number of bytes copied.
fn copy_out_partial(t: &Task, addr: u64, data: &[u8]) -> usize {
    if t.mm.copy_out(addr, data).is_ok() {
        return data.len();
    }
    let page = crate::arch::PAGE_SIZE;
    let mut done = 0usize;
    while done < data.len() {
        let at = addr.wrapping_add(done as u64);
        let n = ((page - at % page) as usize).min(data.len() - done);
        if t.mm.copy_out(at, &data[done..done + n]).is_err() {
            break;
        }
        done += n;
    }
    done
}

fn do_write(t: &Task, fd: i32, buf: u64, count: u64, off: Option<u64>) -> SyscallResult {
    let f = t.files.get(fd)?;
    writable(&f)?;
    let len = (count as usize).min(MAX_IO);
    let mut b = vec![0u8; len];
    t.mm.copy_in(buf, &mut b)?;
    let n = vfs::wait::write(&*f, &t.waiter, &b, off)?;
    t.fs.vfs.raise_on_file(&*f, vfs::inotify::IN_MODIFY);
    Ok(n as u64)
}

fn sys_read(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_read(t, a[0] as i32, a[1], a[2], None)
}

fn sys_write(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_write(t, a[0] as i32, a[1], a[2], None)
}

fn sys_pread64(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let off = offset_arg(a[3])?;
    do_read(t, a[0] as i32, a[1], a[2], off)
}

fn sys_pwrite64(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let off = offset_arg(a[3])?;
    do_write(t, a[0] as i32, a[1], a[2], off)
}

/// Read an iovec array: (base, len) pairs, total capped at MAX_IO.
pub(super) fn iovecs(t: &Task, addr: u64, cnt: u64) -> Result<Vec<(u64, usize)>, Errno> {
    if cnt > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; cnt as usize * 16];
    t.mm.copy_in(addr, &mut raw)?;
    let mut out = Vec::with_capacity(cnt as usize);
    let mut total = 0usize;
    for c in raw.chunks_exact(16) {
        let base = u64::from_le_bytes(c[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let len = u64::from_le_bytes(c[8..].try_into().map_err(|_| Errno::EFAULT)?);
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        let len = (len as usize).min(MAX_IO - total);
        total += len;
        out.push((base, len));
    }
    Ok(out)
}

fn do_readv(t: &Task, fd: i32, iov: u64, cnt: u64, off: Option<u64>) -> SyscallResult {
    let f = t.files.get(fd)?;
    readable(&f)?;
    let iov = iovecs(t, iov, cnt)?;
    let total: usize = iov.iter().map(|(_, l)| *l).sum();
    let mut b = vec![0u8; total];
    let n = vfs::wait::read(&*f, &t.waiter, &mut b, off)?;
    let mut done = 0;
    for (base, len) in iov {
        if done >= n {
            break;
        }
        let k = len.min(n - done);
        let copied = copy_out_partial(t, base, &b[done..done + k]);
        done += copied;
        if copied < k {
            break;
        }
    }
    if done < n && off.is_none() {
        let _ = f.seek(-((n - done) as i64), SEEK_CUR);
    }
    if done == 0 && n > 0 {
        return Err(Errno::EFAULT);
    }
    Ok(done as u64)
}

fn do_writev(t: &Task, fd: i32, iov: u64, cnt: u64, off: Option<u64>) -> SyscallResult {
    let f = t.files.get(fd)?;
    writable(&f)?;
    let iov = iovecs(t, iov, cnt)?;
    let mut b = Vec::new();
    for (base, len) in iov {
        let start = b.len();
        b.resize(start + len, 0);
        if let Err(e) = t.mm.copy_in(base, &mut b[start..]) {
            if start == 0 {
                return Err(e);
            }
            b.truncate(start);
            break;
        }
    }
    let n = vfs::wait::write(&*f, &t.waiter, &b, off)?;
    t.fs.vfs.raise_on_file(&*f, vfs::inotify::IN_MODIFY);
    Ok(n as u64)
}

fn sys_readv(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_readv(t, a[0] as i32, a[1], a[2], None)
}

fn sys_writev(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_writev(t, a[0] as i32, a[1], a[2], None)
}

fn sys_preadv(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let off = offset_arg(a[3])?;
    do_readv(t, a[0] as i32, a[1], a[2], off)
}

fn sys_pwritev(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let off = offset_arg(a[3])?;
    do_writev(t, a[0] as i32, a[1], a[2], off)
}

/// RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND.
const RWF_KNOWN: u64 = 0x1f;

/// preadv2/pwritev2's offset: -1 is the file's own position.
fn offset2_arg(v: u64, flags: u64) -> Result<Option<u64>, Errno> {
    if flags & !RWF_KNOWN != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if v as i64 == -1 {
        return Ok(None);
    }
    offset_arg(v)
}

fn sys_preadv2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let off = offset2_arg(a[3], a[5])?;
    do_readv(t, a[0] as i32, a[1], a[2], off)
}

fn sys_pwritev2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let off = offset2_arg(a[3], a[5])?;
    do_writev(t, a[0] as i32, a[1], a[2], off)
}

// ---- open / close / dup ----

fn do_openat(t: &Task, dirfd: i32, path: &[u8], flags: u32, mode: u32) -> SyscallResult {
    let base = base_dir(t, dirfd, path)?;
    let vfs = t.fs.vfs.clone();
    let f = with_lookup(t, &base, |lk| vfs.open(lk, path, flags, mode))?;
    if let Some(fifo) = f.as_any().downcast_ref::<vfs::fifo::FifoFile>() {
        // A FIFO's reader waits for a writer and its writer for a reader.
        fifo.wait_for_peer(&t.waiter)?;
    }
    t.files
        .install(f, flags & O_CLOEXEC != 0, nofile(t))
        .map(|fd| fd as u64)
}

fn sys_open(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    do_openat(t, AT_FDCWD, &p, a[1] as u32, a[2] as u32)
}

fn sys_openat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[1])?;
    do_openat(t, a[0] as i32, &p, a[2] as u32, a[3] as u32)
}

fn sys_creat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u32;
    do_openat(t, AT_FDCWD, &p, flags, a[1] as u32)
}

fn sys_close(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.close(a[0] as i32)?;
    super::locks::closed(t, f);
    Ok(0)
}

const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;

/// close_range(first, last, flags): close, or mark close-on-exec, the open fds in
/// [first, last]; CLOSE_RANGE_UNSHARE first gives the thread a table of its own.
fn sys_close_range(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (first, last, flags) = (a[0] as u32, a[1] as u32, a[2]);
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    if flags & CLOSE_RANGE_UNSHARE != 0 {
        t.files = Arc::new(t.files.fork());
    }
    let fds: Vec<i32> = t
        .files
        .list()
        .into_iter()
        .map(|(fd, _)| fd)
        .filter(|fd| (first..=last).contains(&(*fd as u32)))
        .collect();
    for fd in fds {
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            let _ = t.files.set_cloexec(fd, true);
        } else {
            // Closed files are let go of here, one at a time (a pipe's last writer
            // wakes its reader).
            if let Ok(f) = t.files.close(fd) {
                super::locks::closed(t, f);
            }
        }
    }
    Ok(0)
}

fn sys_dup(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    t.files.install(f, false, nofile(t)).map(|fd| fd as u64)
}

fn do_dup3(t: &Task, old: i32, new: i32, cloexec: bool) -> SyscallResult {
    let f = t.files.get(old)?;
    let replaced = t.files.install_at(new, f, cloexec, nofile(t))?;
    if let Some(old) = replaced {
        super::locks::closed(t, old);
    }
    Ok(new as u64)
}

fn sys_dup2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (old, new) = (a[0] as i32, a[1] as i32);
    if old == new {
        t.files.get(old)?;
        return Ok(new as u64);
    }
    do_dup3(t, old, new, false)
}

fn sys_dup3(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (old, new, flags) = (a[0] as i32, a[1] as i32, a[2] as u32);
    if flags & !O_CLOEXEC != 0 || old == new {
        return Err(Errno::EINVAL);
    }
    do_dup3(t, old, new, flags & O_CLOEXEC != 0)
}

fn do_pipe2(t: &Task, addr: u64, flags: u32) -> SyscallResult {
    if flags & !(O_CLOEXEC | O_NONBLOCK | libc::O_DIRECT as u32) != 0 {
        return Err(Errno::EINVAL);
    }
    let (r, w) = vfs::pipe::new_pipe(flags);
    let cloexec = flags & O_CLOEXEC != 0;
    let rfd = t.files.install(r, cloexec, nofile(t))?;
    let wfd = match t.files.install(w, cloexec, nofile(t)) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = t.files.close(rfd);
            return Err(e);
        }
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&rfd.to_le_bytes());
    b[4..].copy_from_slice(&wfd.to_le_bytes());
    if let Err(e) = t.mm.copy_out(addr, &b) {
        let _ = t.files.close(rfd);
        let _ = t.files.close(wfd);
        return Err(e);
    }
    Ok(0)
}

fn sys_pipe(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_pipe2(t, a[0], 0)
}

fn sys_pipe2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_pipe2(t, a[0], a[1] as u32)
}

// ---- fcntl / ioctl / seek / sync ----

const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const F_SETFD: u64 = 2;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const F_GETLK: u64 = 5;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_SETOWN: u64 = 8;
const F_GETOWN: u64 = 9;
const F_OFD_GETLK: u64 = 36;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;
const F_DUPFD_CLOEXEC: u64 = 1030;
const F_SETPIPE_SZ: u64 = 1031;
const F_GETPIPE_SZ: u64 = 1032;

fn sys_fcntl(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, cmd, arg) = (a[0] as i32, a[1] & 0xffff_ffff, a[2]);
    let (f, cloexec) = t.files.get_with_flags(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = arg as u32 as u64;
            if min >= nofile(t).min(vfs::fdtable::MAX_FDS as u64) {
                return Err(Errno::EINVAL);
            }
            t.files
                .install_from(f, cmd == F_DUPFD_CLOEXEC, min as usize, nofile(t))
                .map(|fd| fd as u64)
        }
        F_GETFD => Ok(cloexec as u64),
        F_SETFD => t.files.set_cloexec(fd, arg & 1 != 0).map(|_| 0),
        F_GETFL => Ok(f.status_flags() as u64),
        F_SETFL => {
            if f.is_path_only() {
                return Err(Errno::EBADF);
            }
            f.set_status_flags(arg as u32);
            Ok(0)
        }
        F_GETLK | F_OFD_GETLK | F_SETLK | F_SETLKW | F_OFD_SETLK | F_OFD_SETLKW => {
            if f.is_path_only() {
                return Err(Errno::EBADF);
            }
            super::locks::fcntl_lock(t, &f, cmd, arg)
        }
        F_SETOWN => Ok(0),
        F_GETOWN => Ok(0),
        F_GETPIPE_SZ | F_SETPIPE_SZ => {
            if f.as_any().downcast_ref::<vfs::pipe::PipeEnd>().is_none() {
                return Err(Errno::EBADF);
            }
            Ok(vfs::pipe::PIPE_CAPACITY as u64)
        }
        _ => Err(Errno::EINVAL),
    }
}

const FIONCLEX: u32 = 0x5450;
const FIOCLEX: u32 = 0x5451;
const FIONBIO: u32 = 0x5421;
const FIONREAD: u32 = 0x541b;

fn sys_ioctl(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, cmd, arg) = (a[0] as i32, a[1] as u32, a[2]);
    let f = t.files.get(fd)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    match cmd {
        FIOCLEX => t.files.set_cloexec(fd, true).map(|_| 0),
        FIONCLEX => t.files.set_cloexec(fd, false).map(|_| 0),
        FIONBIO => {
            let on = t.mm.read_u32(arg)? != 0;
            let fl = f.status_flags();
            f.set_status_flags(if on {
                fl | O_NONBLOCK
            } else {
                fl & !O_NONBLOCK
            });
            Ok(0)
        }
        FIONREAD => {
            let st = f.stat()?;
            match st.mode & libc::S_IFMT {
                libc::S_IFREG => {
                    // Linux: bytes from the offset to the end of the file.
                    let pos = f.seek(0, SEEK_CUR)?;
                    let left = (st.size.max(0) as u64)
                        .saturating_sub(pos)
                        .min(i32::MAX as u64);
                    t.mm.write_u32(arg, left as u32)?;
                    Ok(0)
                }
                libc::S_IFDIR => Err(Errno::ENOTTY),
                _ => f.ioctl(cmd, arg, &t.mm),
            }
        }
        _ => f.ioctl(cmd, arg, &t.mm),
    }
}

fn sys_lseek(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    f.seek(a[1] as i64, a[2] as u32)
}

/// sync: nothing the sandbox holds is waiting to be written (the overlay lives in memory,
/// and writes to writable binds went to the host as they were made).
fn sys_sync(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(0)
}

fn sys_fsync(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.files.get(a[0] as i32)?.sync().map(|_| 0)
}

fn sys_truncate(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    if (a[1] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let base = base_dir(t, AT_FDCWD, &p)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| vfs.truncate(lk, &p, a[1])).map(|_| 0)
}

fn sys_ftruncate(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    if (a[1] as i64) < 0 || f.is_path_only() {
        return Err(if f.is_path_only() {
            Errno::EBADF
        } else {
            Errno::EINVAL
        });
    }
    // Linux: a descriptor not open for writing gives EINVAL.
    if writable(&f).is_err() {
        return Err(Errno::EINVAL);
    }
    f.truncate(a[1])?;
    t.fs.vfs.raise_on_file(&*f, vfs::inotify::IN_MODIFY);
    Ok(0)
}

// ---- stat ----

pub(super) fn statx_bytes(st: &Stat) -> [u8; 256] {
    let mut b = [0u8; 256];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    let major = |d: u64| (((d >> 8) & 0xfff) | ((d >> 32) & !0xfff)) as u32;
    let minor = |d: u64| ((d & 0xff) | ((d >> 12) & !0xff)) as u32;
    put(0, &0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    put(4, &(st.blksize as u32).to_le_bytes());
    put(16, &(st.nlink as u32).to_le_bytes());
    put(20, &st.uid.to_le_bytes());
    put(24, &st.gid.to_le_bytes());
    put(28, &(st.mode as u16).to_le_bytes());
    put(32, &st.ino.to_le_bytes());
    put(40, &st.size.to_le_bytes());
    put(48, &st.blocks.to_le_bytes());
    for (off, (sec, nsec)) in [(64, st.atime), (96, st.ctime), (112, st.mtime)] {
        put(off, &sec.to_le_bytes());
        put(off + 8, &(nsec as u32).to_le_bytes());
    }
    put(128, &major(st.rdev).to_le_bytes());
    put(132, &minor(st.rdev).to_le_bytes());
    put(136, &major(st.dev).to_le_bytes());
    put(140, &minor(st.dev).to_le_bytes());
    b
}

/// stat of `path` relative to `dirfd`, or of `dirfd` itself for AT_EMPTY_PATH with "".
pub(super) fn stat_at(t: &Task, dirfd: i32, path: &[u8], flags: u64) -> Result<Stat, Errno> {
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd == AT_FDCWD {
            let cwd = t.fs.cwd.clone();
            let vfs = t.fs.vfs.clone();
            return with_lookup(t, b"/", |lk| vfs.stat(lk, &cwd, true));
        }
        return t.files.get(dirfd)?.stat();
    }
    let base = base_dir(t, dirfd, path)?;
    let vfs = t.fs.vfs.clone();
    with_lookup(t, &base, |lk| {
        vfs.stat(lk, path, flags & AT_SYMLINK_NOFOLLOW == 0)
    })
}

fn sys_stat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    let st = stat_at(t, AT_FDCWD, &p, 0)?;
    t.mm.copy_out(a[1], &st.to_bytes()).map(|_| 0)
}

fn sys_lstat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    let st = stat_at(t, AT_FDCWD, &p, AT_SYMLINK_NOFOLLOW)?;
    t.mm.copy_out(a[1], &st.to_bytes()).map(|_| 0)
}

fn sys_fstat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let st = t.files.get(a[0] as i32)?.stat()?;
    t.mm.copy_out(a[1], &st.to_bytes()).map(|_| 0)
}

fn sys_newfstatat(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = a[3];
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = path_arg(t, a[1])?;
    let st = stat_at(t, a[0] as i32, &p, flags)?;
    t.mm.copy_out(a[2], &st.to_bytes()).map(|_| 0)
}

fn sys_statx(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (dirfd, flags, mask) = (a[0] as i32, a[2], a[3] as u32);
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE) != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
        || mask & 0x8000_0000 != 0
    {
        return Err(Errno::EINVAL);
    }
    let p = path_arg(t, a[1])?;
    let st = stat_at(t, dirfd, &p, flags)?;
    t.mm.copy_out(a[4], &statx_bytes(&st)).map(|_| 0)
}

// ---- sendfile, flock, fadvise, statfs ----

fn sys_sendfile(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (out_fd, in_fd, off_addr, count) = (a[0] as i32, a[1] as i32, a[2], a[3]);
    let inf = t.files.get(in_fd)?;
    let outf = t.files.get(out_fd)?;
    readable(&inf)?;
    writable(&outf)?;
    if outf.status_flags() & libc::O_APPEND as u32 != 0 {
        // Linux: sendfile to an O_APPEND file is EINVAL.
        return Err(Errno::EINVAL);
    }
    let off = if off_addr == 0 {
        None
    } else {
        let o = t.mm.read_u64(off_addr)?;
        if (o as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        Some(o)
    };
    let mut b = vec![0u8; (count as usize).min(MAX_IO)];
    let n = vfs::wait::read(&*inf, &t.waiter, &mut b, off)?;
    let w = vfs::wait::write(&*outf, &t.waiter, &b[..n], None)?;
    t.fs.vfs.raise_on_file(&*outf, vfs::inotify::IN_MODIFY);
    if w < n && off.is_none() {
        // Give back what was read but not written.
        let _ = inf.seek(-((n - w) as i64), SEEK_CUR);
    }
    if let Some(o) = off {
        t.mm.write_u64(off_addr, o + w as u64)?;
    }
    Ok(w as u64)
}

fn sys_flock(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    super::locks::flock(t, &f, a[1])
}

fn sys_fadvise64(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    if f.as_any().downcast_ref::<vfs::pipe::PipeEnd>().is_some() {
        return Err(Errno::ESPIPE);
    }
    if a[3] > 5 || (a[2] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

fn file_type(f: &Arc<dyn FileDescription>) -> u32 {
    f.stat().map_or(0, |st| st.mode & libc::S_IFMT)
}

fn sys_fallocate(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    const KEEP_SIZE: u64 = 1;
    const PUNCH_HOLE: u64 = 2;
    /// Every mode bit Linux knows (KEEP_SIZE … UNSHARE_RANGE).
    const KNOWN: u64 = 0x7f;
    let (fd, mode, offset, len) = (a[0] as i32, a[1] as u32 as u64, a[2] as i64, a[3] as i64);
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if mode & !KNOWN != 0 || (mode & PUNCH_HOLE != 0 && mode & KEEP_SIZE == 0) {
        return Err(Errno::EOPNOTSUPP);
    }
    let f = t.files.get(fd)?;
    writable(&f)?;
    match file_type(&f) {
        libc::S_IFIFO | libc::S_IFSOCK => return Err(Errno::ESPIPE),
        libc::S_IFDIR => return Err(Errno::EISDIR),
        libc::S_IFREG => {}
        _ => return Err(Errno::ENODEV),
    }
    f.allocate(mode as u32, offset as u64, len as u64)?;
    t.fs.vfs.raise_on_file(&*f, vfs::inotify::IN_MODIFY);
    Ok(0)
}

/// readahead(2): a hint; the descriptor must be readable and name a regular file.
fn sys_readahead(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    let acc = f.status_flags() & libc::O_ACCMODE as u32;
    if f.is_path_only() || acc == libc::O_WRONLY as u32 {
        return Err(Errno::EBADF);
    }
    if file_type(&f) != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

fn sys_sync_file_range(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    /// SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER.
    const VALID: u64 = 7;
    if a[3] & !VALID != 0 || (a[1] as i64) < 0 || (a[2] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let f = t.files.get(a[0] as i32)?;
    if f.is_path_only() {
        return Err(Errno::EBADF);
    }
    match file_type(&f) {
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK | libc::S_IFBLK => Ok(0),
        _ => Err(Errno::ESPIPE),
    }
}

/// struct statfs for a node's file system.
fn statfs_bytes(kind: Option<&Node>) -> [u8; 120] {
    const OVERLAYFS_MAGIC: u64 = 0x794c_7630;
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const PROC_MAGIC: u64 = 0x9fa0;
    const PIPEFS_MAGIC: u64 = 0x5049_5045;
    let (magic, blocks) = match kind {
        Some(Node::Host(_)) | Some(Node::Tmp(_)) => {
            (OVERLAYFS_MAGIC, vfs::tmpfs::OVERLAY_BUDGET / 4096)
        }
        Some(Node::Dev(_)) => (TMPFS_MAGIC, 0),
        Some(Node::Proc(_)) => (PROC_MAGIC, 0),
        None => (PIPEFS_MAGIC, 0),
    };
    let mut b = [0u8; 120];
    let words: [u64; 6] = [
        magic,
        4096,
        blocks,
        blocks,
        blocks,
        if blocks > 0 { 1 << 20 } else { 0 },
    ];
    for (i, w) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let ffree: u64 = if blocks > 0 { 1 << 20 } else { 0 };
    b[48..56].copy_from_slice(&ffree.to_le_bytes());
    // f_fsid (56..64) stays zero; then f_namelen, f_frsize, f_flags (ST_VALID).
    b[64..72].copy_from_slice(&255u64.to_le_bytes());
    b[72..80].copy_from_slice(&4096u64.to_le_bytes());
    b[80..88].copy_from_slice(&0x20u64.to_le_bytes());
    b
}

fn sys_statfs(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let p = path_arg(t, a[0])?;
    let base = base_dir(t, AT_FDCWD, &p)?;
    let vfs = t.fs.vfs.clone();
    let node = with_lookup(t, &base, |lk| -> Result<Option<Node>, Errno> {
        let r = vfs.resolve(lk, &p, true)?;
        match r.found {
            Found::Node(n) => Ok(Some(n)),
            Found::Magic(_) => Ok(None),
            Found::Missing => Err(Errno::ENOENT),
        }
    })?;
    t.mm.copy_out(a[1], &statfs_bytes(node.as_ref())).map(|_| 0)
}

fn sys_fstatfs(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    let node = f.vfs_node();
    t.mm.copy_out(a[1], &statfs_bytes(node.as_ref())).map(|_| 0)
}

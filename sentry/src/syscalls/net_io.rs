//! The socket data path: sendto/recvfrom, sendmsg/recvmsg and their batched forms.
//! Blocking follows the description's O_NONBLOCK and MSG_DONTWAIT; an interrupted call
//! that moved nothing is restarted after an SA_RESTART handler (Linux's sock_intr_errno
//! gives -ERESTARTSYS for a blocking socket). On AF_UNIX sockets, SCM_RIGHTS control
//! messages pass open files (Linux __scm_send / scm_detach_fds).

use std::sync::Arc;

use super::net::{ops, read_sockaddr, socket_file, unix_socket};
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::net::sockaddr::AF_UNIX;
use crate::net::unix::{Rights, UnixSocket};
use crate::syscall;
use crate::vfs::file::{FileDescription, POLLIN, POLLOUT};
use crate::vfs::socket::{Received, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_TRUNC, MSG_WAITALL};
use crate::vfs::wait;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(44, sendto, Full, "", sys_sendto),
    syscall!(45, recvfrom, Full, "", sys_recvfrom),
    syscall!(
        46,
        sendmsg,
        Partial,
        "SCM_RIGHTS on AF_UNIX; SCM_CREDENTIALS → EOPNOTSUPP; ancillary data is ignored on inet sockets",
        sys_sendmsg
    ),
    syscall!(
        47,
        recvmsg,
        Partial,
        "ancillary data: SCM_RIGHTS on AF_UNIX only",
        sys_recvmsg
    ),
    syscall!(
        299,
        recvmmsg,
        Partial,
        "as recvmsg; the timeout argument is ignored",
        sys_recvmmsg
    ),
    syscall!(307, sendmmsg, Partial, "as sendmsg", sys_sendmmsg),
];

/// The most one call moves through a socket (a larger request returns a short count).
const MAX_SOCKET_IO: usize = 4 << 20;
/// sizeof(struct msghdr) and sizeof(struct mmsghdr).
const MSGHDR: u64 = 56;
const MMSGHDR: u64 = 64;
/// recvmmsg/sendmmsg batch limit (Linux UIO_MAXIOV).
const MAX_BATCH: u64 = 1024;
/// sizeof(struct cmsghdr).
const CMSGHDR: usize = 16;
/// The most control data a sendmsg may pass (Linux net.core.optmem_max): ENOBUFS beyond.
const MAX_CONTROL: u64 = 128 << 10;
/// Files one SCM_RIGHTS message may carry (Linux SCM_MAX_FD).
const SCM_MAX_FD: usize = 253;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const SCM_CREDENTIALS: i32 = 2;
const MSG_CTRUNC: i32 = 0x8;
const MSG_CMSG_CLOEXEC: i32 = 0x4000_0000;

fn blocking(f: &Arc<dyn FileDescription>, flags: i32) -> bool {
    flags & MSG_DONTWAIT == 0 && wait::should_block(&**f)
}

/// Send `data` through socket `f`: a blocking stream send goes on until everything is
/// queued; a datagram goes whole or not at all. `rights` (AF_UNIX only) go with the first
/// part that is sent.
fn send_all(
    t: &mut Task,
    f: &Arc<dyn FileDescription>,
    data: &[u8],
    to: Option<&[u8]>,
    flags: i32,
    rights: Rights,
) -> Result<usize, Errno> {
    let s = ops(f)?;
    let unix = f.as_any().downcast_ref::<UnixSocket>();
    let mut rights = Some(rights).filter(|r| !r.is_empty());
    let mut attempt = |part: &[u8]| match (unix, &rights) {
        (Some(u), Some(r)) => {
            let sent = u.send_with_rights(part, to, flags, r.clone());
            if sent.is_ok() {
                rights = None;
            }
            sent
        }
        _ => s.send(part, to, flags),
    };
    let r = if !blocking(f, flags) {
        attempt(data)
    } else if s.sock_type() != 1 {
        wait::block_on(&**f, &t.waiter, POLLOUT, || attempt(data)).map_err(wait::restartable)
    } else {
        let mut done = 0;
        let mut result = Ok(0);
        while done < data.len() || data.is_empty() {
            match wait::block_on(&**f, &t.waiter, POLLOUT, || attempt(&data[done..])) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if done == 0 => {
                    result = Err(wait::restartable(e));
                    break;
                }
                Err(_) => break,
            }
            if data.is_empty() {
                break;
            }
        }
        result.map(|_: usize| done)
    };
    // Linux raises SIGPIPE for AF_UNIX streams only (datagram and seqpacket sends just
    // fail with EPIPE).
    let signals = unix.is_none() || s.sock_type() == 1;
    if r == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 && signals {
        super::signal::raise(t, crate::kernel::signal::SIGPIPE);
    }
    r
}

/// Receive into `buf`; MSG_WAITALL on a blocking stream waits for the whole buffer (but
/// not past files that came along). Also returns those files (AF_UNIX only).
fn recv_some(
    t: &Task,
    f: &Arc<dyn FileDescription>,
    buf: &mut [u8],
    flags: i32,
) -> Result<(Received, Rights), Errno> {
    let s = ops(f)?;
    let unix = f.as_any().downcast_ref::<UnixSocket>();
    let once = |b: &mut [u8]| match unix {
        Some(u) => u.recv_with_rights(b, flags),
        None => s.recv(b, flags).map(|r| (r, Vec::new())),
    };
    if !blocking(f, flags) {
        return once(buf);
    }
    let (first, mut rights) =
        wait::block_on(&**f, &t.waiter, POLLIN, || once(buf)).map_err(wait::restartable)?;
    if flags & MSG_WAITALL == 0 || s.sock_type() != 1 || first.len == 0 || !rights.is_empty() {
        return Ok((first, rights));
    }
    let mut done = first.len;
    while done < buf.len() {
        match wait::block_on(&**f, &t.waiter, POLLIN, || once(&mut buf[done..])) {
            Ok((r, fds)) if r.len > 0 => {
                done += r.len;
                if !fds.is_empty() {
                    rights = fds;
                    break;
                }
            }
            _ => break,
        }
    }
    let r = Received {
        len: done,
        full_len: done,
        from: first.from,
    };
    Ok((r, rights))
}

fn sys_sendto(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let len = (a[2] as usize).min(MAX_SOCKET_IO);
    let mut data = vec![0u8; len];
    t.mm.copy_in(a[1], &mut data)?;
    let to = if a[4] != 0 {
        // An AF_UNIX path resolves from the caller's directory.
        unix_socket(t, &f);
        Some(read_sockaddr(t, a[4], a[5])?)
    } else {
        None
    };
    send_all(t, &f, &data, to.as_deref(), a[3] as i32, Vec::new()).map(|n| n as u64)
}

fn sys_recvfrom(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let flags = a[3] as i32;
    let mut buf = vec![0u8; (a[2] as usize).min(MAX_SOCKET_IO)];
    // Files that came along are closed: recvfrom has no room for them.
    let (r, _) = recv_some(t, &f, &mut buf, flags)?;
    t.mm.copy_out(a[1], &buf[..r.len])?;
    if a[4] != 0 {
        if let Some(from) = &r.from {
            super::net::put_sized(t, a[4], a[5], from)?;
        } else {
            t.mm.write_u32(a[5], 0)?;
        }
    }
    Ok(if flags & MSG_TRUNC != 0 {
        r.full_len
    } else {
        r.len
    } as u64)
}

/// The fields of a `struct msghdr`.
struct MsgHdr {
    name: u64,
    namelen: u64,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(t: &Task, addr: u64) -> Result<MsgHdr, Errno> {
    let mut b = [0u8; MSGHDR as usize];
    t.mm.copy_in(addr, &mut b)?;
    let word = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    Ok(MsgHdr {
        name: word(0),
        namelen: word(8) & 0xffff_ffff,
        iov: word(16),
        iovlen: word(24),
        control: word(32),
        controllen: word(40),
    })
}

fn do_sendmsg(t: &mut Task, fd: u64, msg: u64, flags: i32) -> Result<usize, Errno> {
    let f = socket_file(t, fd)?;
    let h = read_msghdr(t, msg)?;
    let unix = ops(&f)?.domain() == AF_UNIX;
    let rights = if unix && h.controllen != 0 {
        read_rights(t, h.control, h.controllen)?
    } else {
        Vec::new()
    };
    let mut data = Vec::new();
    for (base, len) in super::fs::iovecs(t, h.iov, h.iovlen)? {
        let start = data.len();
        let len = len.min(MAX_SOCKET_IO - start);
        data.resize(start + len, 0);
        t.mm.copy_in(base, &mut data[start..])?;
    }
    let to = if h.name != 0 && h.namelen != 0 {
        // An AF_UNIX path resolves from the caller's directory.
        unix_socket(t, &f);
        Some(read_sockaddr(t, h.name, h.namelen)?)
    } else {
        None
    };
    send_all(t, &f, &data, to.as_deref(), flags, rights)
}

/// The files a sendmsg on an AF_UNIX socket passes (Linux __scm_send): SCM_RIGHTS brings
/// open files (EBADF for a bad fd, EINVAL beyond SCM_MAX_FD); SCM_CREDENTIALS is not
/// carried (EOPNOTSUPP); other SOL_SOCKET types are EINVAL; other levels are skipped.
fn read_rights(t: &Task, control: u64, len: u64) -> Result<Rights, Errno> {
    if len > MAX_CONTROL {
        return Err(Errno::ENOBUFS);
    }
    let mut buf = vec![0u8; len as usize];
    t.mm.copy_in(control, &mut buf)?;
    let word = |o: usize| -> [u8; 4] { [buf[o], buf[o + 1], buf[o + 2], buf[o + 3]] };
    let mut rights: Rights = Vec::new();
    let mut off = 0;
    while buf.len() - off >= CMSGHDR {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[off..off + 8]);
        let cmsg_len = u64::from_le_bytes(w);
        let level = i32::from_le_bytes(word(off + 8));
        let ty = i32::from_le_bytes(word(off + 12));
        if cmsg_len < CMSGHDR as u64 || cmsg_len > (buf.len() - off) as u64 {
            return Err(Errno::EINVAL);
        }
        let cmsg_len = cmsg_len as usize;
        if level == SOL_SOCKET {
            match ty {
                SCM_RIGHTS => {
                    let n = (cmsg_len - CMSGHDR) / 4;
                    if rights.len() + n > SCM_MAX_FD {
                        return Err(Errno::EINVAL);
                    }
                    for i in 0..n {
                        let fd = i32::from_le_bytes(word(off + CMSGHDR + 4 * i));
                        rights.push(t.files.get(fd)?);
                    }
                }
                SCM_CREDENTIALS => return Err(Errno::EOPNOTSUPP),
                _ => return Err(Errno::EINVAL),
            }
        }
        // CMSG_NXTHDR: the next header starts at the aligned end of this one.
        off = match off.checked_add((cmsg_len + 7) & !7) {
            Some(next) if next <= buf.len() => next,
            _ => break,
        };
    }
    Ok(rights)
}

/// Install received files in the caller's table and describe them in one SCM_RIGHTS
/// control message at `control` (Linux scm_detach_fds): files that do not fit in
/// `controllen` (or in the fd table) are closed and MSG_CTRUNC is set. Returns the
/// control length used.
fn put_rights(
    t: &Task,
    control: u64,
    controllen: u64,
    rights: Rights,
    flags: i32,
    out_flags: &mut i32,
) -> Result<u64, Errno> {
    let room = (controllen.saturating_sub(CMSGHDR as u64) / 4).min(SCM_MAX_FD as u64) as usize;
    let cloexec = flags & MSG_CMSG_CLOEXEC != 0;
    let mut fds: Vec<i32> = Vec::new();
    for file in rights.iter().take(room) {
        match t.files.install(file.clone(), cloexec, super::fs::nofile(t)) {
            Ok(fd) => fds.push(fd),
            Err(_) => break,
        }
    }
    if fds.len() < rights.len() {
        *out_flags |= MSG_CTRUNC;
    }
    if fds.is_empty() {
        return Ok(0);
    }
    let cmsg_len = CMSGHDR + 4 * fds.len();
    let mut b = Vec::with_capacity(cmsg_len);
    b.extend_from_slice(&(cmsg_len as u64).to_le_bytes());
    b.extend_from_slice(&SOL_SOCKET.to_le_bytes());
    b.extend_from_slice(&SCM_RIGHTS.to_le_bytes());
    for fd in &fds {
        b.extend_from_slice(&fd.to_le_bytes());
    }
    if let Err(e) = t.mm.copy_out(control, &b) {
        for fd in fds {
            let _ = t.files.close(fd);
        }
        return Err(e);
    }
    // CMSG_SPACE, cut to the buffer.
    Ok((((cmsg_len + 7) & !7) as u64).min(controllen))
}

fn do_recvmsg(t: &mut Task, fd: u64, msg: u64, flags: i32) -> Result<usize, Errno> {
    let f = socket_file(t, fd)?;
    let h = read_msghdr(t, msg)?;
    let iov = super::fs::iovecs(t, h.iov, h.iovlen)?;
    let total: usize = iov
        .iter()
        .map(|(_, l)| *l)
        .sum::<usize>()
        .min(MAX_SOCKET_IO);
    let mut data = vec![0u8; total];
    let (r, rights) = recv_some(t, &f, &mut data, flags)?;
    let mut done = 0;
    for (base, len) in iov {
        if done >= r.len {
            break;
        }
        let k = len.min(r.len - done);
        t.mm.copy_out(base, &data[done..done + k])?;
        done += k;
    }
    // msg_namelen: the sender's address for datagram sockets, 0 for streams.
    match (&r.from, h.name) {
        (Some(from), name) if name != 0 => {
            let n = (h.namelen as usize).min(from.len());
            t.mm.copy_out(name, &from[..n])?;
            t.mm.write_u32(msg.wrapping_add(8), from.len() as u32)?;
        }
        _ => t.mm.write_u32(msg.wrapping_add(8), 0)?,
    }
    // MSG_TRUNC in msg_flags when a datagram was cut; files as SCM_RIGHTS.
    let mut out_flags = if r.full_len > r.len { MSG_TRUNC } else { 0 };
    let used = if rights.is_empty() {
        0
    } else {
        put_rights(t, h.control, h.controllen, rights, flags, &mut out_flags)?
    };
    t.mm.write_u64(msg.wrapping_add(40), used)?;
    t.mm.write_u32(msg.wrapping_add(48), out_flags as u32)?;
    Ok(if flags & MSG_TRUNC != 0 {
        r.full_len
    } else {
        r.len
    })
}

fn sys_sendmsg(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_sendmsg(t, a[0], a[1], a[2] as i32).map(|n| n as u64)
}

fn sys_recvmsg(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_recvmsg(t, a[0], a[1], a[2] as i32).map(|n| n as u64)
}

/// sendmmsg/recvmmsg: one call per message; the count done, or the first error if none.
fn batch(
    t: &mut Task,
    a: &[u64; 6],
    one: fn(&mut Task, u64, u64, i32) -> Result<usize, Errno>,
) -> SyscallResult {
    let (fd, vec, n, flags) = (a[0], a[1], a[2].min(MAX_BATCH), a[3] as i32);
    let mut done = 0u64;
    while done < n {
        // Guest addresses: wrap rather than overflow; copy_in/out refuse bad ones.
        let hdr = vec.wrapping_add(done * MMSGHDR);
        // After the first message, do not block for more (Linux's MSG_WAITFORONE
        // behaviour is what programs rely on; plain recvmmsg would wait for all).
        let f = if done > 0 {
            flags | MSG_DONTWAIT
        } else {
            flags
        };
        match one(t, fd, hdr, f) {
            Ok(len) => {
                t.mm.write_u32(hdr.wrapping_add(MSGHDR), len as u32)?;
                done += 1;
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

fn sys_sendmmsg(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    batch(t, a, do_sendmsg)
}

fn sys_recvmmsg(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    batch(t, a, do_recvmsg)
}

//! The socket data path: sendto/recvfrom, sendmsg/recvmsg and their batched forms.
//! Blocking follows the description's O_NONBLOCK and MSG_DONTWAIT; an interrupted call
//! that moved nothing is restarted after an SA_RESTART handler (Linux's sock_intr_errno
//! gives -ERESTARTSYS for a blocking socket).

use std::sync::Arc;

use super::net::{ops, read_sockaddr, socket_file};
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
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
        "ancillary data is ignored on inet sockets; SCM_RIGHTS on AF_UNIX → EOPNOTSUPP",
        sys_sendmsg
    ),
    syscall!(
        47,
        recvmsg,
        Partial,
        "never returns ancillary data (msg_controllen = 0)",
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

fn blocking(f: &Arc<dyn FileDescription>, flags: i32) -> bool {
    flags & MSG_DONTWAIT == 0 && wait::should_block(&**f)
}

/// Send `data` through socket `f`: a blocking stream send goes on until everything is
/// queued; a datagram goes whole or not at all.
fn send_all(
    t: &mut Task,
    f: &Arc<dyn FileDescription>,
    data: &[u8],
    to: Option<&[u8]>,
    flags: i32,
) -> Result<usize, Errno> {
    let s = ops(f)?;
    let r = if !blocking(f, flags) {
        s.send(data, to, flags)
    } else if s.sock_type() != 1 {
        wait::block_on(&**f, &t.waiter, POLLOUT, || s.send(data, to, flags))
            .map_err(wait::restartable)
    } else {
        let mut done = 0;
        let mut result = Ok(0);
        while done < data.len() || data.is_empty() {
            match wait::block_on(&**f, &t.waiter, POLLOUT, || {
                s.send(&data[done..], to, flags)
            }) {
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
    if r == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 {
        super::signal::raise(t, crate::kernel::signal::SIGPIPE);
    }
    r
}

/// Receive into `buf`; MSG_WAITALL on a blocking stream waits for the whole buffer.
fn recv_some(
    t: &Task,
    f: &Arc<dyn FileDescription>,
    buf: &mut [u8],
    flags: i32,
) -> Result<Received, Errno> {
    let s = ops(f)?;
    if !blocking(f, flags) {
        return s.recv(buf, flags);
    }
    let first = wait::block_on(&**f, &t.waiter, POLLIN, || s.recv(buf, flags))
        .map_err(wait::restartable)?;
    if flags & MSG_WAITALL == 0 || s.sock_type() != 1 || first.len == 0 {
        return Ok(first);
    }
    let mut done = first.len;
    while done < buf.len() {
        match wait::block_on(&**f, &t.waiter, POLLIN, || s.recv(&mut buf[done..], flags)) {
            Ok(r) if r.len > 0 => done += r.len,
            _ => break,
        }
    }
    Ok(Received {
        len: done,
        full_len: done,
        from: first.from,
    })
}

fn sys_sendto(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let len = (a[2] as usize).min(MAX_SOCKET_IO);
    let mut data = vec![0u8; len];
    t.mm.copy_in(a[1], &mut data)?;
    let to = if a[4] != 0 {
        Some(read_sockaddr(t, a[4], a[5])?)
    } else {
        None
    };
    send_all(t, &f, &data, to.as_deref(), a[3] as i32).map(|n| n as u64)
}

fn sys_recvfrom(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let flags = a[3] as i32;
    let mut buf = vec![0u8; (a[2] as usize).min(MAX_SOCKET_IO)];
    let r = recv_some(t, &f, &mut buf, flags)?;
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
        controllen: word(40),
    })
}

fn do_sendmsg(t: &mut Task, fd: u64, msg: u64, flags: i32) -> Result<usize, Errno> {
    let f = socket_file(t, fd)?;
    let h = read_msghdr(t, msg)?;
    if h.controllen != 0 && ops(&f)?.domain() == crate::net::sockaddr::AF_UNIX {
        // Passing fds (SCM_RIGHTS) is not supported yet.
        return Err(Errno::EOPNOTSUPP);
    }
    let mut data = Vec::new();
    for (base, len) in super::fs::iovecs(t, h.iov, h.iovlen)? {
        let start = data.len();
        let len = len.min(MAX_SOCKET_IO - start);
        data.resize(start + len, 0);
        t.mm.copy_in(base, &mut data[start..])?;
    }
    let to = if h.name != 0 && h.namelen != 0 {
        Some(read_sockaddr(t, h.name, h.namelen)?)
    } else {
        None
    };
    send_all(t, &f, &data, to.as_deref(), flags)
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
    let r = recv_some(t, &f, &mut data, flags)?;
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
            t.mm.write_u32(msg + 8, from.len() as u32)?;
        }
        _ => t.mm.write_u32(msg + 8, 0)?,
    }
    // No ancillary data; MSG_TRUNC in msg_flags when a datagram was cut.
    t.mm.write_u64(msg + 40, 0)?;
    let out_flags = if r.full_len > r.len { MSG_TRUNC } else { 0 };
    t.mm.write_u32(msg + 48, out_flags as u32)?;
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
        let hdr = vec + done * MMSGHDR;
        // After the first message, do not block for more (Linux's MSG_WAITFORONE
        // behaviour is what programs rely on; plain recvmmsg would wait for all).
        let f = if done > 0 {
            flags | MSG_DONTWAIT
        } else {
            flags
        };
        match one(t, fd, hdr, f) {
            Ok(len) => {
                t.mm.write_u32(hdr + MSGHDR, len as u32)?;
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

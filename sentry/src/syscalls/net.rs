//! Sockets. For now only what runtimes use between processes: socketpair(AF_UNIX,
//! SOCK_STREAM) and shutdown. Network sockets come with the netstack (issue 4).

use super::fs::nofile;
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;
use crate::vfs::socketpair::{new_pair, StreamSocket};

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(41, socket, Unsupported, "no network stack yet: every family → EAFNOSUPPORT", sys_socket),
    syscall!(46, sendmsg, Partial, "stream socket pairs; no ancillary data (SCM_RIGHTS → EOPNOTSUPP)", sys_sendmsg),
    syscall!(47, recvmsg, Partial, "stream socket pairs; MSG_PEEK → EOPNOTSUPP; never returns ancillary data", sys_recvmsg),
    syscall!(48, shutdown, Partial, "stream socket pairs only", sys_shutdown),
    syscall!(51, getsockname, Partial, "stream socket pairs (unnamed AF_UNIX)", sys_getsockname),
    syscall!(52, getpeername, Partial, "stream socket pairs (unnamed AF_UNIX)", sys_getsockname),
    syscall!(53, socketpair, Partial, "AF_UNIX SOCK_STREAM only; SOCK_DGRAM/SEQPACKET → EOPNOTSUPP", sys_socketpair),
    syscall!(54, setsockopt, Partial, "stream socket pairs: SOL_SOCKET buffer sizes and flags are accepted and have no effect", sys_setsockopt),
    syscall!(55, getsockopt, Partial, "stream socket pairs: SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ERROR, SO_ACCEPTCONN, SO_SNDBUF, SO_RCVBUF", sys_getsockopt),
];

const AF_UNIX: u64 = 1;
const SOCK_STREAM: u64 = 1;
const SOCK_DGRAM: u64 = 2;
const SOCK_SEQPACKET: u64 = 5;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;

fn sys_socket(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Err(Errno::EAFNOSUPPORT)
}

fn sys_socketpair(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (domain, ty, protocol, addr) = (a[0], a[1], a[2], a[3]);
    if domain != AF_UNIX {
        return Err(Errno::EAFNOSUPPORT);
    }
    if ty & !(SOCK_NONBLOCK | SOCK_CLOEXEC | 0xf) != 0 {
        return Err(Errno::EINVAL);
    }
    match ty & 0xf {
        SOCK_STREAM => {}
        SOCK_DGRAM | SOCK_SEQPACKET => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EINVAL),
    }
    if protocol != 0 {
        return Err(Errno::EPROTONOSUPPORT);
    }
    let nb = if ty & SOCK_NONBLOCK != 0 {
        libc::O_NONBLOCK as u32
    } else {
        0
    };
    let cloexec = ty & SOCK_CLOEXEC != 0;
    let (x, y) = new_pair(nb);
    let fx = t.files.install(x, cloexec, nofile(t))?;
    let fy = match t.files.install(y, cloexec, nofile(t)) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = t.files.close(fx);
            return Err(e);
        }
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&fx.to_le_bytes());
    b[4..].copy_from_slice(&fy.to_le_bytes());
    if let Err(e) = t.mm.copy_out(addr, &b) {
        let _ = t.files.close(fx);
        let _ = t.files.close(fy);
        return Err(e);
    }
    Ok(0)
}

fn sys_shutdown(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    let sock = f
        .as_any()
        .downcast_ref::<StreamSocket>()
        .ok_or(Errno::ENOTSOCK)?;
    sock.shutdown(a[1]).map(|_| 0)
}

const SOL_SOCKET: u64 = 1;
const MSG_PEEK: u64 = 0x2;
const MSG_DONTWAIT: u64 = 0x40;
const MSG_NOSIGNAL: u64 = 0x4000;
const ENOPROTOOPT: Errno = Errno(92);

fn stream_socket(
    t: &Task,
    fd: u64,
) -> Result<std::sync::Arc<dyn crate::vfs::FileDescription>, Errno> {
    let f = t.files.get(fd as i32)?;
    if f.as_any().downcast_ref::<StreamSocket>().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(f)
}

/// The fields of a `struct msghdr` we use: iovec array, its length, control length.
fn msghdr(t: &Task, addr: u64) -> Result<(u64, u64, u64), Errno> {
    let mut b = [0u8; 56];
    t.mm.copy_in(addr, &mut b)?;
    let word = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    Ok((word(16), word(24), word(40)))
}

fn sys_sendmsg(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, msg, flags) = (a[0], a[1], a[2]);
    let f = stream_socket(t, fd)?;
    let (iov, iovlen, controllen) = msghdr(t, msg)?;
    if controllen != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let mut data = Vec::new();
    for (base, len) in super::fs::iovecs(t, iov, iovlen)? {
        let start = data.len();
        data.resize(start + len, 0);
        t.mm.copy_in(base, &mut data[start..])?;
    }
    let r = if flags & MSG_DONTWAIT != 0 {
        f.write(&data, None)
    } else {
        crate::vfs::wait::write(&*f, &t.waiter, &data, None)
    };
    if r == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 {
        super::signal::raise(t, crate::kernel::signal::SIGPIPE);
    }
    r.map(|n| n as u64)
}

fn sys_recvmsg(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, msg, flags) = (a[0], a[1], a[2]);
    if flags & MSG_PEEK != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let f = stream_socket(t, fd)?;
    let (iov, iovlen, _) = msghdr(t, msg)?;
    let iov = super::fs::iovecs(t, iov, iovlen)?;
    let total: usize = iov.iter().map(|(_, l)| *l).sum();
    let mut data = vec![0u8; total];
    let n = if flags & MSG_DONTWAIT != 0 {
        f.read(&mut data, None)?
    } else {
        crate::vfs::wait::read(&*f, &t.waiter, &mut data, None)?
    };
    let mut done = 0;
    for (base, len) in iov {
        if done >= n {
            break;
        }
        let k = len.min(n - done);
        t.mm.copy_out(base, &data[done..done + k])?;
        done += k;
    }
    // No peer address, no ancillary data, no flags.
    t.mm.write_u32(msg + 8, 0)?;
    t.mm.write_u64(msg + 40, 0)?;
    t.mm.write_u32(msg + 48, 0)?;
    Ok(n as u64)
}

/// Write a socket address (or option value) the way Linux does: copy at most the
/// caller's buffer length, and report the full length.
fn put_sized(t: &Task, buf: u64, lenp: u64, value: &[u8]) -> Result<(), Errno> {
    let len = t.mm.read_u32(lenp)? as i32;
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let n = (len as usize).min(value.len());
    t.mm.copy_out(buf, &value[..n])?;
    t.mm.write_u32(lenp, value.len() as u32)
}

fn sys_getsockname(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    stream_socket(t, a[0])?;
    // An unnamed AF_UNIX socket: just the family.
    put_sized(t, a[1], a[2], &(AF_UNIX as u16).to_le_bytes()).map(|_| 0)
}

fn sys_getsockopt(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    stream_socket(t, a[0])?;
    if a[1] != SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    let v: i32 = match a[2] {
        3 => SOCK_STREAM as i32,                         // SO_TYPE
        39 => AF_UNIX as i32,                            // SO_DOMAIN
        38 | 4 | 30 => 0,                                // SO_PROTOCOL, SO_ERROR, SO_ACCEPTCONN
        7 | 8 => crate::vfs::pipe::PIPE_CAPACITY as i32, // SO_SNDBUF, SO_RCVBUF
        _ => return Err(ENOPROTOOPT),
    };
    put_sized(t, a[3], a[4], &v.to_le_bytes()).map(|_| 0)
}

fn sys_setsockopt(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    stream_socket(t, a[0])?;
    if a[1] != SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    match a[2] {
        // SO_REUSEADDR, SO_KEEPALIVE, SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_SNDBUFFORCE,
        // SO_RCVBUFFORCE: accepted.
        2 | 9 | 7 | 8 | 16 | 32 | 33 => {
            if a[4] < 4 {
                return Err(Errno::EINVAL);
            }
            t.mm.read_u32(a[3])?;
            Ok(0)
        }
        _ => Err(ENOPROTOOPT),
    }
}

//! Socket syscalls: creation, naming, connection set-up and options. The data path
//! (send*/recv*) is in `net_io.rs`. Families: AF_INET/AF_INET6 over netstack
//! (`crate::net::inet`), AF_UNIX inside the sentry (`crate::net::unix`).

use std::sync::Arc;

use super::fs::nofile;
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::net::inet::InetSocket;
use crate::net::netlink::{NetlinkSocket, AF_NETLINK};
use crate::net::sockaddr::{AF_INET, AF_INET6, AF_UNIX};
use crate::net::unix::{self, UnixSocket};
use crate::syscall;
use crate::vfs::file::{FileDescription, POLLERR, POLLHUP, POLLIN, POLLOUT};
use crate::vfs::socket::SocketOps;
use crate::vfs::wait;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(41, socket, Partial, "AF_INET/AF_INET6 TCP and UDP over the sandbox's netstack; AF_UNIX stream, datagram and seqpacket inside the sentry (paths in the overlay, abstract names per sandbox; host sockets are unreachable); AF_NETLINK NETLINK_ROUTE answered by the sentry (link and address lists; changes → EPERM); SOCK_RAW → EPERM; other families → EAFNOSUPPORT", sys_socket),
    syscall!(42, connect, Full, "", sys_connect),
    syscall!(43, accept, Full, "", sys_accept),
    syscall!(48, shutdown, Full, "", sys_shutdown),
    syscall!(49, bind, Full, "ports the ACL's listen rules deny → EACCES", sys_bind),
    syscall!(50, listen, Full, "", sys_listen),
    syscall!(51, getsockname, Full, "", sys_getsockname),
    syscall!(52, getpeername, Full, "", sys_getpeername),
    syscall!(53, socketpair, Full, "AF_UNIX stream, datagram and seqpacket; other families → EAFNOSUPPORT (EOPNOTSUPP for AF_INET/AF_INET6)", sys_socketpair),
    syscall!(54, setsockopt, Partial, "SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY, IPV6_V6ONLY take effect; buffer sizes are fixed per inet socket (AF_UNIX: SO_SNDBUF limits sends, SO_PASSCRED autobinds); other common options are stored and read back without effect; unknown → ENOPROTOOPT", sys_setsockopt),
    syscall!(55, getsockopt, Partial, "SO_TYPE/DOMAIN/PROTOCOL/ERROR/ACCEPTCONN/SNDBUF/RCVBUF, SO_PEERCRED (AF_UNIX) and the options setsockopt takes; TCP_INFO → ENOPROTOOPT", sys_getsockopt),
    syscall!(288, accept4, Full, "", sys_accept4),
];

pub(super) const SOCK_NONBLOCK: u64 = 0o4000;
pub(super) const SOCK_CLOEXEC: u64 = 0o2000000;
/// sizeof(struct sockaddr_storage): the most an address may take.
const SOCKADDR_MAX: u64 = 128;

/// The socket behind `fd` (ENOTSOCK for other files).
pub(super) fn socket_file(t: &Task, fd: u64) -> Result<Arc<dyn FileDescription>, Errno> {
    let f = t.files.get(fd as i32)?;
    if f.as_socket().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(f)
}

pub(super) fn ops(f: &Arc<dyn FileDescription>) -> Result<&dyn SocketOps, Errno> {
    f.as_socket().ok_or(Errno::ENOTSOCK)
}

/// Copy in a `struct sockaddr` of `len` bytes.
pub(super) fn read_sockaddr(t: &Task, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len > SOCKADDR_MAX || (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = vec![0u8; len as usize];
    t.mm.copy_in(addr, &mut b)?;
    Ok(b)
}

/// Write a socket address (or option value) the way Linux does: copy at most the
/// caller's buffer length, and report the full length.
pub(super) fn put_sized(t: &Task, buf: u64, lenp: u64, value: &[u8]) -> Result<(), Errno> {
    let len = t.mm.read_u32(lenp)? as i32;
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let n = (len as usize).min(value.len());
    t.mm.copy_out(buf, &value[..n])?;
    t.mm.write_u32(lenp, value.len() as u32)
}

fn type_flags(ty: u64) -> Result<(u32, bool), Errno> {
    if ty & !(SOCK_NONBLOCK | SOCK_CLOEXEC | 0xf) != 0 {
        return Err(Errno::EINVAL);
    }
    let nb = if ty & SOCK_NONBLOCK != 0 {
        libc::O_NONBLOCK as u32
    } else {
        0
    };
    Ok((nb, ty & SOCK_CLOEXEC != 0))
}

fn sys_socket(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (domain, ty, protocol) = (a[0] as i32, a[1], a[2] as i32);
    let (nb, cloexec) = type_flags(ty)?;
    let file: Arc<dyn FileDescription> = match domain {
        AF_INET | AF_INET6 => {
            InetSocket::create(&t.kernel.net, domain, (ty & 0xf) as i32, protocol, nb)?
        }
        AF_UNIX => UnixSocket::create(
            unix_namespace(t),
            unix_caller(t),
            (ty & 0xf) as i32,
            protocol,
            nb,
        )?,
        AF_NETLINK => NetlinkSocket::create(
            t.kernel.net.interfaces(),
            t.process.pid,
            (ty & 0xf) as i32,
            protocol,
            nb,
        )?,
        _ => return Err(Errno::EAFNOSUPPORT),
    };
    t.files
        .install(file, cloexec, nofile(t))
        .map(|fd| fd as u64)
}

/// What AF_UNIX sockets of `t`'s sandbox share.
fn unix_namespace(t: &Task) -> unix::Namespace {
    unix::Namespace {
        vfs: t.fs.vfs.clone(),
        names: t.kernel.unix_names.clone(),
    }
}

/// `t` as an AF_UNIX socket sees its caller (path lookups, SO_PEERCRED).
fn unix_caller(t: &Task) -> unix::Caller {
    unix::Caller {
        pid: t.process.pid,
        uid: t.creds.euid,
        gid: t.creds.egid,
        cwd: t.fs.cwd.clone(),
        umask: t.fs.umask,
    }
}

/// The AF_UNIX socket behind `f`, told who calls.
pub(super) fn unix_socket<'a>(t: &Task, f: &'a Arc<dyn FileDescription>) -> Option<&'a UnixSocket> {
    let u = f.as_any().downcast_ref::<UnixSocket>()?;
    u.set_caller(unix_caller(t));
    Some(u)
}

fn sys_socketpair(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (domain, ty, protocol, addr) = (a[0] as i32, a[1], a[2] as i32, a[3]);
    let (nb, cloexec) = type_flags(ty)?;
    match domain {
        AF_UNIX => {}
        // Linux: inet protocols have no socketpair operation.
        AF_INET | AF_INET6 => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EAFNOSUPPORT),
    }
    let (x, y) = UnixSocket::pair(
        unix_namespace(t),
        unix_caller(t),
        (ty & 0xf) as i32,
        protocol,
        nb,
    )?;
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

fn sys_bind(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let addr = read_sockaddr(t, a[1], a[2])?;
    unix_socket(t, &f);
    ops(&f)?.bind(&addr).map(|_| 0)
}

fn sys_listen(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    unix_socket(t, &f);
    ops(&f)?.listen(a[1] as i32).map(|_| 0)
}

fn sys_accept(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_accept(t, a[0], a[1], a[2], 0)
}

fn sys_accept4(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_accept(t, a[0], a[1], a[2], a[3])
}

fn do_accept(t: &mut Task, fd: u64, addr: u64, lenp: u64, flags: u64) -> SyscallResult {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let (nb, cloexec) = type_flags(flags)?;
    let f = socket_file(t, fd)?;
    unix_socket(t, &f);
    let s = ops(&f)?;
    let (conn, peer) = if wait::should_block(&*f) {
        wait::block_on(&*f, &t.waiter, POLLIN, || s.accept(nb)).map_err(wait::restartable)?
    } else {
        s.accept(nb)?
    };
    let newfd = t.files.install(conn, cloexec, nofile(t))?;
    if addr != 0 {
        if let Err(e) = put_sized(t, addr, lenp, &peer) {
            let _ = t.files.close(newfd);
            return Err(e);
        }
    }
    Ok(newfd as u64)
}

fn sys_connect(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let addr = read_sockaddr(t, a[1], a[2])?;
    if let Some(u) = unix_socket(t, &f) {
        // Made at once, or EAGAIN while the listener's backlog is full: a blocking
        // connect waits for room (Linux unix_wait_for_peer).
        let r = if wait::should_block(&*f) {
            wait::block_on(&*f, &t.waiter, POLLOUT, || u.connect(&addr)).map_err(wait::restartable)
        } else {
            u.connect(&addr)
        };
        return r.map(|_| 0);
    }
    let s = ops(&f)?;
    match s.connect(&addr) {
        Err(Errno::EINPROGRESS) if wait::should_block(&*f) => {
            let r = wait::wait_until(
                &t.waiter,
                &[(&*f, POLLOUT | POLLERR | POLLHUP)],
                None,
                || match s.connect_status() {
                    Err(Errno::EINPROGRESS) => None,
                    r => Some(r),
                },
            )?;
            r.unwrap_or(Err(Errno::EINPROGRESS)).map(|_| 0)
        }
        r => r.map(|_| 0),
    }
}

fn sys_shutdown(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    ops(&f)?.shutdown(a[1] as i32).map(|_| 0)
}

fn sys_getsockname(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let name = ops(&f)?.sockname()?;
    put_sized(t, a[1], a[2], &name).map(|_| 0)
}

fn sys_getpeername(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let name = ops(&f)?.peername()?;
    put_sized(t, a[1], a[2], &name).map(|_| 0)
}

fn sys_getsockopt(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let v = ops(&f)?.getsockopt(a[1] as i32, a[2] as i32)?;
    put_sized(t, a[3], a[4], &v).map(|_| 0)
}

fn sys_setsockopt(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = socket_file(t, a[0])?;
    let len = a[4] as i32;
    if !(0..=4096).contains(&len) {
        return Err(Errno::EINVAL);
    }
    let mut v = vec![0u8; len as usize];
    t.mm.copy_in(a[3], &mut v)?;
    ops(&f)?.setsockopt(a[1] as i32, a[2] as i32, &v).map(|_| 0)
}

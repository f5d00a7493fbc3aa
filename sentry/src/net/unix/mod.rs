//! AF_UNIX sockets: stream, datagram and seqpacket, named by a path in the sandbox's file
//! system (a socket inode in the overlay), by an abstract name (the sandbox's
//! [`AbstractNamespace`]) or by autobind, connected by socketpair, connect/accept or a
//! datagram's destination. Everything stays inside the sentry: a path that leads to a
//! host socket is ECONNREFUSED.
//!
//! [`UnixSocket`] is the file description; the state machine is `endpoint`, the receive
//! queue `queue`, names `addr` and `names`. Address lookups need the caller's working
//! directory and credentials, which the socket syscalls hand over with
//! [`UnixSocket::set_caller`] before they call in; a send from the data path (sendto,
//! sendmsg) resolves a relative path from the directory last handed over.
//!
//! Open files travel with data ([`UnixSocket::send_with_rights`], SCM_RIGHTS). A socket
//! sent through itself (or through a cycle of sockets) keeps itself alive while the
//! message is queued; Linux collects such cycles, the sentry does not (the memory goes
//! with the sandbox). SCM_CREDENTIALS is not carried.

mod addr;
mod endpoint;
mod names;
mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub use endpoint::Ucred;
pub use names::AbstractNamespace;
pub use queue::Rights;

use self::addr::UnixAddr;
use self::endpoint::{Endpoint, SockType};
use crate::abi::Errno;
use crate::vfs::file::{FileDescription, Stat};
use crate::vfs::socket::{Received, SocketOps, MSG_DONTWAIT, MSG_PEEK};
use crate::vfs::{Lookup, ProcSnapshot, Vfs};
use crate::waiter::WaitQueue;

const AF_UNIX: i32 = crate::net::sockaddr::AF_UNIX;
/// Protocol numbers socket(2) takes for AF_UNIX: 0 and PF_UNIX.
const PF_UNIX: i32 = 1;
const MSG_OOB: i32 = 1;

const SOL_SOCKET: i32 = 1;
const SO_TYPE: i32 = 3;
const SO_ERROR: i32 = 4;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_PASSCRED: i32 = 16;
const SO_PEERCRED: i32 = 17;
const SO_RCVTIMEO: i32 = 20;
const SO_SNDTIMEO: i32 = 21;
const SO_ACCEPTCONN: i32 = 30;
const SO_SNDBUFFORCE: i32 = 32;
const SO_RCVBUFFORCE: i32 = 33;
const SO_PROTOCOL: i32 = 38;
const SO_DOMAIN: i32 = 39;
const SO_LINGER: i32 = 13;
/// Options a program may set and read back that change nothing here. Flags (read back
/// as 0 or 1): SO_REUSEADDR, SO_BROADCAST, SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK,
/// SO_REUSEPORT, SO_TIMESTAMP.
const STORED_FLAGS: &[i32] = &[2, 6, 9, 10, 11, 15, 29];
/// Integers: SO_PRIORITY, SO_BUSY_POLL, SO_INCOMING_CPU.
const STORED_INTS: &[i32] = &[12, 46, 49];

/// Linux's net.core.wmem_max / rmem_max defaults: the most SO_SNDBUF/SO_RCVBUF ask for.
const BUF_MAX: u32 = 212_992;
/// SOCK_MIN_SNDBUF and SOCK_MIN_RCVBUF on x86-64.
const MIN_SNDBUF: usize = 4608;
const MIN_RCVBUF: usize = 2304;
/// net.core.somaxconn: listen(2) caps its backlog here.
const SOMAXCONN: usize = 4096;

const FIONREAD: u32 = 0x541b;
const TIOCOUTQ: u32 = 0x5411;

/// What AF_UNIX sockets of one sandbox share: the file system paths name sockets in,
/// and the abstract namespace.
#[derive(Clone)]
pub struct Namespace {
    pub vfs: Arc<Vfs>,
    pub names: Arc<AbstractNamespace>,
}

/// Who is calling: for path lookups (working directory, ids, umask) and SO_PEERCRED.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The calling process's id (its thread group's).
    pub pid: i32,
    /// Effective user and group.
    pub uid: u32,
    pub gid: u32,
    /// Absolute working directory.
    pub cwd: Vec<u8>,
    pub umask: u32,
}

impl Caller {
    fn cred(&self) -> Ucred {
        Ucred {
            pid: self.pid,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// An AF_UNIX socket file.
pub struct UnixSocket {
    ep: Arc<Endpoint>,
    ns: Namespace,
    caller: Mutex<Caller>,
    flags: AtomicU32,
    /// SO_PASSCRED: connect and send autobind an unnamed socket.
    passcred: AtomicBool,
    /// SOL_SOCKET options kept for getsockopt only.
    stored: Mutex<HashMap<i32, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn int(v: i32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn int_value(v: &[u8]) -> Result<i32, Errno> {
    match v {
        [a, b, c, d, ..] => Ok(i32::from_le_bytes([*a, *b, *c, *d])),
        _ => Err(Errno::EINVAL),
    }
}

/// socket(2)'s type and protocol for AF_UNIX (protocol first, as Linux unix_create).
fn sock_type(ty: i32, protocol: i32) -> Result<SockType, Errno> {
    if !(0..=10).contains(&ty) {
        return Err(Errno::EINVAL);
    }
    if protocol != 0 && protocol != PF_UNIX {
        return Err(Errno::EPROTONOSUPPORT);
    }
    SockType::from_raw(ty)
}

impl UnixSocket {
    /// socket(AF_UNIX, ty, protocol); `flags` may hold O_NONBLOCK.
    pub fn create(
        ns: Namespace,
        caller: Caller,
        ty: i32,
        protocol: i32,
        flags: u32,
    ) -> Result<Arc<UnixSocket>, Errno> {
        let ty = sock_type(ty, protocol)?;
        Ok(Self::wrap(Endpoint::new(ty), ns, caller, flags))
    }

    /// socketpair(AF_UNIX, ty, protocol): two connected sockets.
    pub fn pair(
        ns: Namespace,
        caller: Caller,
        ty: i32,
        protocol: i32,
        flags: u32,
    ) -> Result<(Arc<UnixSocket>, Arc<UnixSocket>), Errno> {
        let ty = sock_type(ty, protocol)?;
        let (a, b) = Endpoint::pair(ty, caller.cred());
        Ok((
            Self::wrap(a, ns.clone(), caller.clone(), flags),
            Self::wrap(b, ns, caller, flags),
        ))
    }

    fn wrap(ep: Arc<Endpoint>, ns: Namespace, caller: Caller, flags: u32) -> Arc<UnixSocket> {
        Arc::new(UnixSocket {
            ep,
            ns,
            caller: Mutex::new(caller),
            flags: AtomicU32::new(libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK as u32)),
            passcred: AtomicBool::new(false),
            stored: Mutex::new(HashMap::new()),
        })
    }

    /// Record who makes the next calls (before bind, connect, listen, …).
    pub fn set_caller(&self, caller: Caller) {
        *lock(&self.caller) = caller;
    }

    fn caller(&self) -> Caller {
        lock(&self.caller).clone()
    }

    fn nonblocking(&self, flags: i32) -> bool {
        flags & MSG_DONTWAIT != 0 || self.status_flags() & libc::O_NONBLOCK as u32 != 0
    }

    /// The live socket of our type named by `addr` (Linux unix_find_other).
    fn resolve(&self, addr: &UnixAddr) -> Result<Arc<Endpoint>, Errno> {
        match addr {
            UnixAddr::Abstract(name) => self
                .ns
                .names
                .lookup(self.ep.ty, name)
                .ok_or(Errno::ECONNREFUSED),
            UnixAddr::Path(path) => {
                let c = self.caller();
                let lk = Lookup::new(&c.cwd, c.uid, c.gid, c.umask, &ProcSnapshot::default);
                let found = self.ns.vfs.bound_socket(&lk, path)?;
                let ep = found
                    .downcast::<Endpoint>()
                    .map_err(|_| Errno::ECONNREFUSED)?;
                if ep.is_dead() {
                    return Err(Errno::ECONNREFUSED);
                }
                if ep.ty != self.ep.ty {
                    return Err(Errno::EPROTOTYPE);
                }
                Ok(ep)
            }
        }
    }

    /// With SO_PASSCRED, an unnamed socket gets a name before it connects or sends.
    fn autobind_for_passcred(&self) -> Result<(), Errno> {
        if self.passcred.load(Ordering::Relaxed) {
            self.ns.names.autobind(&self.ep)?;
        }
        Ok(())
    }

    fn bind_path(&self, path: &[u8]) -> Result<(), Errno> {
        let c = self.caller();
        let lk = Lookup::new(&c.cwd, c.uid, c.gid, c.umask, &ProcSnapshot::default);
        let name: Weak<dyn std::any::Any + Send + Sync> = Arc::downgrade(&self.ep) as Weak<_>;
        self.ns.vfs.bind_socket(&lk, path, name)?;
        if let Err(e) = self.ep.set_addr(UnixAddr::Path(path.to_vec())) {
            // Named already: the new inode goes again (Linux unix_bind_bsd).
            let _ = self.ns.vfs.unlink(&lk, path);
            return Err(e);
        }
        Ok(())
    }
}

impl UnixSocket {
    /// send with open files attached (SCM_RIGHTS): a stream sends them with its first
    /// chunk, a datagram or seqpacket socket with the message.
    pub fn send_with_rights(
        &self,
        data: &[u8],
        to: Option<&[u8]>,
        flags: i32,
        rights: Rights,
    ) -> Result<usize, Errno> {
        if flags & MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        // A zero-length address is no address (Linux msg_namelen == 0).
        let to = to.filter(|a| !a.is_empty());
        match self.ep.ty {
            SockType::Stream => self.ep.send_stream(data, to.is_some(), rights),
            SockType::SeqPacket => self.ep.send_message(data, None, rights),
            SockType::Dgram => {
                let dest = to.map(UnixAddr::parse).transpose()?;
                self.autobind_for_passcred()?;
                match dest {
                    Some(a) => {
                        let resolve = || self.resolve(&a);
                        self.ep.send_message(data, Some(&resolve), rights)
                    }
                    None => self.ep.send_message(data, None, rights),
                }
            }
        }
    }

    /// recv, with the files that came with the data.
    pub fn recv_with_rights(
        &self,
        buf: &mut [u8],
        flags: i32,
    ) -> Result<(Received, Rights), Errno> {
        if flags & MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let t = self
            .ep
            .recv(buf, flags & MSG_PEEK != 0, self.nonblocking(flags))?;
        let r = Received {
            len: t.len,
            full_len: t.full_len,
            from: t.from.map(|a| a.encode()),
        };
        Ok((r, t.rights))
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.ep.release(false);
        if let Some(UnixAddr::Abstract(name)) = self.ep.addr() {
            self.ns.names.unbind(&self.ep, &name);
        }
    }
}

impl FileDescription for UnixSocket {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        self.recv(buf, 0).map(|r| r.len)
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        self.send(buf, None, 0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(crate::net::socket_stat(self.ep.ino))
    }

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        let n = match cmd {
            FIONREAD => self.ep.inq()?,
            TIOCOUTQ => self.ep.outq(),
            _ => return Err(Errno::ENOTTY),
        };
        mm.write_u32(arg, n.min(i32::MAX as usize) as u32)?;
        Ok(0)
    }

    fn poll(&self) -> i16 {
        self.ep.poll()
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.ep.queue)
    }

    fn path(&self) -> String {
        format!("socket:[{}]", self.ep.ino)
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        crate::vfs::tmpfs::set_flags(&self.flags, flags);
    }

    fn as_socket(&self) -> Option<&dyn SocketOps> {
        Some(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SocketOps for UnixSocket {
    fn domain(&self) -> i32 {
        AF_UNIX
    }

    fn sock_type(&self) -> i32 {
        self.ep.ty.raw()
    }

    fn protocol(&self) -> i32 {
        0
    }

    fn bind(&self, raw: &[u8]) -> Result<(), Errno> {
        if addr::is_autobind(raw) {
            return self.ns.names.autobind(&self.ep);
        }
        match UnixAddr::parse(raw)? {
            UnixAddr::Path(p) => self.bind_path(&p),
            UnixAddr::Abstract(n) => self.ns.names.bind(&self.ep, &n),
        }
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        // Linux __sys_listen compares as unsigned: a negative backlog is the maximum.
        let backlog = (backlog as u32 as usize).min(SOMAXCONN);
        self.ep.listen(backlog, self.caller().cred())
    }

    fn accept(&self, flags: u32) -> Result<(Arc<dyn FileDescription>, Vec<u8>), Errno> {
        let conn = self.ep.accept(self.nonblocking(0))?;
        let peer = conn.peer_addr().ok().flatten();
        let file = Self::wrap(conn, self.ns.clone(), self.caller(), flags);
        Ok((file, addr::encode_opt(peer.as_ref())))
    }

    fn connect(&self, raw: &[u8]) -> Result<(), Errno> {
        if self.ep.ty == SockType::Dgram {
            if raw.len() < 2 {
                return Err(Errno::EINVAL);
            }
            if crate::net::sockaddr::family(raw) == Some(crate::net::sockaddr::AF_UNSPEC) {
                return self.ep.connect_dgram(None);
            }
            let a = UnixAddr::parse(raw)?;
            self.autobind_for_passcred()?;
            let target = self.resolve(&a)?;
            return self.ep.connect_dgram(Some(target));
        }
        let a = UnixAddr::parse(raw)?;
        self.autobind_for_passcred()?;
        let target = self.resolve(&a)?;
        self.ep.connect(&target, self.caller().cred())
    }

    fn send(&self, data: &[u8], to: Option<&[u8]>, flags: i32) -> Result<usize, Errno> {
        self.send_with_rights(data, to, flags, Vec::new())
    }

    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<Received, Errno> {
        // Files that came along are closed (Linux: no room for them in the message).
        self.recv_with_rights(buf, flags).map(|(r, _)| r)
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        self.ep.shutdown(how)
    }

    fn sockname(&self) -> Result<Vec<u8>, Errno> {
        Ok(addr::encode_opt(self.ep.addr().as_ref()))
    }

    fn peername(&self) -> Result<Vec<u8>, Errno> {
        Ok(addr::encode_opt(self.ep.peer_addr()?.as_ref()))
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        if level != SOL_SOCKET {
            // AF_UNIX has no options of its own (no getsockopt operation in Linux).
            return Err(Errno::EOPNOTSUPP);
        }
        Ok(match name {
            SO_TYPE => int(self.ep.ty.raw()),
            SO_DOMAIN => int(AF_UNIX),
            SO_PROTOCOL => int(0),
            SO_ERROR => int(self.ep.take_error().map_or(0, |e| e.0)),
            SO_ACCEPTCONN => int(self.ep.is_listening() as i32),
            SO_SNDBUF => int(self.ep.sndbuf() as i32),
            SO_RCVBUF => int(self.ep.rcvbuf() as i32),
            SO_PASSCRED => int(self.passcred.load(Ordering::Relaxed) as i32),
            SO_PEERCRED => self.ep.peer_cred().to_bytes(),
            SO_RCVTIMEO | SO_SNDTIMEO => lock(&self.stored)
                .get(&name)
                .cloned()
                .unwrap_or_else(|| vec![0; 16]),
            SO_LINGER => lock(&self.stored)
                .get(&name)
                .cloned()
                .unwrap_or_else(|| vec![0; 8]),
            n if STORED_FLAGS.contains(&n) || STORED_INTS.contains(&n) => lock(&self.stored)
                .get(&n)
                .cloned()
                .unwrap_or_else(|| int(0)),
            _ => return Err(Errno::ENOPROTOOPT),
        })
    }

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let store = |len: usize| {
            if value.len() < len {
                return Err(Errno::EINVAL);
            }
            lock(&self.stored).insert(name, value[..len].to_vec());
            Ok(())
        };
        match name {
            // Linux sock_setsockopt: the request is capped, doubled and floored.
            SO_SNDBUF | SO_SNDBUFFORCE => {
                let v = (int_value(value)? as u32).min(BUF_MAX) as usize;
                self.ep.set_sndbuf((v * 2).max(MIN_SNDBUF));
                Ok(())
            }
            SO_RCVBUF | SO_RCVBUFFORCE => {
                let v = (int_value(value)? as u32).min(BUF_MAX) as usize;
                self.ep.set_rcvbuf((v * 2).max(MIN_RCVBUF));
                Ok(())
            }
            SO_PASSCRED => {
                let on = int_value(value)? != 0;
                self.passcred.store(on, Ordering::Relaxed);
                Ok(())
            }
            SO_RCVTIMEO | SO_SNDTIMEO => store(16),
            SO_LINGER => store(8),
            n if STORED_FLAGS.contains(&n) => {
                let on = int_value(value)? != 0;
                lock(&self.stored).insert(n, int(on as i32));
                Ok(())
            }
            n if STORED_INTS.contains(&n) => {
                let v = int_value(value)?;
                lock(&self.stored).insert(n, int(v));
                Ok(())
            }
            _ => Err(Errno::ENOPROTOOPT),
        }
    }
}

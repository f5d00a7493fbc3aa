//! AF_NETLINK sockets, NETLINK_ROUTE only: how glibc's `getifaddrs` and
//! `if_nameindex` (and through them Node's `os.networkInterfaces()`) list the sandbox's
//! interfaces. The sentry answers from the interfaces its netstack has
//! (`netstack::stack::Stack::interfaces`); no host netlink socket is ever involved.
//!
//! A request is answered when it is sent: the answers wait in the socket's queue, one
//! message per datagram, until the guest reads them. Multicast groups may be joined but
//! nothing is ever announced (the sandbox's interfaces never change).

mod route;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use netstack::stack::InterfaceInfo;

use crate::abi::Errno;
use crate::vfs::file::{FileDescription, Stat};
use crate::vfs::socket::{Received, SocketOps, MSG_PEEK};
use crate::waiter::WaitQueue;

pub const AF_NETLINK: i32 = 16;
const NETLINK_ROUTE: i32 = 0;
const SOCK_DGRAM: i32 = 2;
const SOCK_RAW: i32 = 3;
/// sizeof(struct sockaddr_nl).
const SOCKADDR_NL_LEN: usize = 12;

const SOL_SOCKET: i32 = 1;
const SO_TYPE: i32 = 3;
const SO_ERROR: i32 = 4;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_PROTOCOL: i32 = 38;
const SO_DOMAIN: i32 = 39;
/// SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_PASSCRED, SO_ATTACH_FILTER: taken, no effect.
const SOL_SOCKET_ACCEPTED: &[i32] = &[16, 26, 32, 33];
const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;
/// NETLINK_ADD/DROP_MEMBERSHIP, PKTINFO, BROADCAST_ERROR, NO_ENOBUFS, LISTEN_ALL_NSID,
/// EXT_ACK, GET_STRICT_CHK: taken, no effect (nothing is ever broadcast here).
const SOL_NETLINK_ACCEPTED: &[i32] = &[1, 2, 3, 4, 5, 8, 11, 12];

/// Bytes of answers a socket may hold unread (Linux's default receive buffer is about
/// this): past it an answer is dropped and the next read fails with ENOBUFS, so a guest
/// that asks without reading cannot make the sentry hold more.
const QUEUE_LIMIT: usize = 212_992;
const BUFFER_SIZE: i32 = QUEUE_LIMIT as i32;

static NEXT_INO: AtomicU64 = AtomicU64::new(3 << 32);

/// A NETLINK_ROUTE socket.
pub struct NetlinkSocket {
    kind: i32,
    ifaces: Vec<InterfaceInfo>,
    /// The socket's port id (nl_pid): the process id unless bound to another.
    port: AtomicU32,
    queue: Mutex<Answers>,
    waiters: WaitQueue,
    flags: AtomicU32,
    cap_ack: AtomicBool,
    ino: u64,
}

#[derive(Default)]
struct Answers {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Answers were dropped for want of room: the next read says ENOBUFS.
    overrun: bool,
}

fn sockaddr_nl(port: u32) -> Vec<u8> {
    let mut a = vec![0u8; SOCKADDR_NL_LEN];
    a[..2].copy_from_slice(&(AF_NETLINK as u16).to_le_bytes());
    a[4..8].copy_from_slice(&port.to_le_bytes());
    a
}

/// The (nl_pid, nl_groups) of a sockaddr_nl.
fn parse_sockaddr_nl(a: &[u8]) -> Result<(u32, u32), Errno> {
    if a.len() < SOCKADDR_NL_LEN || u16::from_le_bytes([a[0], a[1]]) as i32 != AF_NETLINK {
        return Err(Errno::EINVAL);
    }
    let word = |i: usize| u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    Ok((word(4), word(8)))
}

impl NetlinkSocket {
    /// socket(AF_NETLINK, kind, protocol) for process `pid`, over `ifaces`.
    pub fn create(
        ifaces: &[InterfaceInfo],
        pid: i32,
        kind: i32,
        protocol: i32,
        status_flags: u32,
    ) -> Result<Arc<NetlinkSocket>, Errno> {
        if kind != SOCK_RAW && kind != SOCK_DGRAM {
            return Err(Errno::ESOCKTNOSUPPORT);
        }
        if protocol != NETLINK_ROUTE {
            return Err(Errno::EPROTONOSUPPORT);
        }
        Ok(Arc::new(NetlinkSocket {
            kind,
            ifaces: ifaces.to_vec(),
            port: AtomicU32::new(pid as u32),
            queue: Mutex::default(),
            waiters: WaitQueue::new(),
            flags: AtomicU32::new(status_flags),
            cap_ack: AtomicBool::new(false),
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
        }))
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileDescription for NetlinkSocket {
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
        Ok(super::socket_stat(self.ino))
    }

    fn poll(&self) -> i16 {
        let q = self.answers();
        let readable = if q.messages.is_empty() && !q.overrun {
            0
        } else {
            libc::POLLIN
        };
        readable | libc::POLLOUT
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.waiters)
    }

    fn path(&self) -> String {
        format!("socket:[{}]", self.ino)
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

impl SocketOps for NetlinkSocket {
    fn domain(&self) -> i32 {
        AF_NETLINK
    }

    fn sock_type(&self) -> i32 {
        self.kind
    }

    fn protocol(&self) -> i32 {
        NETLINK_ROUTE
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        let (port, _groups) = parse_sockaddr_nl(addr)?;
        if port != 0 {
            self.port.store(port, Ordering::Relaxed);
        }
        Ok(())
    }

    fn connect(&self, addr: &[u8]) -> Result<(), Errno> {
        // Only the kernel (port 0) answers here.
        match parse_sockaddr_nl(addr)? {
            (0, _) => Ok(()),
            _ => Err(Errno::ECONNREFUSED),
        }
    }

    fn send(&self, data: &[u8], to: Option<&[u8]>, _flags: i32) -> Result<usize, Errno> {
        if let Some(to) = to {
            if parse_sockaddr_nl(to)?.0 != 0 {
                return Err(Errno::ECONNREFUSED);
            }
        }
        let port = self.port.load(Ordering::Relaxed);
        let answers = route::handle(
            data,
            &self.ifaces,
            port,
            self.cap_ack.load(Ordering::Relaxed),
        );
        if !answers.is_empty() {
            let mut q = self.answers();
            for m in answers {
                if q.bytes + m.len() > QUEUE_LIMIT {
                    q.overrun = true;
                    break;
                }
                q.bytes += m.len();
                q.messages.push_back(m);
            }
            drop(q);
            self.waiters.notify_all();
        }
        Ok(data.len())
    }

    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<Received, Errno> {
        let mut q = self.answers();
        let Some(m) = q.messages.front() else {
            if std::mem::take(&mut q.overrun) {
                return Err(Errno::ENOBUFS);
            }
            return Err(Errno::EAGAIN);
        };
        let len = m.len().min(buf.len());
        buf[..len].copy_from_slice(&m[..len]);
        let full_len = m.len();
        if flags & MSG_PEEK == 0 {
            q.bytes -= full_len;
            q.messages.pop_front();
        }
        Ok(Received {
            len,
            full_len,
            from: Some(sockaddr_nl(0)),
        })
    }

    fn shutdown(&self, _how: i32) -> Result<(), Errno> {
        // netlink has no shutdown operation (sock_no_shutdown).
        Err(Errno::EOPNOTSUPP)
    }

    fn sockname(&self) -> Result<Vec<u8>, Errno> {
        Ok(sockaddr_nl(self.port.load(Ordering::Relaxed)))
    }

    fn peername(&self) -> Result<Vec<u8>, Errno> {
        Ok(sockaddr_nl(0))
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| v.to_le_bytes().to_vec();
        match (level, name) {
            (SOL_SOCKET, SO_TYPE) => Ok(int(self.kind)),
            (SOL_SOCKET, SO_DOMAIN) => Ok(int(AF_NETLINK)),
            (SOL_SOCKET, SO_PROTOCOL) => Ok(int(NETLINK_ROUTE)),
            (SOL_SOCKET, SO_ERROR) => Ok(int(0)),
            (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => Ok(int(BUFFER_SIZE)),
            (SOL_NETLINK, NETLINK_CAP_ACK) => Ok(int(self.cap_ack.load(Ordering::Relaxed) as i32)),
            (SOL_NETLINK, n) if SOL_NETLINK_ACCEPTED.contains(&n) => Ok(int(0)),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let int = || -> Result<i32, Errno> {
            let b: [u8; 4] = value
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Errno::EINVAL)?;
            Ok(i32::from_le_bytes(b))
        };
        match (level, name) {
            (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => int().map(|_| ()),
            (SOL_SOCKET, n) if SOL_SOCKET_ACCEPTED.contains(&n) => Ok(()),
            (SOL_NETLINK, NETLINK_CAP_ACK) => {
                self.cap_ack.store(int()? != 0, Ordering::Relaxed);
                Ok(())
            }
            (SOL_NETLINK, n) if SOL_NETLINK_ACCEPTED.contains(&n) => int().map(|_| ()),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }
}

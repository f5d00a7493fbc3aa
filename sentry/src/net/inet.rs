//! AF_INET and AF_INET6 sockets: file descriptions over netstack's TCP and UDP sockets.
//!
//! netstack never blocks; it answers EAGAIN, and the syscall layer parks the task on this
//! file's wait queue, which netstack's notifier wakes when the socket's readiness changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use netstack::stack::{SockError, Stack, TcpSocket, UdpSocket};

use super::sockaddr::{self, AF_INET, AF_INET6, AF_UNSPEC};
use crate::abi::Errno;
use crate::vfs::file::{FileDescription, Stat};
use crate::vfs::socket::{Received, SocketOps, MSG_PEEK};
use crate::waiter::WaitQueue;

pub const SOCK_STREAM: i32 = 1;
pub const SOCK_DGRAM: i32 = 2;
pub const IPPROTO_TCP: i32 = 6;
pub const IPPROTO_UDP: i32 = 17;

const SOL_SOCKET: i32 = 1;
const IPPROTO_IP: i32 = 0;
const IPPROTO_IPV6: i32 = 41;

// SOL_SOCKET options.
const SO_REUSEADDR: i32 = 2;
const SO_TYPE: i32 = 3;
const SO_ERROR: i32 = 4;
const SO_BROADCAST: i32 = 6;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_KEEPALIVE: i32 = 9;
const SO_ACCEPTCONN: i32 = 30;
const SO_PROTOCOL: i32 = 38;
const SO_DOMAIN: i32 = 39;
/// Options a program may set and read back that change nothing here: SO_OOBINLINE,
/// SO_NO_CHECK, SO_PRIORITY, SO_LINGER, SO_REUSEPORT, SO_RCVLOWAT, SO_SNDLOWAT,
/// SO_RCVTIMEO, SO_SNDTIMEO, SO_TIMESTAMP, SO_BUSY_POLL, SO_INCOMING_CPU.
const SOL_SOCKET_STORED: &[i32] = &[10, 11, 12, 13, 15, 18, 19, 20, 21, 29, 46, 49];

// IPPROTO_TCP options.
const TCP_NODELAY: i32 = 1;
/// TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_SYNCNT,
/// TCP_LINGER2, TCP_DEFER_ACCEPT, TCP_WINDOW_CLAMP, TCP_QUICKACK, TCP_USER_TIMEOUT,
/// TCP_FASTOPEN, TCP_NOTSENT_LOWAT: stored, no effect.
const TCP_STORED: &[i32] = &[2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 18, 23, 25];

// IPPROTO_IPV6 / IPPROTO_IP options.
const IPV6_V6ONLY: i32 = 26;
/// IP_TOS, IP_TTL, IP_RECVERR, IP_MTU_DISCOVER, IP_MULTICAST_TTL, IP_MULTICAST_LOOP,
/// IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP, IPV6_RECVERR,
/// IPV6_MTU_DISCOVER, IPV6_TCLASS: stored, no effect.
const IP_STORED: &[i32] = &[1, 2, 11, 10, 33, 34];
const IPV6_STORED: &[i32] = &[16, 18, 19, 23, 25, 67];

const FIONREAD: u32 = 0x541b;
static NEXT_INO: AtomicU64 = AtomicU64::new(1 << 20);

enum Proto {
    Tcp(TcpSocket),
    Udp(UdpSocket),
}

/// An AF_INET / AF_INET6 socket file.
pub struct InetSocket {
    proto: Proto,
    domain: i32,
    queue: Arc<WaitQueue>,
    flags: AtomicU32,
    ino: u64,
    /// Options stored for getsockopt that do not change behaviour: (level, name) → value.
    stored: Mutex<HashMap<(i32, i32), Vec<u8>>>,
    /// SO_BROADCAST.
    broadcast: AtomicU32,
}

fn errno(e: SockError) -> Errno {
    Errno(e.errno())
}

fn int_value(v: &[u8]) -> Result<i32, Errno> {
    if v.len() < 4 {
        return Err(Errno::EINVAL);
    }
    Ok(i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
}

fn int(v: i32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

impl InetSocket {
    /// socket(domain, type, protocol) for AF_INET/AF_INET6.
    pub fn create(
        stack: &Stack,
        domain: i32,
        ty: i32,
        protocol: i32,
        flags: u32,
    ) -> Result<Arc<InetSocket>, Errno> {
        let v6 = domain == AF_INET6;
        let proto = match (ty, protocol) {
            (SOCK_STREAM, 0 | IPPROTO_TCP) => Proto::Tcp(stack.tcp_socket(v6)),
            (SOCK_DGRAM, 0 | IPPROTO_UDP) => Proto::Udp(stack.udp_socket(v6)),
            (SOCK_STREAM | SOCK_DGRAM, _) => return Err(Errno::EPROTONOSUPPORT),
            // SOCK_RAW needs CAP_NET_RAW, which the guest does not have.
            (3, _) => return Err(Errno::EPERM),
            _ => return Err(Errno::ESOCKTNOSUPPORT),
        };
        Ok(Self::wrap(proto, domain, flags))
    }

    fn wrap(proto: Proto, domain: i32, flags: u32) -> Arc<InetSocket> {
        let queue = Arc::new(WaitQueue::new());
        let q = queue.clone();
        let notify: netstack::stack::Notify = Arc::new(move || q.notify_all());
        match &proto {
            Proto::Tcp(s) => s.set_notify(notify),
            Proto::Udp(s) => s.set_notify(notify),
        }
        Arc::new(InetSocket {
            proto,
            domain,
            queue,
            flags: AtomicU32::new(libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK as u32)),
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
            stored: Mutex::new(HashMap::new()),
            broadcast: AtomicU32::new(0),
        })
    }

    /// This socket as a checkpoint keeps it (see `netstack::stack::checkpoint` for what
    /// a connection becomes).
    pub fn checkpoint(&self) -> crate::state::net::InetSocketState {
        let mut stored: Vec<((i32, i32), Vec<u8>)> = self
            .stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        stored.sort();
        crate::state::net::InetSocketState {
            domain: self.domain,
            flags: self.flags.load(Ordering::SeqCst),
            stored,
            broadcast: self.broadcast.load(Ordering::SeqCst) != 0,
            proto: match &self.proto {
                Proto::Tcp(t) => crate::state::net::ProtoState::Tcp(t.checkpoint()),
                Proto::Udp(u) => crate::state::net::ProtoState::Udp(u.checkpoint()),
            },
        }
    }

    /// A socket rebuilt from a checkpoint in `stack`.
    pub fn restore(
        stack: &Stack,
        state: &crate::state::net::InetSocketState,
    ) -> Result<Arc<InetSocket>, Errno> {
        if state.domain != AF_INET && state.domain != AF_INET6 {
            return Err(Errno::EINVAL);
        }
        let proto = match &state.proto {
            crate::state::net::ProtoState::Tcp(t) => {
                Proto::Tcp(stack.restore_tcp(t).map_err(errno)?)
            }
            crate::state::net::ProtoState::Udp(u) => {
                Proto::Udp(stack.restore_udp(u).map_err(errno)?)
            }
        };
        let sock = Self::wrap(proto, state.domain, 0);
        let keep = libc::O_RDWR as u32 | libc::O_NONBLOCK as u32;
        sock.flags
            .store(state.flags & keep | libc::O_RDWR as u32, Ordering::SeqCst);
        sock.broadcast
            .store(u32::from(state.broadcast), Ordering::SeqCst);
        let mut stored = sock.stored.lock().unwrap_or_else(|e| e.into_inner());
        for ((level, name), value) in state.stored.iter().take(64) {
            stored.insert((*level, *name), value[..value.len().min(64)].to_vec());
        }
        drop(stored);
        Ok(sock)
    }

    fn addr(&self, a: &[u8]) -> Result<SocketAddr, Errno> {
        sockaddr::parse(self.domain, a)
    }

    fn stored_get(&self, level: i32, name: i32) -> Vec<u8> {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(level, name))
            .cloned()
            .unwrap_or_else(|| int(0))
    }

    fn stored_set(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        if value.len() < 4 {
            return Err(Errno::EINVAL);
        }
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((level, name), value[..value.len().min(64)].to_vec());
        Ok(())
    }
}

impl FileDescription for InetSocket {
    fn save(
        &self,
        _cx: &mut crate::state::SaveContext,
    ) -> Result<crate::state::files::FileState, crate::state::StateError> {
        Ok(crate::state::files::FileState::Inet(self.checkpoint()))
    }

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

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        match cmd {
            FIONREAD => {
                let n = match &self.proto {
                    Proto::Tcp(s) => s.readable_bytes(),
                    Proto::Udp(s) => s.next_datagram_len(),
                };
                mm.write_u32(arg, n.min(i32::MAX as usize) as u32)?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn poll(&self) -> i16 {
        match &self.proto {
            Proto::Tcp(s) => s.poll(),
            Proto::Udp(s) => s.poll(),
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
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

impl SocketOps for InetSocket {
    fn domain(&self) -> i32 {
        self.domain
    }

    fn sock_type(&self) -> i32 {
        match self.proto {
            Proto::Tcp(_) => SOCK_STREAM,
            Proto::Udp(_) => SOCK_DGRAM,
        }
    }

    fn protocol(&self) -> i32 {
        match self.proto {
            Proto::Tcp(_) => IPPROTO_TCP,
            Proto::Udp(_) => IPPROTO_UDP,
        }
    }

    fn bind(&self, a: &[u8]) -> Result<(), Errno> {
        let addr = match self.addr(a) {
            // Linux: bind of an AF_INET6 socket to a sockaddr_in is EINVAL.
            Err(Errno::EAFNOSUPPORT) if self.domain == AF_INET6 => return Err(Errno::EINVAL),
            r => r?,
        };
        match &self.proto {
            Proto::Tcp(s) => s.bind(addr),
            Proto::Udp(s) => s.bind(addr),
        }
        .map_err(errno)
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        match &self.proto {
            Proto::Tcp(s) => s.listen(backlog).map_err(errno),
            Proto::Udp(_) => Err(Errno::EOPNOTSUPP),
        }
    }

    fn accept(&self, flags: u32) -> Result<(Arc<dyn FileDescription>, Vec<u8>), Errno> {
        let Proto::Tcp(s) = &self.proto else {
            return Err(Errno::EOPNOTSUPP);
        };
        let (conn, peer) = s.accept().map_err(errno)?;
        let file = Self::wrap(Proto::Tcp(conn), self.domain, flags);
        Ok((file, sockaddr::encode(self.domain, peer)))
    }

    fn connect(&self, a: &[u8]) -> Result<(), Errno> {
        match &self.proto {
            Proto::Tcp(s) => {
                let addr = self.addr(a)?;
                s.connect(addr).map_err(errno)
            }
            Proto::Udp(s) => {
                if sockaddr::family(a) == Some(AF_UNSPEC) {
                    return s.connect(None).map_err(errno);
                }
                let addr = self.addr(a)?;
                s.connect(Some(addr)).map_err(errno)
            }
        }
    }

    fn connect_status(&self) -> Result<(), Errno> {
        match &self.proto {
            Proto::Tcp(s) => s.connect_status().map_err(errno),
            Proto::Udp(_) => Ok(()),
        }
    }

    fn send(&self, data: &[u8], to: Option<&[u8]>, _flags: i32) -> Result<usize, Errno> {
        match &self.proto {
            // Linux ignores the address of a send on a connected stream socket.
            Proto::Tcp(s) => s.send(data).map_err(errno),
            Proto::Udp(s) => {
                let to = match to {
                    Some(a) => Some(self.addr(a)?),
                    None => None,
                };
                s.send_to(data, to).map_err(errno)
            }
        }
    }

    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<Received, Errno> {
        let peek = flags & MSG_PEEK != 0;
        match &self.proto {
            Proto::Tcp(s) => {
                let n = s.recv(buf, peek).map_err(errno)?;
                Ok(Received {
                    len: n,
                    full_len: n,
                    from: None,
                })
            }
            Proto::Udp(s) => {
                let r = s.recv_from(buf, peek).map_err(errno)?;
                Ok(Received {
                    len: r.len,
                    full_len: r.full_len,
                    from: Some(sockaddr::encode(self.domain, r.from)),
                })
            }
        }
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let (rd, wr) = match how {
            0 => (true, false),
            1 => (false, true),
            2 => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        match &self.proto {
            Proto::Tcp(s) => s.shutdown(rd, wr),
            Proto::Udp(s) => s.shutdown(rd, wr),
        }
        .map_err(errno)
    }

    fn sockname(&self) -> Result<Vec<u8>, Errno> {
        let a = match &self.proto {
            Proto::Tcp(s) => s.local_addr(),
            Proto::Udp(s) => s.local_addr(),
        };
        Ok(sockaddr::encode(self.domain, a))
    }

    fn peername(&self) -> Result<Vec<u8>, Errno> {
        let a = match &self.proto {
            Proto::Tcp(s) => s.peer_addr(),
            Proto::Udp(s) => s.peer_addr(),
        }
        .map_err(errno)?;
        Ok(sockaddr::encode(self.domain, a))
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let (rcv, snd) = match self.proto {
            Proto::Tcp(_) => TcpSocket::buffer_sizes(),
            Proto::Udp(_) => UdpSocket::buffer_sizes(),
        };
        match (level, name, &self.proto) {
            (SOL_SOCKET, SO_TYPE, _) => Ok(int(self.sock_type())),
            (SOL_SOCKET, SO_DOMAIN, _) => Ok(int(self.domain)),
            (SOL_SOCKET, SO_PROTOCOL, _) => Ok(int(self.protocol())),
            (SOL_SOCKET, SO_ERROR, Proto::Tcp(s)) => {
                Ok(int(s.take_error().map_or(0, |e| e.errno())))
            }
            (SOL_SOCKET, SO_ERROR, Proto::Udp(_)) => Ok(int(0)),
            (SOL_SOCKET, SO_ACCEPTCONN, Proto::Tcp(s)) => Ok(int(s.is_listening() as i32)),
            (SOL_SOCKET, SO_ACCEPTCONN, _) => Ok(int(0)),
            (SOL_SOCKET, SO_SNDBUF, _) => Ok(int(snd as i32)),
            (SOL_SOCKET, SO_RCVBUF, _) => Ok(int(rcv as i32)),
            (SOL_SOCKET, SO_REUSEADDR, Proto::Tcp(s)) => Ok(int(s.options().reuseaddr as i32)),
            (SOL_SOCKET, SO_REUSEADDR, Proto::Udp(s)) => Ok(int(s.reuseaddr() as i32)),
            (SOL_SOCKET, SO_KEEPALIVE, Proto::Tcp(s)) => Ok(int(s.options().keepalive as i32)),
            (SOL_SOCKET, SO_KEEPALIVE, _) => Ok(int(0)),
            (SOL_SOCKET, SO_BROADCAST, _) => Ok(int(self.broadcast.load(Ordering::Relaxed) as i32)),
            (SOL_SOCKET, n, _) if SOL_SOCKET_STORED.contains(&n) => Ok(self.stored_get(level, n)),
            (IPPROTO_TCP, TCP_NODELAY, Proto::Tcp(s)) => Ok(int(s.options().nodelay as i32)),
            (IPPROTO_TCP, n, Proto::Tcp(_)) if TCP_STORED.contains(&n) => {
                Ok(self.stored_get(level, n))
            }
            (IPPROTO_IPV6, IPV6_V6ONLY, Proto::Tcp(s)) if self.domain == AF_INET6 => {
                Ok(int(s.options().v6only as i32))
            }
            (IPPROTO_IPV6, IPV6_V6ONLY, _) if self.domain == AF_INET6 => {
                Ok(self.stored_get(level, IPV6_V6ONLY))
            }
            (IPPROTO_IPV6, n, _) if self.domain == AF_INET6 && IPV6_STORED.contains(&n) => {
                Ok(self.stored_get(level, n))
            }
            (IPPROTO_IP, n, _) if IP_STORED.contains(&n) => Ok(self.stored_get(level, n)),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        match (level, name, &self.proto) {
            (SOL_SOCKET, SO_REUSEADDR, Proto::Tcp(s)) => {
                let mut o = s.options();
                o.reuseaddr = int_value(value)? != 0;
                s.set_options(o);
                Ok(())
            }
            (SOL_SOCKET, SO_REUSEADDR, Proto::Udp(s)) => {
                s.set_reuseaddr(int_value(value)? != 0);
                Ok(())
            }
            (SOL_SOCKET, SO_KEEPALIVE, Proto::Tcp(s)) => {
                let mut o = s.options();
                o.keepalive = int_value(value)? != 0;
                s.set_options(o);
                Ok(())
            }
            (SOL_SOCKET, SO_KEEPALIVE, _) => int_value(value).map(|_| ()),
            (SOL_SOCKET, SO_BROADCAST, _) => {
                self.broadcast
                    .store((int_value(value)? != 0) as u32, Ordering::Relaxed);
                Ok(())
            }
            // Buffer sizes are fixed per socket here; accept the request as Linux
            // accepts any size and clamps it.
            (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF | 32 | 33, _) => int_value(value).map(|_| ()),
            (SOL_SOCKET, n, _) if SOL_SOCKET_STORED.contains(&n) => {
                self.stored_set(level, n, value)
            }
            (IPPROTO_TCP, TCP_NODELAY, Proto::Tcp(s)) => {
                let mut o = s.options();
                o.nodelay = int_value(value)? != 0;
                s.set_options(o);
                Ok(())
            }
            (IPPROTO_TCP, n, Proto::Tcp(_)) if TCP_STORED.contains(&n) => {
                self.stored_set(level, n, value)
            }
            (IPPROTO_IPV6, IPV6_V6ONLY, Proto::Tcp(s)) if self.domain == AF_INET6 => {
                let mut o = s.options();
                o.v6only = int_value(value)? != 0;
                s.set_options(o);
                Ok(())
            }
            (IPPROTO_IPV6, n, _)
                if self.domain == AF_INET6 && (n == IPV6_V6ONLY || IPV6_STORED.contains(&n)) =>
            {
                self.stored_set(level, n, value)
            }
            (IPPROTO_IP, n, _) if IP_STORED.contains(&n) => self.stored_set(level, n, value),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }
}

/// The family constants callers need.
pub fn is_inet(domain: i32) -> bool {
    domain == AF_INET || domain == AF_INET6
}

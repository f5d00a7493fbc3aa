//! Guest UDP sockets over smoltcp. A socket bound to the wildcard address receives on
//! both interfaces, so it has one smoltcp socket per interface; datagrams leave through
//! the interface that routes to their destination.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::pollbits::{IN, OUT};
use super::ports::Transport;
use super::{Inner, Notify, Shared, Side, SockError, SockResult};
use crate::acl::Protocol;

/// Datagrams and bytes queued per direction per interface.
const QUEUE_PACKETS: usize = 64;
const QUEUE_BYTES: usize = 256 * 1024;
/// The largest datagram (IPv4's limit; smoltcp does not fragment, so the link's MTU
/// bounds what leaves the sandbox).
const MAX_DATAGRAM: usize = 65507;

pub(crate) struct UdpEntry {
    pub(crate) bound: Option<SocketAddr>,
    holds_port: bool,
    handles: Vec<(Side, SocketHandle)>,
    peer: Option<SocketAddr>,
    reuseaddr: bool,
    rd_shut: bool,
    wr_shut: bool,
    pub notify: Option<Notify>,
    pub last: i16,
}

fn new_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; QUEUE_PACKETS],
            vec![0u8; QUEUE_BYTES],
        ),
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; QUEUE_PACKETS],
            vec![0u8; QUEUE_BYTES],
        ),
    )
}

impl Inner {
    fn udp_sock(&mut self, side: Side, h: SocketHandle) -> Option<&mut udp::Socket<'static>> {
        Some(self.sockets(side)?.get_mut::<udp::Socket>(h))
    }

    pub(crate) fn udp_readiness(&mut self, id: u64) -> i16 {
        let Some(e) = self.udp.get(&id) else {
            return 0;
        };
        let handles = e.handles.clone();
        let mut r = if e.wr_shut { 0 } else { OUT };
        if e.rd_shut {
            r |= IN;
        }
        for (side, h) in handles {
            if self.udp_sock(side, h).is_some_and(|s| s.can_recv()) {
                r |= IN;
            }
        }
        r
    }

    /// Bind `id` to `addr` (port 0: an ephemeral port) and open its smoltcp sockets.
    fn udp_bind(&mut self, id: u64, addr: SocketAddr) -> SockResult<()> {
        let reuse = self.udp.get(&id).map(|e| e.reuseaddr).unwrap_or(false);
        if !self.is_local(addr.ip()) {
            return Err(SockError::EADDRNOTAVAIL);
        }
        if addr.port() != 0 && !self.acl.check_listen(Protocol::Udp, addr).allowed {
            return Err(SockError::EACCES);
        }
        let port = self
            .ports
            .bind(Transport::Udp, id, addr.ip(), addr.port(), reuse)
            .ok_or(SockError::EADDRINUSE)?;
        let ep = IpListenEndpoint {
            addr: (!addr.ip().is_unspecified()).then(|| addr.ip().into()),
            port,
        };
        let mut handles = Vec::new();
        for side in self.sides_for(addr.ip()) {
            let mut s = new_socket();
            if s.bind(ep).is_err() {
                continue;
            }
            if let Some(set) = self.sockets(side) {
                handles.push((side, set.add(s)));
            }
        }
        if let Some(e) = self.udp.get_mut(&id) {
            e.bound = Some(SocketAddr::new(addr.ip(), port));
            e.holds_port = true;
            e.handles = handles;
        }
        Ok(())
    }

    fn udp_close(&mut self, id: u64) {
        let Some(e) = self.udp.remove(&id) else {
            return;
        };
        if let (true, Some(b)) = (e.holds_port, e.bound) {
            self.ports.release(Transport::Udp, id, b.port());
        }
        for (side, h) in e.handles {
            if let Some(set) = self.sockets(side) {
                set.remove(h);
            }
        }
    }
}

/// A guest UDP socket.
pub struct UdpSocket {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) v6: bool,
}

/// A received datagram's size and sender.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// Bytes copied.
    pub len: usize,
    /// The datagram's full size (larger than `len` when truncated).
    pub full_len: usize,
    pub from: SocketAddr,
}

impl UdpSocket {
    pub(crate) fn new(shared: Arc<Shared>, v6: bool) -> UdpSocket {
        let id = {
            let mut g = shared.lock();
            let id = g.next_id();
            g.udp.insert(
                id,
                UdpEntry {
                    bound: None,
                    holds_port: false,
                    handles: Vec::new(),
                    peer: None,
                    reuseaddr: false,
                    rd_shut: false,
                    wr_shut: false,
                    notify: None,
                    last: OUT,
                },
            );
            id
        };
        UdpSocket { shared, id, v6 }
    }

    fn any(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }

    pub fn set_notify(&self, notify: Notify) {
        let mut g = self.shared.lock();
        let bits = g.udp_readiness(self.id);
        if let Some(e) = g.udp.get_mut(&self.id) {
            e.notify = Some(notify);
            e.last = bits;
        }
    }

    pub fn poll(&self) -> i16 {
        self.shared.lock().udp_readiness(self.id)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, u64) -> SockResult<T>) -> SockResult<T> {
        let mut g = self.shared.lock();
        let r = f(&mut g, self.id);
        self.shared.finish(g);
        r
    }

    pub fn set_reuseaddr(&self, on: bool) {
        if let Some(e) = self.shared.lock().udp.get_mut(&self.id) {
            e.reuseaddr = on;
        }
    }

    pub fn reuseaddr(&self) -> bool {
        self.shared
            .lock()
            .udp
            .get(&self.id)
            .is_some_and(|e| e.reuseaddr)
    }

    pub fn bind(&self, addr: SocketAddr) -> SockResult<()> {
        self.with(|g, id| {
            if g.udp.get(&id).is_none_or(|e| e.bound.is_some()) {
                return Err(SockError::EINVAL);
            }
            g.udp_bind(id, addr)
        })
    }

    /// Fix the peer (connect(2)); `None` dissolves the association (AF_UNSPEC).
    pub fn connect(&self, peer: Option<SocketAddr>) -> SockResult<()> {
        let any = self.any();
        self.with(|g, id| {
            if let Some(p) = peer {
                g.route(p.ip())?;
                if g.udp.get(&id).is_some_and(|e| e.bound.is_none()) {
                    g.udp_bind(id, SocketAddr::new(any, 0))?;
                }
            }
            if let Some(e) = g.udp.get_mut(&id) {
                e.peer = peer;
            }
            Ok(())
        })
    }

    /// Send one datagram to `to` (or the connected peer).
    pub fn send_to(&self, data: &[u8], to: Option<SocketAddr>) -> SockResult<usize> {
        let any = self.any();
        self.with(|g, id| {
            let e = g.udp.get(&id).ok_or(SockError::EINVAL)?;
            if e.wr_shut {
                return Err(SockError::EPIPE);
            }
            let dst = to.or(e.peer).ok_or(SockError::EDESTADDRREQ)?;
            if data.len() > MAX_DATAGRAM {
                return Err(SockError::EMSGSIZE);
            }
            if dst.port() == 0 {
                return Err(SockError::EINVAL);
            }
            if e.bound.is_none() {
                g.udp_bind(id, SocketAddr::new(any, 0))?;
            }
            let side = g.route(dst.ip())?;
            let e = g.udp.get(&id).ok_or(SockError::EINVAL)?;
            let bound = e.bound.ok_or(SockError::EINVAL)?;
            let Some(&(_, handle)) = e.handles.iter().find(|(s, _)| *s == side) else {
                // Bound to loopback, sending out of the sandbox (Linux: EINVAL).
                return Err(SockError::EINVAL);
            };
            if side == Side::Ext {
                let local_ip = if bound.ip().is_unspecified() {
                    g.source_for(side, dst.ip()).ok_or(SockError::ENETUNREACH)?
                } else {
                    bound.ip()
                };
                let local = SocketAddr::new(local_ip, bound.port());
                if !g.acl.check_egress(Protocol::Udp, local, dst).allowed {
                    return Err(SockError::EPERM);
                }
            }
            let s = g.udp_sock(side, handle).ok_or(SockError::EINVAL)?;
            if data.len() > s.payload_send_capacity() {
                return Err(SockError::EMSGSIZE);
            }
            match s.send_slice(data, IpEndpoint::new(dst.ip().into(), dst.port())) {
                Ok(()) => Ok(data.len()),
                Err(udp::SendError::BufferFull) => Err(SockError::EAGAIN),
                Err(udp::SendError::Unaddressable) => Err(SockError::ENETUNREACH),
            }
        })
    }

    /// Receive one datagram (truncated to `buf`, as Linux does); EAGAIN when none.
    pub fn recv_from(&self, buf: &mut [u8], peek: bool) -> SockResult<Received> {
        self.with(|g, id| {
            let e = g.udp.get(&id).ok_or(SockError::EINVAL)?;
            let (handles, peer, rd_shut) = (e.handles.clone(), e.peer, e.rd_shut);
            if rd_shut {
                return Ok(Received {
                    len: 0,
                    full_len: 0,
                    from: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                });
            }
            for (side, h) in handles {
                let Some(s) = g.udp_sock(side, h) else {
                    continue;
                };
                while let Ok((payload, meta)) = s.peek() {
                    let from = SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port);
                    // A connected socket only hears its peer.
                    if peer.is_some_and(|p| p != from) {
                        let _ = s.recv();
                        continue;
                    }
                    let n = payload.len().min(buf.len());
                    buf[..n].copy_from_slice(&payload[..n]);
                    let full_len = payload.len();
                    if !peek {
                        let _ = s.recv();
                    }
                    return Ok(Received {
                        len: n,
                        full_len,
                        from,
                    });
                }
            }
            Err(SockError::EAGAIN)
        })
    }

    /// Size of the next datagram (FIONREAD).
    pub fn next_datagram_len(&self) -> usize {
        let mut g = self.shared.lock();
        let handles = g
            .udp
            .get(&self.id)
            .map(|e| e.handles.clone())
            .unwrap_or_default();
        for (side, h) in handles {
            if let Some(Ok((p, _))) = g.udp_sock(side, h).map(|s| s.peek()) {
                return p.len();
            }
        }
        0
    }

    pub fn shutdown(&self, read: bool, write: bool) -> SockResult<()> {
        self.with(|g, id| {
            let e = g.udp.get_mut(&id).ok_or(SockError::ENOTCONN)?;
            if e.peer.is_none() {
                return Err(SockError::ENOTCONN);
            }
            e.rd_shut |= read;
            e.wr_shut |= write;
            Ok(())
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .lock()
            .udp
            .get(&self.id)
            .and_then(|e| e.bound)
            .unwrap_or_else(|| SocketAddr::new(self.any(), 0))
    }

    pub fn peer_addr(&self) -> SockResult<SocketAddr> {
        self.shared
            .lock()
            .udp
            .get(&self.id)
            .and_then(|e| e.peer)
            .ok_or(SockError::ENOTCONN)
    }

    pub fn buffer_sizes() -> (usize, usize) {
        (QUEUE_BYTES, QUEUE_BYTES)
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        g.udp_close(self.id);
        self.shared.finish(g);
    }
}

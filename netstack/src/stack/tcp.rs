//! Guest TCP sockets over smoltcp.
//!
//! A guest socket is an entry in the stack (`TcpEntry`) with a state of its own; smoltcp
//! sockets are what it uses underneath. A smoltcp socket listens for one connection at a
//! time, so a listening guest socket keeps a small pool of listening smoltcp sockets on
//! each interface it listens on, moves the ones that complete a handshake to its accept
//! queue (bounded by the backlog) and tops the pool up after every poll.
//!
//! smoltcp does not say why a connection ended; the entry does: a connection that closes
//! without the guest having shut its side down was reset (ECONNRESET), a connect that
//! fails before the connect timeout was refused (ECONNREFUSED), after it timed out.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::pollbits::{ERR, HUP, IN, OUT, RDHUP};
use super::ports::Transport;
use super::{Inner, Notify, Shared, Side, SockError, SockResult};
use crate::acl::Protocol;

/// Per-connection buffers (Linux starts at 128 KiB receive windows too).
const RX_BUF: usize = 128 * 1024;
const TX_BUF: usize = 128 * 1024;
/// Listening smoltcp sockets kept ready per interface: how many handshakes can be in
/// flight at once before further SYNs are refused.
const LISTEN_POOL: usize = 16;
/// Give up on a connect after this long (Linux: about 127 s with 6 SYN retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(75);
/// A closed connection still draining after this long is reset.
const ORPHAN_LINGER: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    pub nodelay: bool,
    pub keepalive: bool,
    pub reuseaddr: bool,
    pub v6only: bool,
}

pub(crate) enum TcpState {
    /// Fresh, maybe bound.
    Idle,
    Listening {
        backlog: usize,
        /// Listening or mid-handshake smoltcp sockets.
        pool: Vec<(Side, SocketHandle)>,
        /// Established connections not yet accepted.
        ready: VecDeque<(Side, SocketHandle)>,
    },
    Connecting {
        side: Side,
        handle: SocketHandle,
        started: StdInstant,
    },
    Connected {
        side: Side,
        handle: SocketHandle,
    },
    /// A connect failed; the error waits in `error`.
    Failed,
}

pub(crate) struct TcpEntry {
    pub state: TcpState,
    /// The local address after bind (or the automatic bind of connect/listen).
    pub bound: Option<SocketAddr>,
    /// Whether `bound` holds a port in the port table.
    holds_port: bool,
    /// The pending SO_ERROR.
    pub error: Option<SockError>,
    rd_shut: bool,
    wr_shut: bool,
    /// Already reported as reset (reads then see end of file).
    reset_seen: bool,
    pub opts: TcpOptions,
    pub notify: Option<Notify>,
    pub last: i16,
}

impl TcpEntry {
    fn new(opts: TcpOptions) -> TcpEntry {
        TcpEntry {
            state: TcpState::Idle,
            bound: None,
            holds_port: false,
            error: None,
            rd_shut: false,
            wr_shut: false,
            reset_seen: false,
            opts,
            notify: None,
            last: 0,
        }
    }
}

fn new_socket(opts: &TcpOptions) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; RX_BUF]),
        tcp::SocketBuffer::new(vec![0u8; TX_BUF]),
    );
    apply_options(&mut s, opts);
    s
}

fn apply_options(s: &mut tcp::Socket<'static>, opts: &TcpOptions) {
    s.set_nagle_enabled(!opts.nodelay);
    // Linux's tcp_keepalive_time is 2 hours; programs that care set TCP_KEEPIDLE.
    s.set_keep_alive(
        opts.keepalive
            .then(|| smoltcp::time::Duration::from_secs(7200)),
    );
}

fn endpoint(e: IpEndpoint) -> SocketAddr {
    SocketAddr::new(e.addr.into(), e.port)
}

impl Inner {
    fn tcp_sock(&mut self, side: Side, h: SocketHandle) -> Option<&mut tcp::Socket<'static>> {
        Some(self.sockets(side)?.get_mut::<tcp::Socket>(h))
    }

    fn tcp_remove(&mut self, side: Side, h: SocketHandle) {
        if let Some(set) = self.sockets(side) {
            set.remove(h);
        }
    }

    /// poll(2) bits of a guest TCP socket.
    pub(crate) fn tcp_readiness(&mut self, id: u64) -> i16 {
        let Some(e) = self.tcp.get(&id) else {
            return HUP | ERR;
        };
        let err = if e.error.is_some() { ERR } else { 0 };
        let (rd_shut, wr_shut) = (e.rd_shut, e.wr_shut);
        match e.state {
            // Linux: an unconnected socket is writable and hung up.
            TcpState::Idle => OUT | HUP | err,
            TcpState::Listening { ref ready, .. } => {
                if ready.is_empty() {
                    0
                } else {
                    IN
                }
            }
            TcpState::Connecting { .. } => err,
            TcpState::Failed => OUT | HUP | err,
            TcpState::Connected { side, handle } => {
                let Some(s) = self.tcp_sock(side, handle) else {
                    return HUP | ERR;
                };
                let mut r = err;
                if s.can_recv() {
                    r |= IN;
                }
                if s.state() == tcp::State::Closed {
                    return r | IN | OUT | HUP | RDHUP;
                }
                if !s.may_recv() || rd_shut {
                    r |= IN | RDHUP;
                }
                if s.can_send() {
                    r |= OUT;
                }
                if (rd_shut || !s.may_recv()) && wr_shut {
                    r |= HUP;
                }
                r
            }
        }
    }

    /// Move completed handshakes to accept queues and refill listening pools. Returns
    /// whether packets may be waiting to go out (a refused connection's RST).
    pub(crate) fn service_listeners(&mut self) -> bool {
        let mut more = false;
        let ids: Vec<u64> = self
            .tcp
            .iter()
            .filter(|(_, e)| matches!(e.state, TcpState::Listening { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(entry) = self.tcp.get_mut(&id) else {
                continue;
            };
            let TcpState::Listening {
                backlog,
                ref mut pool,
                ref mut ready,
            } = entry.state
            else {
                continue;
            };
            let mut pool = std::mem::take(pool);
            let mut ready = std::mem::take(ready);
            let opts = entry.opts;
            let bound = entry.bound;
            let mut keep = Vec::with_capacity(pool.len());
            for (side, h) in pool.drain(..) {
                let Some(s) = self.tcp_sock(side, h) else {
                    continue;
                };
                match s.state() {
                    tcp::State::Listen | tcp::State::SynReceived => keep.push((side, h)),
                    tcp::State::Established | tcp::State::CloseWait => {
                        let (local, remote) = match (s.local_endpoint(), s.remote_endpoint()) {
                            (Some(l), Some(r)) => (endpoint(l), endpoint(r)),
                            _ => {
                                s.abort();
                                continue;
                            }
                        };
                        let allowed = side == Side::Lo
                            || self.acl.check_ingress(Protocol::Tcp, local, remote).allowed;
                        let Some(s) = self.tcp_sock(side, h) else {
                            continue;
                        };
                        // An IPV6_V6ONLY listener takes no IPv4 connection (on Linux
                        // the SYN would find no socket and be answered with a RST).
                        let refused_v4 = opts.v6only && remote.is_ipv4();
                        if !allowed || refused_v4 || ready.len() >= backlog {
                            s.abort();
                            self.orphans.push((side, h, StdInstant::now()));
                            more = true;
                        } else {
                            ready.push_back((side, h));
                        }
                    }
                    _ => self.tcp_remove(side, h),
                }
            }
            pool = keep;
            // Refill.
            if let Some(local) = bound {
                let listen_ep = IpListenEndpoint {
                    addr: (!local.ip().is_unspecified()).then(|| local.ip().into()),
                    port: local.port(),
                };
                let want = LISTEN_POOL.min(backlog.max(1));
                for side in self.sides_for(local.ip()) {
                    let listening = pool
                        .iter()
                        .filter(|(s, h)| {
                            *s == side
                                && self
                                    .sockets(side)
                                    .map(|set| set.get::<tcp::Socket>(*h).is_listening())
                                    .unwrap_or(false)
                        })
                        .count();
                    for _ in listening..want {
                        // Handshakes in flight are bounded too (a SYN flood meets RSTs).
                        if pool.len() >= backlog + LISTEN_POOL {
                            break;
                        }
                        let mut s = new_socket(&opts);
                        if s.listen(listen_ep).is_err() {
                            break;
                        }
                        if let Some(set) = self.sockets(side) {
                            pool.push((side, set.add(s)));
                        }
                    }
                }
            }
            if let Some(TcpState::Listening {
                pool: p, ready: r, ..
            }) = self.tcp.get_mut(&id).map(|e| &mut e.state)
            {
                *p = pool;
                *r = ready;
            }
        }
        more
    }

    /// Notice connects that completed or failed and connections that were reset.
    pub(crate) fn update_connections(&mut self) {
        let ids: Vec<u64> = self
            .tcp
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.state,
                    TcpState::Connecting { .. } | TcpState::Connected { .. }
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(e) = self.tcp.get(&id) else { continue };
            match e.state {
                TcpState::Connecting {
                    side,
                    handle,
                    started,
                } => {
                    let Some(s) = self.tcp_sock(side, handle) else {
                        continue;
                    };
                    match s.state() {
                        tcp::State::SynSent | tcp::State::SynReceived => {
                            if started.elapsed() >= CONNECT_TIMEOUT {
                                s.abort();
                                self.fail_connect(id, side, handle, SockError::ETIMEDOUT);
                            }
                        }
                        tcp::State::Closed => {
                            let err =
                                if started.elapsed() + Duration::from_secs(1) >= CONNECT_TIMEOUT {
                                    SockError::ETIMEDOUT
                                } else {
                                    SockError::ECONNREFUSED
                                };
                            self.fail_connect(id, side, handle, err);
                        }
                        _ => {
                            if let Some(e) = self.tcp.get_mut(&id) {
                                e.state = TcpState::Connected { side, handle };
                            }
                        }
                    }
                }
                TcpState::Connected { side, handle } => {
                    let closed = self
                        .tcp_sock(side, handle)
                        .is_some_and(|s| s.state() == tcp::State::Closed);
                    if let Some(e) = self.tcp.get_mut(&id) {
                        if closed && !e.wr_shut && !e.reset_seen && e.error.is_none() {
                            e.error = Some(SockError::ECONNRESET);
                            e.reset_seen = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn fail_connect(&mut self, id: u64, side: Side, handle: SocketHandle, err: SockError) {
        self.tcp_remove(side, handle);
        if let Some(e) = self.tcp.get_mut(&id) {
            e.state = TcpState::Failed;
            e.error = Some(err);
        }
    }

    /// Drop closed connections the guest no longer holds; reset ones that linger.
    pub(crate) fn reap_orphans(&mut self) {
        let mut orphans = std::mem::take(&mut self.orphans);
        orphans.retain(|&(side, h, since)| {
            let Some(s) = self.tcp_sock(side, h) else {
                return false;
            };
            if s.state() == tcp::State::Closed {
                self.tcp_remove(side, h);
                return false;
            }
            if since.elapsed() > ORPHAN_LINGER {
                s.abort();
            }
            true
        });
        self.orphans.append(&mut orphans);
    }

    fn tcp_close(&mut self, id: u64) {
        let Some(e) = self.tcp.remove(&id) else {
            return;
        };
        if e.holds_port {
            if let Some(b) = e.bound {
                self.ports.release(Transport::Tcp, id, b.port());
            }
        }
        let now = StdInstant::now();
        match e.state {
            TcpState::Idle | TcpState::Failed => {}
            TcpState::Listening { pool, ready, .. } => {
                for (side, h) in pool.into_iter().chain(ready) {
                    if let Some(s) = self.tcp_sock(side, h) {
                        s.abort();
                        self.orphans.push((side, h, now));
                    }
                }
            }
            TcpState::Connecting { side, handle, .. } => {
                if let Some(s) = self.tcp_sock(side, handle) {
                    s.abort();
                    self.orphans.push((side, handle, now));
                }
            }
            TcpState::Connected { side, handle } => {
                if let Some(s) = self.tcp_sock(side, handle) {
                    // Linux resets a connection closed with unread data.
                    if s.recv_queue() > 0 {
                        s.abort();
                    } else {
                        s.close();
                    }
                    self.orphans.push((side, handle, now));
                }
            }
        }
    }
}

/// A guest TCP socket. Dropping it closes it (the connection shuts down gracefully).
pub struct TcpSocket {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) v6: bool,
}

impl TcpSocket {
    pub(crate) fn new(shared: Arc<Shared>, v6: bool) -> TcpSocket {
        let id = {
            let mut g = shared.lock();
            let id = g.next_id();
            g.tcp.insert(
                id,
                TcpEntry::new(TcpOptions {
                    v6only: false,
                    ..Default::default()
                }),
            );
            id
        };
        TcpSocket { shared, id, v6 }
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// Set the function called when readiness may have changed.
    pub fn set_notify(&self, notify: Notify) {
        let mut g = self.shared.lock();
        let bits = g.tcp_readiness(self.id);
        if let Some(e) = g.tcp.get_mut(&self.id) {
            e.notify = Some(notify);
            e.last = bits;
        }
    }

    /// poll(2) bits.
    pub fn poll(&self) -> i16 {
        self.shared.lock().tcp_readiness(self.id)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, u64) -> SockResult<T>) -> SockResult<T> {
        let mut g = self.shared.lock();
        let r = f(&mut g, self.id);
        self.shared.finish(g);
        r
    }

    pub fn bind(&self, addr: SocketAddr) -> SockResult<()> {
        self.with(|g, id| {
            let reuse = match g.tcp.get(&id) {
                Some(e) if e.bound.is_some() || !matches!(e.state, TcpState::Idle) => {
                    return Err(SockError::EINVAL)
                }
                Some(e) => e.opts.reuseaddr,
                None => return Err(SockError::EINVAL),
            };
            if !g.is_local(addr.ip()) {
                return Err(SockError::EADDRNOTAVAIL);
            }
            if addr.port() != 0 && !g.acl.check_listen(Protocol::Tcp, addr).allowed {
                return Err(SockError::EACCES);
            }
            let port = g
                .ports
                .bind(Transport::Tcp, id, addr.ip(), addr.port(), reuse)
                .ok_or(SockError::EADDRINUSE)?;
            if let Some(e) = g.tcp.get_mut(&id) {
                e.bound = Some(SocketAddr::new(addr.ip(), port));
                e.holds_port = true;
            }
            Ok(())
        })
    }

    fn unspecified(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }

    pub fn listen(&self, backlog: i32) -> SockResult<()> {
        let any = self.unspecified();
        self.with(|g, id| {
            let backlog = backlog.clamp(1, 4096) as usize;
            let e = g.tcp.get_mut(&id).ok_or(SockError::EINVAL)?;
            match e.state {
                TcpState::Listening {
                    backlog: ref mut b, ..
                } => {
                    *b = backlog;
                    return Ok(());
                }
                TcpState::Idle => {}
                _ => return Err(SockError::EINVAL),
            }
            if e.bound.is_none() {
                let reuse = e.opts.reuseaddr;
                let port = g
                    .ports
                    .bind(Transport::Tcp, id, any, 0, reuse)
                    .ok_or(SockError::EADDRINUSE)?;
                if let Some(e) = g.tcp.get_mut(&id) {
                    e.bound = Some(SocketAddr::new(any, port));
                    e.holds_port = true;
                }
            }
            let port = g.tcp.get(&id).and_then(|e| e.bound).map_or(0, |b| b.port());
            if !g.ports.listen(Transport::Tcp, id, port) {
                return Err(SockError::EADDRINUSE);
            }
            if let Some(e) = g.tcp.get_mut(&id) {
                e.state = TcpState::Listening {
                    backlog,
                    pool: Vec::new(),
                    ready: VecDeque::new(),
                };
            }
            g.service_listeners();
            Ok(())
        })
    }

    /// Take an established connection; EAGAIN when none is waiting.
    pub fn accept(&self) -> SockResult<(TcpSocket, SocketAddr)> {
        let mut g = self.shared.lock();
        let e = g.tcp.get_mut(&self.id).ok_or(SockError::EINVAL)?;
        let opts = e.opts;
        let TcpState::Listening { ref mut ready, .. } = e.state else {
            return Err(SockError::EINVAL);
        };
        let Some((side, handle)) = ready.pop_front() else {
            return Err(SockError::EAGAIN);
        };
        let peer = g
            .tcp_sock(side, handle)
            .and_then(|s| s.remote_endpoint())
            .map(endpoint);
        let local = g
            .tcp_sock(side, handle)
            .and_then(|s| s.local_endpoint())
            .map(endpoint);
        let id = g.next_id();
        let mut entry = TcpEntry::new(opts);
        entry.state = TcpState::Connected { side, handle };
        entry.bound = local;
        g.tcp.insert(id, entry);
        // The accepted connection may already be closed by the peer: report it as such.
        let peer = peer.unwrap_or_else(|| SocketAddr::new(self.unspecified(), 0));
        self.shared.finish(g);
        Ok((
            TcpSocket {
                shared: self.shared.clone(),
                id,
                v6: self.v6,
            },
            peer,
        ))
    }

    /// Start connecting: EINPROGRESS when under way (check `connect_status` once the
    /// socket polls writable), or why it cannot start.
    pub fn connect(&self, remote: SocketAddr) -> SockResult<()> {
        let r = self.with(|g, id| {
            let e = g.tcp.get(&id).ok_or(SockError::EINVAL)?;
            match e.state {
                TcpState::Idle => {}
                TcpState::Connecting { .. } => return Err(SockError::EALREADY),
                TcpState::Connected { .. } => return Err(SockError::EISCONN),
                TcpState::Listening { .. } => return Err(SockError::EISCONN),
                TcpState::Failed => {
                    // Linux (inet_stream_connect): a connect after one that failed in the
                    // background reports that failure, or ECONNABORTED once SO_ERROR took
                    // it, and leaves the socket unconnected for the next try.
                    let e = g.tcp.get_mut(&id).ok_or(SockError::EINVAL)?;
                    e.state = TcpState::Idle;
                    return Err(e.error.take().unwrap_or(SockError::ECONNABORTED));
                }
            }
            if remote.port() == 0 || remote.ip().is_unspecified() {
                return Err(SockError::ECONNREFUSED);
            }
            let (bound, opts) = (e.bound, e.opts);
            let side = g.route(remote.ip())?;
            let local_ip = match bound {
                Some(b) if !b.ip().is_unspecified() => b.ip(),
                _ => g
                    .source_for(side, remote.ip())
                    .ok_or(SockError::ENETUNREACH)?,
            };
            if side == Side::Ext {
                let probe = SocketAddr::new(local_ip, bound.map_or(0, |b| b.port()));
                if !g.acl.check_egress(Protocol::Tcp, probe, remote).allowed {
                    // As when a netfilter OUTPUT rule rejects the SYN: the connect fails
                    // with ECONNREFUSED, reported the way a refused handshake is (EINPROGRESS,
                    // then POLLOUT|POLLERR|POLLHUP and SO_ERROR for a non-blocking socket).
                    // No packet leaves.
                    if let Some(e) = g.tcp.get_mut(&id) {
                        e.state = TcpState::Failed;
                        e.error = Some(SockError::ECONNREFUSED);
                    }
                    return Ok(());
                }
            }
            let port = match bound {
                Some(b) => b.port(),
                None => {
                    let any = if remote.is_ipv4() {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    };
                    let p = g
                        .ports
                        .bind(Transport::Tcp, id, any, 0, false)
                        .ok_or(SockError::EADDRNOTAVAIL)?;
                    if let Some(e) = g.tcp.get_mut(&id) {
                        e.bound = Some(SocketAddr::new(any, p));
                        e.holds_port = true;
                    }
                    p
                }
            };
            let mut s = new_socket(&opts);
            let now = g.now();
            let _ = now;
            let cx = match side {
                Side::Lo => g.lo.iface.context(),
                Side::Ext => match g.ext.as_mut() {
                    Some(x) => x.iface.context(),
                    None => return Err(SockError::ENETUNREACH),
                },
            };
            s.connect(
                cx,
                IpEndpoint::new(remote.ip().into(), remote.port()),
                IpListenEndpoint {
                    addr: Some(local_ip.into()),
                    port,
                },
            )
            .map_err(|_| SockError::EADDRNOTAVAIL)?;
            let set = g.sockets(side).ok_or(SockError::ENETUNREACH)?;
            let handle = set.add(s);
            if let Some(e) = g.tcp.get_mut(&id) {
                e.state = TcpState::Connecting {
                    side,
                    handle,
                    started: StdInstant::now(),
                };
                e.error = None;
            }
            Ok(())
        });
        // Linux answers EINPROGRESS even when the handshake could finish at once
        // (loopback): the caller waits for POLLOUT, which is already there.
        r.and(Err(SockError::EINPROGRESS))
    }

    /// Where a connect stands: Ok once established, EINPROGRESS while under way, or
    /// the error it failed with (consumed, as SO_ERROR is).
    pub fn connect_status(&self) -> SockResult<()> {
        let mut g = self.shared.lock();
        let e = g.tcp.get_mut(&self.id).ok_or(SockError::EINVAL)?;
        match e.state {
            TcpState::Connected { .. } => Ok(()),
            TcpState::Connecting { .. } => Err(SockError::EINPROGRESS),
            TcpState::Failed => {
                e.state = TcpState::Idle;
                Err(e.error.take().unwrap_or(SockError::ECONNABORTED))
            }
            _ => Err(SockError::ENOTCONN),
        }
    }

    /// SO_ERROR: the pending error, cleared.
    pub fn take_error(&self) -> Option<SockError> {
        self.shared
            .lock()
            .tcp
            .get_mut(&self.id)
            .and_then(|e| e.error.take())
    }

    pub fn send(&self, data: &[u8]) -> SockResult<usize> {
        self.with(|g, id| {
            let e = g.tcp.get_mut(&id).ok_or(SockError::EPIPE)?;
            let (side, handle) = match e.state {
                TcpState::Connected { side, handle } => (side, handle),
                TcpState::Connecting { .. } => return Err(SockError::EAGAIN),
                TcpState::Failed => return Err(e.error.take().unwrap_or(SockError::EPIPE)),
                _ => return Err(SockError::EPIPE),
            };
            if e.wr_shut {
                return Err(SockError::EPIPE);
            }
            let pending = e.error.take();
            let s = g.tcp_sock(side, handle).ok_or(SockError::EPIPE)?;
            if s.state() == tcp::State::Closed {
                return Err(pending.unwrap_or(SockError::EPIPE));
            }
            if let Some(err) = pending {
                if let Some(e) = g.tcp.get_mut(&id) {
                    e.error = Some(err);
                }
            }
            let s = g.tcp_sock(side, handle).ok_or(SockError::EPIPE)?;
            if !s.may_send() {
                return Err(SockError::EPIPE);
            }
            match s.send_slice(data) {
                Ok(0) if !data.is_empty() => Err(SockError::EAGAIN),
                Ok(n) => Ok(n),
                Err(_) => Err(SockError::EPIPE),
            }
        })
    }

    /// Read what has arrived; 0 at end of stream; EAGAIN when nothing has yet.
    pub fn recv(&self, buf: &mut [u8], peek: bool) -> SockResult<usize> {
        self.with(|g, id| {
            let e = g.tcp.get_mut(&id).ok_or(SockError::ENOTCONN)?;
            let (side, handle) = match e.state {
                TcpState::Connected { side, handle } => (side, handle),
                TcpState::Connecting { .. } => return Err(SockError::EAGAIN),
                TcpState::Failed => return Err(e.error.take().unwrap_or(SockError::ENOTCONN)),
                _ => return Err(SockError::ENOTCONN),
            };
            if e.rd_shut {
                return Ok(0);
            }
            let pending = e.error;
            let s = g.tcp_sock(side, handle).ok_or(SockError::ENOTCONN)?;
            if s.can_recv() && !buf.is_empty() {
                let r = if peek {
                    s.peek_slice(buf)
                } else {
                    s.recv_slice(buf)
                };
                return r.map_err(|_| SockError::ECONNRESET);
            }
            if let Some(err) = pending {
                if let Some(e) = g.tcp.get_mut(&id) {
                    e.error = None;
                }
                return Err(err);
            }
            let s = g.tcp_sock(side, handle).ok_or(SockError::ENOTCONN)?;
            if !s.may_recv() || buf.is_empty() {
                return Ok(0);
            }
            Err(SockError::EAGAIN)
        })
    }

    /// Put the socket in the failed state with `error` pending (a restored connection:
    /// reset).
    pub(crate) fn fail(&self, error: Option<SockError>) {
        let mut g = self.shared.lock();
        if let Some(e) = g.tcp.get_mut(&self.id) {
            e.state = TcpState::Failed;
            e.error = error;
        }
        self.shared.finish(g);
    }

    /// Bytes waiting to be read (FIONREAD).
    pub fn readable_bytes(&self) -> usize {
        let mut g = self.shared.lock();
        match g.tcp.get(&self.id).map(|e| &e.state) {
            Some(&TcpState::Connected { side, handle }) => {
                g.tcp_sock(side, handle).map_or(0, |s| s.recv_queue())
            }
            _ => 0,
        }
    }

    pub fn shutdown(&self, read: bool, write: bool) -> SockResult<()> {
        self.with(|g, id| {
            let e = g.tcp.get_mut(&id).ok_or(SockError::ENOTCONN)?;
            let (side, handle) = match e.state {
                TcpState::Connected { side, handle } => (side, handle),
                TcpState::Listening { .. } if read => {
                    // Linux: SHUT_RD on a listener stops it accepting (wakes accept).
                    return Ok(());
                }
                _ => return Err(SockError::ENOTCONN),
            };
            if read {
                e.rd_shut = true;
            }
            if write && !e.wr_shut {
                e.wr_shut = true;
                if let Some(s) = g.tcp_sock(side, handle) {
                    s.close();
                }
            }
            Ok(())
        })
    }

    /// The local address (the unspecified address and port 0 before any bind).
    pub fn local_addr(&self) -> SocketAddr {
        let mut g = self.shared.lock();
        let connected = match g.tcp.get(&self.id).map(|e| &e.state) {
            Some(&TcpState::Connected { side, handle })
            | Some(&TcpState::Connecting { side, handle, .. }) => g
                .tcp_sock(side, handle)
                .and_then(|s| s.local_endpoint())
                .map(endpoint),
            _ => None,
        };
        connected
            .or_else(|| g.tcp.get(&self.id).and_then(|e| e.bound))
            .unwrap_or_else(|| SocketAddr::new(self.unspecified(), 0))
    }

    pub fn peer_addr(&self) -> SockResult<SocketAddr> {
        let mut g = self.shared.lock();
        match g.tcp.get(&self.id).map(|e| &e.state) {
            Some(&TcpState::Connected { side, handle }) => g
                .tcp_sock(side, handle)
                .and_then(|s| s.remote_endpoint())
                .map(endpoint)
                .ok_or(SockError::ENOTCONN),
            _ => Err(SockError::ENOTCONN),
        }
    }

    pub fn is_listening(&self) -> bool {
        matches!(
            self.shared.lock().tcp.get(&self.id).map(|e| &e.state),
            Some(TcpState::Listening { .. })
        )
    }

    pub fn options(&self) -> TcpOptions {
        self.shared
            .lock()
            .tcp
            .get(&self.id)
            .map(|e| e.opts)
            .unwrap_or_default()
    }

    /// Change options; they apply to the current connection and to connections accepted
    /// later.
    pub fn set_options(&self, opts: TcpOptions) {
        let mut g = self.shared.lock();
        let state = g.tcp.get_mut(&self.id).map(|e| {
            e.opts = opts;
            match e.state {
                TcpState::Connected { side, handle }
                | TcpState::Connecting { side, handle, .. } => Some((side, handle)),
                _ => None,
            }
        });
        if let Some(Some((side, handle))) = state {
            if let Some(s) = g.tcp_sock(side, handle) {
                apply_options(s, &opts);
            }
        }
    }

    pub fn buffer_sizes() -> (usize, usize) {
        (RX_BUF, TX_BUF)
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        g.tcp_close(self.id);
        self.shared.finish(g);
    }
}

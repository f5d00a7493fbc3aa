//! One AF_UNIX socket inside the sentry, as Linux's af_unix.c models it: a receive queue
//! its peers append to, a peer pointer, a state (closed, listening, connected), one set of
//! shutdown bits that mixes its own shutdown(2) with what its peer did, and a pending
//! error. Names and address lookups are the caller's business (`super::UnixSocket`).
//!
//! A send charges its bytes to the sender (Linux's sk_wmem_alloc) until the receiver
//! consumes them; the sender can send while the charge is under its SO_SNDBUF. A datagram
//! receiver that is not connected back to the sender also refuses more than
//! `MAX_DGRAM_QLEN` queued messages; senders that found it full (and stream connects that
//! found a backlog full) park their endpoint on the receiver's `peer_waiters`, which the
//! receiver wakes when the queue shrinks.
//!
//! Nothing here blocks: a call that would block answers EAGAIN, and the syscall layer
//! waits on the socket file's queue (`queue`), which is notified on every change of this
//! endpoint's readiness.
//!
//! Lock order: an endpoint's `inner` lock is a leaf, except that `lock_two` takes two of
//! them, in increasing `ino` order. Queues are notified after the locks are released.
//! Peers hold each other strongly; `release` (the last close) drops the released
//! endpoint's own peer, which breaks every cycle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::addr::UnixAddr;
use super::queue::{dispose, Message, RecvQueue, Rights, Taken};
use crate::abi::Errno;
use crate::vfs::file::{
    POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRBAND, POLLWRNORM,
};
use crate::waiter::WaitQueue;

/// sk_shutdown bits.
pub const RCV_SHUTDOWN: u8 = 1;
pub const SEND_SHUTDOWN: u8 = 2;
const SHUTDOWN_MASK: u8 = 3;

/// Linux's default socket buffer sizes (net.core.wmem_default, rmem_default).
pub const DEFAULT_BUF: usize = 212_992;
/// net.unix.max_dgram_qlen: datagrams a socket queues from senders it is not connected to.
pub const MAX_DGRAM_QLEN: usize = 10;
/// What a queued message costs its sender beyond its bytes (an sk_buff's truesize).
const MSG_OVERHEAD: usize = 576;
/// A datagram may be at most SO_SNDBUF less this (Linux unix_dgram_sendmsg).
const DGRAM_HEADROOM: usize = 32;

/// Socket inode numbers (sockfs), apart from the inet sockets' range.
static NEXT_INO: AtomicU64 = AtomicU64::new(1 << 32);

/// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockType {
    Stream,
    Dgram,
    SeqPacket,
}

impl SockType {
    /// socket(2)'s type (without flags): Linux unix_create turns SOCK_RAW into SOCK_DGRAM;
    /// other known types are ESOCKTNOSUPPORT, unknown ones EINVAL.
    pub fn from_raw(ty: i32) -> Result<SockType, Errno> {
        match ty {
            1 => Ok(SockType::Stream),
            2 | 3 => Ok(SockType::Dgram),
            5 => Ok(SockType::SeqPacket),
            0..=10 => Err(Errno::ESOCKTNOSUPPORT),
            _ => Err(Errno::EINVAL),
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            SockType::Stream => 1,
            SockType::Dgram => 2,
            SockType::SeqPacket => 5,
        }
    }

    /// Stream and seqpacket sockets listen, accept and connect to one peer.
    pub fn connection_oriented(self) -> bool {
        self != SockType::Dgram
    }
}

/// `struct ucred`: who is at the other end (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Ucred {
    /// What an unconnected socket reports (Linux cred_to_ucred with no credentials).
    pub const NONE: Ucred = Ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };

    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12);
        b.extend_from_slice(&self.pid.to_le_bytes());
        b.extend_from_slice(&self.uid.to_le_bytes());
        b.extend_from_slice(&self.gid.to_le_bytes());
        b
    }
}

/// Connection state (a datagram socket is only ever `Closed`; its peer says the rest).
enum State {
    Closed,
    Listening {
        backlog: usize,
        /// Connections made but not yet accepted (Linux's embryos).
        pending: VecDeque<Arc<Endpoint>>,
    },
    Connected,
}

struct Inner {
    state: State,
    /// The connected peer (stream, seqpacket) or the default destination (datagram).
    peer: Option<Arc<Endpoint>>,
    addr: Option<UnixAddr>,
    rx: RecvQueue,
    shutdown: u8,
    /// sk_err: reported once, by the next receive or SO_ERROR.
    err: Option<Errno>,
    /// Closed for good (its file is gone).
    dead: bool,
    peer_cred: Option<Ucred>,
    sndbuf: usize,
    rcvbuf: usize,
    /// Endpoints waiting for room in this one's queue or backlog.
    peer_waiters: Vec<Weak<Endpoint>>,
}

impl Inner {
    fn new(state: State) -> Inner {
        Inner {
            state,
            peer: None,
            addr: None,
            rx: RecvQueue::default(),
            shutdown: 0,
            err: None,
            dead: false,
            peer_cred: None,
            sndbuf: DEFAULT_BUF,
            rcvbuf: DEFAULT_BUF,
            peer_waiters: Vec::new(),
        }
    }

    /// Linux unix_may_send: a socket connected elsewhere takes datagrams only from its peer.
    fn may_send_from(&self, sender: &Endpoint) -> bool {
        self.peer
            .as_ref()
            .is_none_or(|p| std::ptr::eq(p.as_ref(), sender))
    }

    fn is_peer(&self, ep: &Endpoint) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| std::ptr::eq(p.as_ref(), ep))
    }

    fn wait_for_room(&mut self, ep: &Arc<Endpoint>) {
        self.peer_waiters.retain(|w| w.strong_count() > 0);
        if !self
            .peer_waiters
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(ep)))
        {
            self.peer_waiters.push(Arc::downgrade(ep));
        }
    }
}

/// One AF_UNIX socket.
pub struct Endpoint {
    pub ty: SockType,
    /// st_ino of the socket file; also orders `lock_two`.
    pub ino: u64,
    /// Notified on every change of this endpoint's readiness.
    pub queue: WaitQueue,
    /// Bytes (with overhead) this endpoint has queued at receivers, not yet consumed.
    wmem: AtomicUsize,
    inner: Mutex<Inner>,
}

/// Give senders back what their consumed messages cost, and wake them.
fn credit(msgs: &[Message]) {
    for m in msgs {
        if let Some(s) = m.sender.upgrade() {
            let _ = s
                .wmem
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    Some(w.saturating_sub(m.charge))
                });
            s.queue.notify_all();
        }
    }
}

fn wake(waiters: Vec<Weak<Endpoint>>) {
    for w in waiters.iter().filter_map(Weak::upgrade) {
        w.queue.notify_all();
    }
}

/// Lock two distinct endpoints in `ino` order; the guards come back as (a, b).
fn lock_two<'a>(
    a: &'a Endpoint,
    b: &'a Endpoint,
) -> (MutexGuard<'a, Inner>, MutexGuard<'a, Inner>) {
    if a.ino < b.ino {
        let ga = a.lock();
        (ga, b.lock())
    } else {
        let gb = b.lock();
        (a.lock(), gb)
    }
}

impl Endpoint {
    fn with(ty: SockType, inner: Inner) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            ty,
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
            queue: WaitQueue::new(),
            wmem: AtomicUsize::new(0),
            inner: Mutex::new(inner),
        })
    }

    /// A fresh, unnamed, unconnected socket.
    pub fn new(ty: SockType) -> Arc<Endpoint> {
        Endpoint::with(ty, Inner::new(State::Closed))
    }

    /// socketpair(2): two sockets connected to each other, each seeing `cred` as its peer.
    pub fn pair(ty: SockType, cred: Ucred) -> (Arc<Endpoint>, Arc<Endpoint>) {
        let a = Endpoint::new(ty);
        let b = Endpoint::new(ty);
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut g = x.lock();
            if ty.connection_oriented() {
                g.state = State::Connected;
            }
            g.peer = Some(y.clone());
            g.peer_cred = Some(cred);
        }
        (a, b)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wmem(&self) -> usize {
        self.wmem.load(Ordering::Acquire)
    }

    fn charge(&self, n: usize) {
        self.wmem.fetch_add(n, Ordering::AcqRel);
    }

    pub fn addr(&self) -> Option<UnixAddr> {
        self.lock().addr.clone()
    }

    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Name the socket (EINVAL if it has a name already).
    pub fn set_addr(&self, addr: UnixAddr) -> Result<(), Errno> {
        let mut g = self.lock();
        if g.addr.is_some() {
            return Err(Errno::EINVAL);
        }
        g.addr = Some(addr);
        Ok(())
    }

    /// The peer's name (None: the peer is unnamed); ENOTCONN without a peer.
    pub fn peer_addr(&self) -> Result<Option<UnixAddr>, Errno> {
        let peer = self.lock().peer.clone().ok_or(Errno::ENOTCONN)?;
        Ok(peer.addr())
    }

    pub fn peer_cred(&self) -> Ucred {
        self.lock().peer_cred.unwrap_or(Ucred::NONE)
    }

    /// SO_ERROR: the pending error, cleared.
    pub fn take_error(&self) -> Option<Errno> {
        self.lock().err.take()
    }

    pub fn is_listening(&self) -> bool {
        matches!(self.lock().state, State::Listening { .. })
    }

    pub fn sndbuf(&self) -> usize {
        self.lock().sndbuf
    }

    pub fn rcvbuf(&self) -> usize {
        self.lock().rcvbuf
    }

    pub fn set_sndbuf(&self, n: usize) {
        self.lock().sndbuf = n;
        self.queue.notify_all();
    }

    pub fn set_rcvbuf(&self, n: usize) {
        self.lock().rcvbuf = n;
    }

    /// FIONREAD: unread bytes (stream, seqpacket) or the next datagram's length.
    pub fn inq(&self) -> Result<usize, Errno> {
        let g = self.lock();
        match (&g.state, self.ty) {
            (State::Listening { .. }, _) => Err(Errno::EINVAL),
            (_, SockType::Dgram) => Ok(g.rx.next_len()),
            _ => Ok(g.rx.unread()),
        }
    }

    /// TIOCOUTQ: what this socket has sent that its receivers have not consumed.
    pub fn outq(&self) -> usize {
        self.wmem()
    }

    /// listen(2) (Linux unix_listen); `cred` becomes what connecting sockets see.
    pub fn listen(&self, backlog: usize, cred: Ucred) -> Result<(), Errno> {
        if !self.ty.connection_oriented() {
            return Err(Errno::EOPNOTSUPP);
        }
        let waiters = {
            let mut g = self.lock();
            if g.addr.is_none() {
                return Err(Errno::EINVAL);
            }
            let grew = match &mut g.state {
                State::Closed => {
                    g.state = State::Listening {
                        backlog,
                        pending: VecDeque::new(),
                    };
                    false
                }
                State::Listening { backlog: b, .. } => {
                    let grew = backlog > *b;
                    *b = backlog;
                    grew
                }
                State::Connected => return Err(Errno::EINVAL),
            };
            g.peer_cred = Some(cred);
            if grew {
                std::mem::take(&mut g.peer_waiters)
            } else {
                Vec::new()
            }
        };
        wake(waiters);
        Ok(())
    }

    /// Stream/seqpacket connect to `listener` (Linux unix_stream_connect): the connection
    /// is made at once and waits in the listener's backlog for accept. EAGAIN when the
    /// backlog is full (the caller may wait on this endpoint's queue).
    pub fn connect(self: &Arc<Self>, listener: &Arc<Endpoint>, cred: Ucred) -> Result<(), Errno> {
        if Arc::ptr_eq(self, listener) {
            let mut g = self.lock();
            let State::Listening { backlog, pending } = &g.state else {
                return Err(Errno::ECONNREFUSED);
            };
            if g.shutdown & RCV_SHUTDOWN != 0 {
                return Err(Errno::ECONNREFUSED);
            }
            if pending.len() > *backlog {
                g.wait_for_room(self);
                return Err(Errno::EAGAIN);
            }
            // A listening socket cannot connect.
            return Err(Errno::EINVAL);
        }
        let (mut me, mut l) = lock_two(self, listener);
        if l.dead || l.shutdown & RCV_SHUTDOWN != 0 {
            return Err(Errno::ECONNREFUSED);
        }
        let (addr, listener_cred) = (l.addr.clone(), l.peer_cred);
        let full = match &l.state {
            State::Listening { backlog, pending } => pending.len() > *backlog,
            _ => return Err(Errno::ECONNREFUSED),
        };
        if full {
            l.wait_for_room(self);
            return Err(Errno::EAGAIN);
        }
        match me.state {
            State::Closed => {}
            State::Connected => return Err(Errno::EISCONN),
            State::Listening { .. } => return Err(Errno::EINVAL),
        }
        let mut child = Inner::new(State::Connected);
        child.peer = Some(self.clone());
        child.addr = addr;
        child.peer_cred = Some(cred);
        let child = Endpoint::with(self.ty, child);
        me.state = State::Connected;
        me.peer = Some(child.clone());
        me.peer_cred = listener_cred;
        if let State::Listening { pending, .. } = &mut l.state {
            pending.push_back(child);
        }
        drop((me, l));
        listener.queue.notify_all();
        self.queue.notify_all();
        Ok(())
    }

    /// accept(2): the oldest pending connection. EAGAIN when there is none; EINVAL when
    /// not listening, or (blocking) when the listener was shut down for reading.
    pub fn accept(&self, nonblocking: bool) -> Result<Arc<Endpoint>, Errno> {
        if !self.ty.connection_oriented() {
            return Err(Errno::EOPNOTSUPP);
        }
        let (conn, waiters) = {
            let mut g = self.lock();
            let shut = g.shutdown & RCV_SHUTDOWN != 0;
            let State::Listening { pending, .. } = &mut g.state else {
                return Err(Errno::EINVAL);
            };
            match pending.pop_front() {
                Some(c) => (c, std::mem::take(&mut g.peer_waiters)),
                None if shut && !nonblocking => return Err(Errno::EINVAL),
                None => return Err(Errno::EAGAIN),
            }
        };
        wake(waiters);
        Ok(conn)
    }

    /// Datagram connect(2): set (or with None, clear) the default destination.
    pub fn connect_dgram(self: &Arc<Self>, target: Option<Arc<Endpoint>>) -> Result<(), Errno> {
        let old = match &target {
            Some(t) if !Arc::ptr_eq(t, self) => {
                let (mut me, them) = lock_two(self, t);
                if them.dead {
                    return Err(Errno::ECONNREFUSED);
                }
                if !them.may_send_from(self) {
                    return Err(Errno::EPERM);
                }
                me.peer.replace(t.clone())
            }
            Some(t) => {
                let mut me = self.lock();
                if !me.may_send_from(self) {
                    return Err(Errno::EPERM);
                }
                me.peer.replace(t.clone())
            }
            None => self.lock().peer.take(),
        };
        if let Some(old) = old {
            if !target.as_ref().is_some_and(|t| Arc::ptr_eq(t, &old)) {
                self.dgram_disconnected(&old);
            }
        }
        self.queue.notify_all();
        Ok(())
    }

    /// Linux unix_dgram_disconnected: a datagram socket left `old`; what it had queued is
    /// dropped, and if `old` was connected back, it learns of it (ECONNRESET).
    fn dgram_disconnected(&self, old: &Arc<Endpoint>) {
        let (purged, waiters) = {
            let mut g = self.lock();
            if g.rx.is_empty() {
                return;
            }
            (g.rx.drain(), std::mem::take(&mut g.peer_waiters))
        };
        credit(&purged);
        dispose(purged);
        wake(waiters);
        let mut o = old.lock();
        if !o.dead && o.is_peer(self) {
            o.err = Some(Errno::ECONNRESET);
            drop(o);
            old.queue.notify_all();
        }
    }

    /// Stream send (Linux unix_stream_sendmsg): as much as the send buffer takes, in
    /// chunks of at most half of it; `rights` go with the first. `to_given`: the caller
    /// named an address.
    pub fn send_stream(
        self: &Arc<Self>,
        data: &[u8],
        to_given: bool,
        mut rights: Rights,
    ) -> Result<usize, Errno> {
        let (peer, from) = {
            let g = self.lock();
            if to_given {
                return Err(match g.state {
                    State::Connected => Errno::EISCONN,
                    _ => Errno::EOPNOTSUPP,
                });
            }
            let peer = g.peer.clone().ok_or(Errno::ENOTCONN)?;
            if g.shutdown & SEND_SHUTDOWN != 0 {
                return Err(Errno::EPIPE);
            }
            (peer, g.addr.clone())
        };
        let mut sent = 0;
        while sent < data.len() {
            let sndbuf = self.sndbuf();
            if self.wmem() >= sndbuf {
                return if sent > 0 {
                    Ok(sent)
                } else {
                    Err(Errno::EAGAIN)
                };
            }
            let size = (data.len() - sent).min((sndbuf / 2).saturating_sub(64).max(1));
            let mut p = peer.lock();
            if p.dead || p.shutdown & RCV_SHUTDOWN != 0 {
                return if sent > 0 {
                    Ok(sent)
                } else {
                    Err(Errno::EPIPE)
                };
            }
            let charge = size + MSG_OVERHEAD;
            self.charge(charge);
            p.rx.push(Message {
                data: data[sent..sent + size].to_vec(),
                from: from.clone(),
                sender: Arc::downgrade(self),
                charge,
                rights: std::mem::take(&mut rights),
            });
            drop(p);
            peer.queue.notify_all();
            sent += size;
        }
        Ok(sent)
    }

    /// Datagram send (Linux unix_dgram_sendmsg), also seqpacket's (to its peer only).
    /// `resolve` names the destination when the caller gave an address.
    pub fn send_message(
        self: &Arc<Self>,
        data: &[u8],
        resolve: Option<&dyn Fn() -> Result<Arc<Endpoint>, Errno>>,
        rights: Rights,
    ) -> Result<usize, Errno> {
        let seqpacket = self.ty == SockType::SeqPacket;
        let (peer, sndbuf, from) = {
            let mut g = self.lock();
            if seqpacket {
                if let Some(e) = g.err.take() {
                    return Err(e);
                }
                if !matches!(g.state, State::Connected) {
                    return Err(Errno::ENOTCONN);
                }
            }
            (g.peer.clone(), g.sndbuf, g.addr.clone())
        };
        let resolve = if seqpacket { None } else { resolve };
        let peer = match resolve {
            Some(_) => None,
            None => Some(peer.ok_or(Errno::ENOTCONN)?),
        };
        if data.len() > sndbuf.saturating_sub(DGRAM_HEADROOM) {
            return Err(Errno::EMSGSIZE);
        }
        {
            let mut g = self.lock();
            if let Some(e) = g.err.take() {
                return Err(e);
            }
            if g.shutdown & SEND_SHUTDOWN != 0 {
                return Err(Errno::EPIPE);
            }
        }
        if self.wmem() >= sndbuf {
            return Err(Errno::EAGAIN);
        }
        let target = match (peer, resolve) {
            (Some(p), _) => p,
            (None, Some(r)) => r()?,
            (None, None) => return Err(Errno::ENOTCONN),
        };
        let mut t = target.lock();
        if !t.may_send_from(self) {
            return Err(Errno::EPERM);
        }
        if t.dead {
            drop(t);
            if seqpacket {
                return Err(Errno::EPIPE);
            }
            let mut g = self.lock();
            if g.peer.as_ref().is_some_and(|p| Arc::ptr_eq(p, &target)) {
                g.peer = None;
                drop(g);
                self.dgram_disconnected(&target);
            }
            return Err(Errno::ECONNREFUSED);
        }
        if t.shutdown & RCV_SHUTDOWN != 0 {
            return Err(Errno::EPIPE);
        }
        let to_self = Arc::ptr_eq(&target, self);
        if !to_self && !t.is_peer(self) && t.rx.len() > MAX_DGRAM_QLEN {
            t.wait_for_room(self);
            return Err(Errno::EAGAIN);
        }
        let charge = data.len() + MSG_OVERHEAD;
        self.charge(charge);
        t.rx.push(Message {
            data: data.to_vec(),
            from,
            sender: Arc::downgrade(self),
            charge,
            rights,
        });
        drop(t);
        target.queue.notify_all();
        Ok(data.len())
    }

    /// Receive (Linux unix_stream_read_generic / unix_dgram_recvmsg). `nonblocking` only
    /// matters where Linux answers differently when the caller would wait.
    pub fn recv(&self, buf: &mut [u8], peek: bool, nonblocking: bool) -> Result<Taken, Errno> {
        let mut g = self.lock();
        let taken = match self.ty {
            SockType::Stream => {
                if !matches!(g.state, State::Connected) {
                    return Err(Errno::EINVAL);
                }
                g.rx.read_stream(buf, peek)
            }
            SockType::SeqPacket | SockType::Dgram => {
                if self.ty == SockType::SeqPacket && !matches!(g.state, State::Connected) {
                    return Err(Errno::ENOTCONN);
                }
                g.rx.read_message(buf, peek)
            }
        };
        let Some(taken) = taken else {
            if let Some(e) = g.err.take() {
                return Err(e);
            }
            if g.shutdown & RCV_SHUTDOWN != 0 {
                // A non-blocking datagram socket says EAGAIN even then (only seqpacket
                // signals end of file without waiting).
                if self.ty != SockType::Dgram || !nonblocking {
                    return Ok(Taken {
                        len: 0,
                        full_len: 0,
                        from: None,
                        consumed: Vec::new(),
                        rights: Vec::new(),
                    });
                }
            }
            return Err(Errno::EAGAIN);
        };
        let waiters = if !taken.consumed.is_empty() && self.ty != SockType::Stream {
            std::mem::take(&mut g.peer_waiters)
        } else {
            Vec::new()
        };
        drop(g);
        credit(&taken.consumed);
        wake(waiters);
        Ok(taken)
    }

    /// shutdown(2): `how` is SHUT_RD, SHUT_WR or SHUT_RDWR. A connected stream or
    /// seqpacket peer gets the mirror image (our SHUT_WR is its end of input).
    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let mode = match how {
            0..=2 => how as u8 + 1,
            _ => return Err(Errno::EINVAL),
        };
        let (peer, waiters) = {
            let mut g = self.lock();
            g.shutdown |= mode;
            (g.peer.clone(), std::mem::take(&mut g.peer_waiters))
        };
        self.queue.notify_all();
        wake(waiters);
        if let Some(p) = peer.filter(|_| self.ty.connection_oriented()) {
            let mut peer_mode = 0;
            if mode & RCV_SHUTDOWN != 0 {
                peer_mode |= SEND_SHUTDOWN;
            }
            if mode & SEND_SHUTDOWN != 0 {
                peer_mode |= RCV_SHUTDOWN;
            }
            p.lock().shutdown |= peer_mode;
            p.queue.notify_all();
        }
        Ok(())
    }

    /// The socket's last file is closed (Linux unix_release_sock). A connected peer can
    /// neither send nor receive any more and sees ECONNRESET if we left data unread (or
    /// were never accepted: `embryo`). Pending connections are released too.
    pub fn release(&self, embryo: bool) {
        let (peer, pending, rx, waiters) = {
            let mut g = self.lock();
            if g.dead {
                return;
            }
            g.dead = true;
            g.shutdown = SHUTDOWN_MASK;
            let pending = match std::mem::replace(&mut g.state, State::Closed) {
                State::Listening { pending, .. } => pending.into_iter().collect(),
                _ => Vec::new(),
            };
            (
                g.peer.take(),
                pending,
                g.rx.drain(),
                std::mem::take(&mut g.peer_waiters),
            )
        };
        if let Some(p) = peer {
            if self.ty.connection_oriented() {
                let mut pg = p.lock();
                pg.shutdown = SHUTDOWN_MASK;
                if !rx.is_empty() || embryo {
                    pg.err = Some(Errno::ECONNRESET);
                }
            }
            p.queue.notify_all();
        }
        credit(&rx);
        dispose(rx);
        wake(waiters);
        for conn in pending {
            conn.release(true);
        }
        self.queue.notify_all();
    }

    /// Readiness (Linux unix_poll for streams, unix_dgram_poll for the others).
    pub fn poll(self: &Arc<Self>) -> i16 {
        let mut mask = 0;
        let (peer, writable) = {
            let g = self.lock();
            if g.err.is_some() {
                mask |= POLLERR;
            }
            if g.shutdown == SHUTDOWN_MASK {
                mask |= POLLHUP;
            }
            if g.shutdown & RCV_SHUTDOWN != 0 {
                mask |= POLLRDHUP | POLLIN | POLLRDNORM;
            }
            let readable = match &g.state {
                State::Listening { pending, .. } => !pending.is_empty(),
                _ => !g.rx.is_empty(),
            };
            if readable {
                mask |= POLLIN | POLLRDNORM;
            }
            if self.ty.connection_oriented() && matches!(g.state, State::Closed) {
                mask |= POLLHUP;
            }
            let writable = !matches!(g.state, State::Listening { .. })
                && self.wmem().saturating_mul(4) <= g.sndbuf;
            let peer = match self.ty {
                SockType::Dgram if writable => g.peer.clone(),
                _ => None,
            };
            (peer, writable)
        };
        let mut writable = writable;
        if let Some(p) = peer.filter(|p| !Arc::ptr_eq(p, self)) {
            // A datagram peer that is not connected back may have no room for us.
            let mut pg = p.lock();
            if !pg.is_peer(self) && pg.rx.len() > MAX_DGRAM_QLEN {
                pg.wait_for_room(self);
                writable = false;
            }
        }
        if writable {
            mask |= POLLOUT | POLLWRNORM | POLLWRBAND;
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRED: Ucred = Ucred {
        pid: 7,
        uid: 0,
        gid: 0,
    };

    fn recv(ep: &Endpoint, n: usize) -> Result<Vec<u8>, Errno> {
        let mut b = vec![0u8; n];
        let t = ep.recv(&mut b, false, true)?;
        b.truncate(t.len);
        Ok(b)
    }

    /// A socket file for the tests: closing it releases the endpoint.
    struct File(Arc<Endpoint>);

    impl Drop for File {
        fn drop(&mut self) {
            self.0.release(false);
        }
    }

    impl crate::vfs::file::FileDescription for File {
        fn stat(&self) -> Result<crate::vfs::file::Stat, Errno> {
            Ok(crate::vfs::anon_stat())
        }
        fn path(&self) -> String {
            String::new()
        }
        fn status_flags(&self) -> u32 {
            0
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn closing_a_deep_chain_of_queued_sockets_does_not_recurse() {
        // Each socket's queue holds the next socket's only file.
        let head = Endpoint::new(SockType::Dgram);
        let mut cur = head.clone();
        for _ in 0..200_000 {
            let next = Endpoint::new(SockType::Dgram);
            let file: Arc<dyn crate::vfs::file::FileDescription> = Arc::new(File(next.clone()));
            let target = cur.clone();
            let to = move || Ok(target.clone());
            assert_eq!(next.send_message(b"", Some(&to), vec![file]), Ok(0));
            cur = next;
        }
        let last = Arc::downgrade(&cur);
        drop(cur);
        head.release(false);
        assert!(last.upgrade().is_none(), "the whole chain is gone");
    }

    fn listener(ty: SockType, backlog: usize) -> Arc<Endpoint> {
        let l = Endpoint::new(ty);
        l.set_addr(UnixAddr::Abstract(b"l".to_vec())).expect("bind");
        l.listen(backlog, CRED).expect("listen");
        l
    }

    #[test]
    fn stream_pair_eof_and_reset() {
        let (a, b) = Endpoint::pair(SockType::Stream, CRED);
        assert_eq!(a.send_stream(b"ab", false, Vec::new()), Ok(2));
        assert_eq!(a.send_stream(b"cd", false, Vec::new()), Ok(2));
        assert_eq!(recv(&b, 10), Ok(b"abcd".to_vec()));
        assert_eq!(recv(&b, 10), Err(Errno::EAGAIN));
        assert_eq!(a.outq(), 0, "consumed data is credited back");
        a.shutdown(1).expect("shutdown");
        assert_eq!(recv(&b, 10), Ok(Vec::new()), "end of file after SHUT_WR");
        assert_eq!(a.send_stream(b"x", false, Vec::new()), Err(Errno::EPIPE));
        assert_eq!(b.poll() & (POLLIN | POLLRDHUP), POLLIN | POLLRDHUP);
        // Closing with unread data resets the peer.
        assert_eq!(b.send_stream(b"unread", false, Vec::new()), Ok(6));
        a.release(false);
        assert_eq!(recv(&b, 10), Err(Errno::ECONNRESET));
        assert_eq!(recv(&b, 10), Ok(Vec::new()));
        assert_eq!(b.poll() & POLLHUP, POLLHUP);
        assert_eq!(b.send_stream(b"x", false, Vec::new()), Err(Errno::EPIPE));
    }

    #[test]
    fn a_full_send_buffer_says_eagain_until_read() {
        let (a, b) = Endpoint::pair(SockType::Stream, CRED);
        let big = vec![1u8; 1 << 20];
        let n = a.send_stream(&big, false, Vec::new()).expect("send");
        assert!(n > 0 && n < big.len());
        assert_eq!(a.send_stream(b"x", false, Vec::new()), Err(Errno::EAGAIN));
        assert_eq!(a.poll() & POLLOUT, 0);
        assert_eq!(recv(&b, 1 << 20).map(|v| v.len()), Ok(n));
        assert_eq!(a.poll() & POLLOUT, POLLOUT);
    }

    #[test]
    fn connect_backlog_and_accept() {
        let l = listener(SockType::Stream, 1);
        let c1 = Endpoint::new(SockType::Stream);
        let c2 = Endpoint::new(SockType::Stream);
        let c3 = Endpoint::new(SockType::Stream);
        assert_eq!(l.poll() & (POLLIN | POLLOUT), 0);
        assert_eq!(c1.connect(&l, CRED), Ok(()));
        assert_eq!(c1.connect(&l, CRED), Err(Errno::EISCONN));
        assert_eq!(c2.connect(&l, CRED), Ok(()));
        assert_eq!(
            c3.connect(&l, CRED),
            Err(Errno::EAGAIN),
            "backlog 1 holds 2"
        );
        assert_eq!(l.poll() & POLLIN, POLLIN);
        // Data sent before accept waits in the new connection.
        assert_eq!(c1.send_stream(b"early", false, Vec::new()), Ok(5));
        let s1 = l.accept(true).expect("accept");
        assert_eq!(recv(&s1, 8), Ok(b"early".to_vec()));
        assert_eq!(
            s1.addr(),
            l.addr(),
            "an accepted socket has the listener's name"
        );
        assert_eq!(c1.peer_addr(), Ok(l.addr()));
        assert_eq!(s1.peer_cred(), CRED);
        assert_eq!(c3.connect(&l, CRED), Ok(()));
        // Closing the listener resets connections nobody accepted.
        l.release(false);
        assert_eq!(recv(&c2, 8), Err(Errno::ECONNRESET));
        assert_eq!(recv(&c1, 8), Err(Errno::EAGAIN), "accepted ones live on");
        let c4 = Endpoint::new(SockType::Stream);
        assert_eq!(c4.connect(&l, CRED), Err(Errno::ECONNREFUSED));
    }

    #[test]
    fn listening_needs_a_name_and_a_connection_type() {
        let s = Endpoint::new(SockType::Stream);
        assert_eq!(s.listen(5, CRED), Err(Errno::EINVAL));
        let d = Endpoint::new(SockType::Dgram);
        assert_eq!(d.listen(5, CRED), Err(Errno::EOPNOTSUPP));
        assert_eq!(d.accept(true).err(), Some(Errno::EOPNOTSUPP));
        assert_eq!(s.accept(true).err(), Some(Errno::EINVAL));
        let l = listener(SockType::Stream, 5);
        assert_eq!(l.connect(&l, CRED), Err(Errno::EINVAL));
        assert_eq!(s.connect(&s, CRED), Err(Errno::ECONNREFUSED));
    }

    #[test]
    fn datagrams_keep_boundaries_and_respect_queue_limits() {
        let r = Endpoint::new(SockType::Dgram);
        let s = Endpoint::new(SockType::Dgram);
        s.set_addr(UnixAddr::Path(b"/s".to_vec())).expect("bind");
        let to = |t: &Arc<Endpoint>| {
            let t = t.clone();
            move || Ok(t.clone())
        };
        let f = to(&r);
        let mut sent = 0;
        while s.send_message(b"hi", Some(&f), Vec::new()) == Ok(2) {
            sent += 1;
        }
        assert_eq!(sent, MAX_DGRAM_QLEN + 1);
        assert_eq!(
            s.poll() & POLLOUT,
            POLLOUT,
            "not connected: poll cannot tell"
        );
        let mut b = [0u8; 1];
        let t = r.recv(&mut b, false, true).expect("recv");
        assert_eq!((t.len, t.full_len), (1, 2));
        assert_eq!(t.from, Some(UnixAddr::Path(b"/s".to_vec())));
        assert_eq!(s.send_message(b"hi", Some(&f), Vec::new()), Ok(2));
        assert_eq!(
            s.send_message(&vec![0u8; DEFAULT_BUF], Some(&f), Vec::new()),
            Err(Errno::EMSGSIZE)
        );
        assert_eq!(s.send_message(b"x", None, Vec::new()), Err(Errno::ENOTCONN));
        // A socket connected elsewhere takes nothing from us.
        let other = Endpoint::new(SockType::Dgram);
        r.connect_dgram(Some(other.clone())).expect("connect");
        assert_eq!(
            s.send_message(b"x", Some(&f), Vec::new()),
            Err(Errno::EPERM)
        );
    }

    #[test]
    fn a_dead_datagram_peer_is_refused_then_forgotten() {
        let (a, b) = Endpoint::pair(SockType::Dgram, CRED);
        assert_eq!(a.send_message(b"one", None, Vec::new()), Ok(3));
        assert_eq!(b.send_message(b"two", None, Vec::new()), Ok(3));
        b.release(false);
        assert_eq!(a.poll() & (POLLHUP | POLLIN), POLLIN);
        assert_eq!(
            a.send_message(b"x", None, Vec::new()),
            Err(Errno::ECONNREFUSED)
        );
        assert_eq!(a.send_message(b"x", None, Vec::new()), Err(Errno::ENOTCONN));
        assert_eq!(recv(&a, 8), Err(Errno::EAGAIN), "queued data went with it");
    }

    #[test]
    fn seqpacket_truncates_and_ends() {
        let (a, b) = Endpoint::pair(SockType::SeqPacket, CRED);
        assert_eq!(a.send_message(b"hello", None, Vec::new()), Ok(5));
        assert_eq!(a.send_message(b"world", None, Vec::new()), Ok(5));
        assert_eq!(b.inq(), Ok(10));
        assert_eq!(recv(&b, 3), Ok(b"hel".to_vec()));
        assert_eq!(recv(&b, 10), Ok(b"world".to_vec()));
        a.release(false);
        assert_eq!(recv(&b, 10), Ok(Vec::new()));
        assert_eq!(b.send_message(b"x", None, Vec::new()), Err(Errno::EPIPE));
        let lone = Endpoint::new(SockType::SeqPacket);
        assert_eq!(recv(&lone, 1), Err(Errno::ENOTCONN));
        assert_eq!(
            lone.send_message(b"x", None, Vec::new()),
            Err(Errno::ENOTCONN)
        );
        assert_eq!(lone.poll() & (POLLHUP | POLLOUT), POLLHUP | POLLOUT);
    }
}

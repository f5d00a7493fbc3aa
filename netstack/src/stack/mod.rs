//! The sandbox's TCP/IP stack: two smoltcp interfaces (the in-sandbox loopback and, when
//! the sandbox has a network, its link to the pod network), the guest-facing sockets, and
//! the thread that moves packets.
//!
//! Packets move in two places. A guest thread that changes a socket (connect, send, recv,
//! close) polls the interfaces itself before it returns, so loopback traffic and the first
//! packets of a send cost no thread hop. The stack's own thread waits for frames on the
//! link and for smoltcp's timers (retransmission, delayed ACK, TIME-WAIT) and polls then.
//!
//! Readiness: every guest socket has a notifier (the sentry wakes the socket's wait queue
//! with it). After each poll the stack recomputes each socket's poll bits and calls the
//! notifier of those whose bits changed. Notifiers run after the stack's lock is released.
//!
//! Lock order: the stack's one mutex (`Shared::inner`) is taken by guest threads and by
//! the stack thread; nothing else is locked while it is held except inside smoltcp.

pub mod checkpoint;
mod device;
mod dns_service;
mod error;
pub mod filter;
mod interfaces;
mod ports;
mod relay;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant as StdInstant};

use ipnet::IpNet;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::acl::Acl;
use crate::link::Link;
use device::{FilteredLink, Loopback};
pub use dns_service::DNS_PROXY_ADDR;
pub use error::{SockError, SockResult};
use filter::LinkFilter;
pub use interfaces::{InterfaceInfo, LINK_INDEX, LOOPBACK_INDEX};
use ports::PortTable;
pub use tcp::TcpSocket;
pub use udp::UdpSocket;

/// Packets taken from each interface per poll round before egress runs.
const INGRESS_BUDGET: usize = 256;

/// Called when a socket's readiness may have changed.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Readiness bits, as poll(2) spells them.
pub mod pollbits {
    pub const IN: i16 = libc::POLLIN;
    pub const OUT: i16 = libc::POLLOUT;
    pub const ERR: i16 = libc::POLLERR;
    pub const HUP: i16 = libc::POLLHUP;
    pub const RDHUP: i16 = libc::POLLRDHUP;
}

/// The sandbox's link to the pod network and the addresses it holds there.
pub struct LinkConfig {
    pub link: Box<dyn Link>,
    /// The interface's name as the guest sees it (the adopted one's, e.g. `eth0`).
    pub name: String,
    /// The sandbox's addresses with their prefix (e.g. 10.201.3.2/24).
    pub addrs: Vec<IpNet>,
    pub gateway_v4: Option<Ipv4Addr>,
    pub gateway_v6: Option<Ipv6Addr>,
}

/// How a stack is built.
#[derive(Default)]
pub struct StackConfig {
    /// None: loopback only (`--network none`).
    pub link: Option<LinkConfig>,
    /// Resolvers the DNS proxy forwards to when the policy names none.
    pub dns_upstream: Vec<SocketAddr>,
}

/// Which interface a socket lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Lo,
    Ext,
}

pub(crate) struct Iface<D> {
    pub iface: Interface,
    pub dev: D,
    pub sockets: SocketSet<'static>,
}

/// Everything the stack's lock protects.
pub(crate) struct Inner {
    pub lo: Iface<Loopback>,
    pub ext: Option<Iface<FilteredLink>>,
    /// The sandbox's own addresses on the link (also reachable through loopback).
    pub ext_addrs: Vec<IpAddr>,
    pub acl: Arc<Acl>,
    pub ports: PortTable,
    next_id: u64,
    pub tcp: HashMap<u64, tcp::TcpEntry>,
    pub udp: HashMap<u64, udp::UdpEntry>,
    /// Connections the guest closed that smoltcp is still shutting down.
    pub orphans: Vec<(Side, SocketHandle, StdInstant)>,
    epoch: StdInstant,
    dns: Option<dns_service::DnsService>,
    /// When the stack thread will next wake on its own (None: only for I/O).
    thread_deadline: Option<StdInstant>,
    shutdown: bool,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    wake: UnixDatagram,
}

/// A sandbox's network stack. Dropping it stops its thread; sockets still open keep
/// their state but no longer move packets.
pub struct Stack {
    shared: Arc<Shared>,
    acl: Arc<Acl>,
    interfaces: Vec<InterfaceInfo>,
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn cidr(net: &IpNet) -> IpCidr {
    IpCidr::new(IpAddress::from(net.addr()), net.prefix_len())
}

impl Stack {
    /// Build the stack and start its thread.
    pub fn new(config: StackConfig, acl: Arc<Acl>) -> io::Result<Stack> {
        let epoch = StdInstant::now();
        let now = smoltcp::time::Instant::from_micros(0);
        let mut lo_dev = Loopback::default();
        let mut lo_cfg = Config::new(HardwareAddress::Ip);
        lo_cfg.random_seed = random_u64();
        let mut lo_iface = Interface::new(lo_cfg, &mut lo_dev, now);
        let mut ext_addrs = Vec::new();
        let mut poll_fd = None;
        let interfaces = interfaces::interfaces(config.link.as_ref().map(|lc| {
            (
                lc.name.as_str(),
                lc.link.mac(),
                lc.link.mtu(),
                &lc.addrs[..],
            )
        }));
        let ext = match config.link {
            None => None,
            Some(lc) => {
                poll_fd = Some(lc.link.as_fd().try_clone_to_owned()?);
                let mac = EthernetAddress(lc.link.mac());
                let filter = LinkFilter::new(acl.clone());
                let mut dev = FilteredLink::new(lc.link, filter);
                let mut cfg = Config::new(HardwareAddress::Ethernet(mac));
                cfg.random_seed = random_u64();
                let mut iface = Interface::new(cfg, &mut dev, now);
                let mut too_many = false;
                iface.update_ip_addrs(|a| {
                    for net in &lc.addrs {
                        too_many |= a.push(cidr(net)).is_err();
                    }
                });
                if too_many {
                    return Err(io::Error::other("too many addresses for the sandbox link"));
                }
                ext_addrs = lc.addrs.iter().map(|n| n.addr()).collect();
                if let Some(gw) = lc.gateway_v4 {
                    iface
                        .routes_mut()
                        .add_default_ipv4_route(gw)
                        .map_err(|_| io::Error::other("route table full"))?;
                }
                if let Some(gw) = lc.gateway_v6 {
                    iface
                        .routes_mut()
                        .add_default_ipv6_route(gw)
                        .map_err(|_| io::Error::other("route table full"))?;
                }
                Some(Iface {
                    iface,
                    dev,
                    sockets: SocketSet::new(Vec::new()),
                })
            }
        };
        let mut too_many = false;
        lo_iface.update_ip_addrs(|a| {
            too_many |= a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).is_err();
            too_many |= a
                .push(IpCidr::new(IpAddress::Ipv6(Ipv6Addr::LOCALHOST), 128))
                .is_err();
            // smoltcp takes only its exact addresses as local (Linux: all of 127/8), so
            // the DNS proxy's address is one of them.
            too_many |= a
                .push(IpCidr::new(IpAddress::Ipv4(DNS_PROXY_ADDR), 8))
                .is_err();
            // The sandbox's own link addresses reach its own sockets through loopback.
            for addr in &ext_addrs {
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                too_many |= a.push(IpCidr::new(IpAddress::from(*addr), prefix)).is_err();
            }
        });
        if too_many {
            return Err(io::Error::other(
                "too many addresses for the loopback interface",
            ));
        }
        let (wake_tx, wake_rx) = UnixDatagram::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let inner = Inner {
            lo: Iface {
                iface: lo_iface,
                dev: lo_dev,
                sockets: SocketSet::new(Vec::new()),
            },
            ext,
            ext_addrs,
            acl: acl.clone(),
            ports: PortTable::new(random_u64() as u16),
            next_id: 1,
            tcp: HashMap::new(),
            udp: HashMap::new(),
            orphans: Vec::new(),
            epoch,
            dns: None,
            thread_deadline: None,
            shutdown: false,
        };
        let mut inner = inner;
        inner.start_dns(config.dns_upstream)?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            wake: wake_tx,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("netstack".into())
            .spawn(move || stack_thread(thread_shared, poll_fd, wake_rx))?;
        Ok(Stack {
            shared,
            acl,
            interfaces,
        })
    }

    pub fn acl(&self) -> &Arc<Acl> {
        &self.acl
    }

    /// A new TCP socket (`v6`: an AF_INET6 socket, which also carries IPv4 through
    /// v4-mapped addresses).
    pub fn tcp_socket(&self, v6: bool) -> TcpSocket {
        TcpSocket::new(self.shared.clone(), v6)
    }

    /// A new UDP socket.
    pub fn udp_socket(&self, v6: bool) -> UdpSocket {
        UdpSocket::new(self.shared.clone(), v6)
    }

    /// Whether a guest socket listens on TCP `port` (the image builder's readiness).
    pub fn tcp_listening(&self, port: u16) -> bool {
        self.shared.lock().ports.tcp_listening(port)
    }

    /// The sandbox's interfaces: the loopback, then the link if it has one.
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        &self.interfaces
    }

    /// The sandbox's addresses on its link.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.shared.lock().ext_addrs.clone()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        let _ = self.shared.wake.send(&[0]);
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move packets after a change made under `g`, release the lock, then wake whoever
    /// waits on sockets whose readiness changed.
    pub(crate) fn finish(&self, mut g: MutexGuard<'_, Inner>) {
        g.poll();
        let notify = g.changed();
        let deadline = g.next_wake();
        let wake_thread = match (deadline, g.thread_deadline) {
            (Some(d), Some(t)) => d < t,
            (Some(_), None) => true,
            _ => false,
        };
        drop(g);
        if wake_thread {
            let _ = self.wake.send(&[0]);
        }
        for n in notify {
            n();
        }
    }
}

impl Inner {
    pub(crate) fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Which interface reaches `dst`.
    pub(crate) fn route(&self, dst: IpAddr) -> SockResult<Side> {
        if dst.is_loopback() || self.ext_addrs.contains(&dst) {
            Ok(Side::Lo)
        } else if self.ext.is_some() {
            Ok(Side::Ext)
        } else {
            Err(SockError::ENETUNREACH)
        }
    }

    /// Whether `addr` is one the sandbox may bind: unspecified, loopback or its own.
    pub(crate) fn is_local(&self, addr: IpAddr) -> bool {
        addr.is_unspecified() || addr.is_loopback() || self.ext_addrs.contains(&addr)
    }

    /// The interfaces a socket bound to `addr` receives on.
    pub(crate) fn sides_for(&self, addr: IpAddr) -> Vec<Side> {
        let mut v = vec![Side::Lo];
        if self.ext.is_some() && !addr.is_loopback() {
            v.push(Side::Ext);
        }
        v
    }

    pub(crate) fn sockets(&mut self, side: Side) -> Option<&mut SocketSet<'static>> {
        match side {
            Side::Lo => Some(&mut self.lo.sockets),
            Side::Ext => self.ext.as_mut().map(|e| &mut e.sockets),
        }
    }

    /// The local address smoltcp would pick towards `dst`.
    pub(crate) fn source_for(&self, side: Side, dst: IpAddr) -> Option<IpAddr> {
        let dst = IpAddress::from(dst);
        let src = match side {
            Side::Lo => self.lo.iface.get_source_address(&dst),
            Side::Ext => self.ext.as_ref()?.iface.get_source_address(&dst),
        }?;
        Some(src.into())
    }

    /// Poll both interfaces until loopback traffic settles, then do the socket-level
    /// work that follows packets (accept queues, reaping).
    pub(crate) fn poll(&mut self) {
        for _ in 0..64 {
            let now = self.now();
            self.lo.iface.poll_maintenance(now);
            if let Some(ext) = self.ext.as_mut() {
                ext.iface.poll_maintenance(now);
            }
            // One packet at a time, refilling listen pools in between: a burst of SYNs
            // each finds a listening socket instead of a RST.
            for _ in 0..INGRESS_BUDGET {
                let lo =
                    self.lo
                        .iface
                        .poll_ingress_single(now, &mut self.lo.dev, &mut self.lo.sockets);
                let ext = match self.ext.as_mut() {
                    Some(x) => x.iface.poll_ingress_single(now, &mut x.dev, &mut x.sockets),
                    None => PollIngressSingleResult::None,
                };
                if lo == PollIngressSingleResult::None && ext == PollIngressSingleResult::None {
                    break;
                }
                if lo == PollIngressSingleResult::SocketStateChanged
                    || ext == PollIngressSingleResult::SocketStateChanged
                {
                    self.service_listeners();
                }
            }
            while self
                .lo
                .iface
                .poll_egress(now, &mut self.lo.dev, &mut self.lo.sockets)
                == PollResult::SocketStateChanged
            {}
            if let Some(x) = self.ext.as_mut() {
                while x.iface.poll_egress(now, &mut x.dev, &mut x.sockets)
                    == PollResult::SocketStateChanged
                {}
            }
            let more = self.service_listeners() | self.service_dns();
            if self.lo.dev.is_idle() && !more {
                break;
            }
        }
        self.update_connections();
        self.reap_orphans();
    }

    /// When smoltcp next needs a poll for its timers.
    fn next_wake(&mut self) -> Option<StdInstant> {
        let now = self.now();
        let mut d = self.lo.iface.poll_delay(now, &self.lo.sockets);
        if let Some(ext) = self.ext.as_mut() {
            let e = ext.iface.poll_delay(now, &ext.sockets);
            d = match (d, e) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let std_now = StdInstant::now();
        let mut at = d.map(|d| std_now + Duration::from_micros(d.total_micros()));
        if let Some(d) = self.dns_deadline() {
            at = Some(at.map_or(d, |a| a.min(d)));
        }
        if !self.orphans.is_empty() {
            let reap = std_now + Duration::from_secs(1);
            at = Some(at.map_or(reap, |a| a.min(reap)));
        }
        at
    }

    /// Notifiers of sockets whose poll bits changed since they were last reported.
    fn changed(&mut self) -> Vec<Notify> {
        let mut out = Vec::new();
        let tcp_ids: Vec<u64> = self.tcp.keys().copied().collect();
        for id in tcp_ids {
            let bits = self.tcp_readiness(id);
            if let Some(e) = self.tcp.get_mut(&id) {
                if e.last != bits {
                    e.last = bits;
                    out.extend(e.notify.clone());
                }
            }
        }
        let udp_ids: Vec<u64> = self.udp.keys().copied().collect();
        for id in udp_ids {
            let bits = self.udp_readiness(id);
            if let Some(e) = self.udp.get_mut(&id) {
                if e.last != bits {
                    e.last = bits;
                    out.extend(e.notify.clone());
                }
            }
        }
        out
    }
}

/// The stack thread: poll when a frame arrives, a timer is due, or a guest thread asks.
fn stack_thread(shared: Arc<Shared>, link_fd: Option<OwnedFd>, wake: UnixDatagram) {
    loop {
        let deadline = {
            let mut g = shared.lock();
            if g.shutdown {
                return;
            }
            g.poll();
            let notify = g.changed();
            let d = g.next_wake();
            g.thread_deadline = d;
            drop(g);
            for n in notify {
                n();
            }
            d
        };
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(StdInstant::now());
                // Round up so a timer is never polled a hair early and spun on.
                let ms = left.as_micros().div_ceil(1000).min(60_000) as u16;
                PollTimeout::from(ms)
            }
        };
        let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = &link_fd {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::error!("netstack: poll failed: {e}; the stack thread stops");
                return;
            }
        }
        drop(fds);
        let mut buf = [0u8; 64];
        while wake.recv(&mut buf).is_ok() {}
    }
}

#[cfg(test)]
mod tests;

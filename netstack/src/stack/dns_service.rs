//! The DNS proxy wired into the stack: a UDP socket on 127.0.0.53:53 on the loopback
//! interface receives the guest's questions, and a socket on the link talks to the
//! upstream resolvers. The link filter exempts that socket: resolving names is the
//! sandbox's own infrastructure, and the name policy already judged the question.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::ports::Transport;
use super::{Inner, Side};
use crate::acl::Acl;
use crate::dns::{DnsProxy, NamePolicy, Outgoing};

/// Where the guest's resolver sends questions (systemd-resolved's stub address).
pub const DNS_PROXY_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
/// Port-table owner of the stack's own sockets.
const STACK_OWNER: u64 = 0;

struct AclNames(Arc<Acl>);

impl NamePolicy for AclNames {
    fn allow_name(&self, name: &str, qtype: &str) -> bool {
        self.0.check_dns(name, qtype).allowed
    }

    fn learned(&self, name: &str, addr: IpAddr, ttl: u32) {
        self.0.learn(name, addr, ttl);
    }
}

pub(crate) struct DnsService {
    proxy: DnsProxy,
    guest_side: SocketHandle,
    upstream_side: Option<SocketHandle>,
}

fn udp_socket(packets: usize, bytes: usize) -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0u8; bytes]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0u8; bytes]),
    )
}

fn endpoint(e: IpEndpoint) -> SocketAddr {
    SocketAddr::new(e.addr.into(), e.port)
}

impl Inner {
    /// Open the proxy's sockets. Upstreams come from the policy, else from `fallback`.
    pub(crate) fn start_dns(&mut self, fallback: Vec<SocketAddr>) -> std::io::Result<()> {
        let policy_upstreams = self.acl.policy().dns_upstream().to_vec();
        let upstreams = if policy_upstreams.is_empty() {
            fallback
        } else {
            policy_upstreams
        };
        let proxy = DnsProxy::new(Arc::new(AclNames(self.acl.clone())), upstreams);
        self.ports
            .bind(
                Transport::Udp,
                STACK_OWNER,
                IpAddr::V4(DNS_PROXY_ADDR),
                53,
                false,
            )
            .ok_or_else(|| std::io::Error::other("DNS proxy port taken"))?;
        let mut s = udp_socket(64, 64 * 1024);
        s.bind(IpListenEndpoint {
            addr: Some(DNS_PROXY_ADDR.into()),
            port: 53,
        })
        .map_err(|e| std::io::Error::other(format!("binding the DNS proxy: {e}")))?;
        let guest_side = self.lo.sockets.add(s);
        let mut upstream_side = None;
        if let Some(ext_ip) = self.ext_addrs.first().copied() {
            let port = self
                .ports
                .bind(Transport::Udp, STACK_OWNER, ext_ip, 0, false)
                .ok_or_else(|| std::io::Error::other("no port for the DNS proxy"))?;
            let mut s = udp_socket(64, 64 * 1024);
            s.bind(IpListenEndpoint {
                addr: Some(ext_ip.into()),
                port,
            })
            .map_err(|e| std::io::Error::other(format!("binding the DNS proxy: {e}")))?;
            if let Some(ext) = self.ext.as_mut() {
                ext.dev.filter.exempt_udp_port(port);
                upstream_side = Some(ext.sockets.add(s));
            }
        }
        self.dns = Some(DnsService {
            proxy,
            guest_side,
            upstream_side,
        });
        Ok(())
    }

    /// Answer and forward what arrived; true when something was sent.
    pub(crate) fn service_dns(&mut self) -> bool {
        let Some(mut dns) = self.dns.take() else {
            return false;
        };
        let now = StdInstant::now();
        let mut out: Vec<Outgoing> = Vec::new();
        {
            let s = self.lo.sockets.get_mut::<udp::Socket>(dns.guest_side);
            while let Ok((data, meta)) = s.recv() {
                let client = endpoint(meta.endpoint);
                out.extend(dns.proxy.on_query(client, data, now));
            }
        }
        if let (Some(h), Some(ext)) = (dns.upstream_side, self.ext.as_mut()) {
            let s = ext.sockets.get_mut::<udp::Socket>(h);
            while let Ok((data, meta)) = s.recv() {
                let from = endpoint(meta.endpoint);
                out.extend(dns.proxy.on_response(from, data, now));
            }
        }
        out.extend(dns.proxy.on_timer(now));
        let sent = !out.is_empty();
        for o in out {
            let (side, handle, to, packet) = match o {
                Outgoing::ToGuest { to, packet } => (Side::Lo, Some(dns.guest_side), to, packet),
                Outgoing::ToUpstream { to, packet } => (Side::Ext, dns.upstream_side, to, packet),
            };
            let Some(handle) = handle else {
                continue;
            };
            if let Some(set) = self.sockets(side) {
                let s = set.get_mut::<udp::Socket>(handle);
                if let Err(e) = s.send_slice(&packet, IpEndpoint::new(to.ip().into(), to.port())) {
                    tracing::debug!("netstack: DNS proxy could not send to {to}: {e}");
                }
            }
        }
        self.dns = Some(dns);
        sent
    }

    pub(crate) fn dns_deadline(&self) -> Option<StdInstant> {
        self.dns.as_ref().and_then(|d| d.proxy.next_deadline())
    }
}

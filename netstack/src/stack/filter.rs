//! The second enforcement point: every frame crossing the sandbox's link is classified and
//! new flows are checked against the ACL, so a flow the socket layer somehow let through
//! still never reaches the wire.
//!
//! Only packets that open a flow are checked (a TCP SYN without ACK, a UDP datagram that
//! is not a reply to one we sent, an ICMP packet): policy changes apply to new
//! connections, as `runsc acl` documents, and established ones are not re-judged per
//! segment.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

use crate::acl::{Acl, Protocol};

/// What a packet is, as far as the ACL cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// A TCP SYN without ACK: a connection attempt.
    TcpOpen {
        src: SocketAddr,
        dst: SocketAddr,
    },
    /// Any other TCP segment (part of a connection already judged).
    Tcp,
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
    },
    Icmp {
        src: IpAddr,
        dst: IpAddr,
    },
    /// ARP, IPv6 neighbour discovery and other link traffic: not subject to the ACL.
    Link,
    /// Malformed or an IP protocol we do not carry.
    Other,
}

/// Classify an IP packet.
pub fn classify_ip(packet: &[u8]) -> Flow {
    let (src, dst, proto, payload) = match packet.first().map(|b| b >> 4) {
        Some(4) => match Ipv4Packet::new_checked(packet) {
            Ok(p) => (
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                p.next_header(),
                p.payload(),
            ),
            Err(_) => return Flow::Other,
        },
        Some(6) => match Ipv6Packet::new_checked(packet) {
            Ok(p) => (
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                p.next_header(),
                p.payload(),
            ),
            Err(_) => return Flow::Other,
        },
        _ => return Flow::Other,
    };
    match proto {
        IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
            Ok(t) if t.syn() && !t.ack() => Flow::TcpOpen {
                src: SocketAddr::new(src, t.src_port()),
                dst: SocketAddr::new(dst, t.dst_port()),
            },
            Ok(_) => Flow::Tcp,
            Err(_) => Flow::Other,
        },
        IpProtocol::Udp => match UdpPacket::new_checked(payload) {
            Ok(u) => Flow::Udp {
                src: SocketAddr::new(src, u.src_port()),
                dst: SocketAddr::new(dst, u.dst_port()),
            },
            Err(_) => Flow::Other,
        },
        // ICMPv6 carries neighbour discovery, which the link needs.
        IpProtocol::Icmpv6 => Flow::Link,
        IpProtocol::Icmp => Flow::Icmp { src, dst },
        _ => Flow::Other,
    }
}

/// Classify an Ethernet frame.
pub fn classify_ethernet(frame: &[u8]) -> Flow {
    match EthernetFrame::new_checked(frame) {
        Ok(f) => match f.ethertype() {
            EthernetProtocol::Ipv4 | EthernetProtocol::Ipv6 => classify_ip(f.payload()),
            EthernetProtocol::Arp => Flow::Link,
            _ => Flow::Other,
        },
        Err(_) => Flow::Other,
    }
}

/// How long a UDP exchange stays open for replies (Linux conntrack's UDP timeout).
const UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on remembered UDP flows; the oldest go first.
const MAX_UDP_FLOWS: usize = 4096;

/// The per-link filter state.
pub struct LinkFilter {
    acl: Arc<Acl>,
    /// UDP (sandbox, peer) pairs the sandbox sent to recently, and when: replies pass.
    udp_flows: HashMap<(SocketAddr, SocketAddr), Instant>,
    /// Local UDP ports of the stack's own sockets (the DNS proxy's upstream socket):
    /// infrastructure, not guest traffic.
    exempt_ports: Vec<u16>,
    /// Frames dropped, for the log.
    pub dropped: u64,
}

impl LinkFilter {
    pub fn new(acl: Arc<Acl>) -> LinkFilter {
        LinkFilter {
            acl,
            udp_flows: HashMap::new(),
            exempt_ports: Vec::new(),
            dropped: 0,
        }
    }

    pub fn exempt_udp_port(&mut self, port: u16) {
        self.exempt_ports.push(port);
    }

    /// Whether the sandbox may send `frame`.
    pub fn allow_egress(&mut self, frame: &[u8], now: Instant) -> bool {
        let ok = match classify_ethernet(frame) {
            Flow::TcpOpen { src, dst } => self.acl.peek_egress(Protocol::Tcp, src, dst).allowed,
            Flow::Udp { src, dst } => {
                let ok = self.exempt_ports.contains(&src.port())
                    || self.acl.peek_egress(Protocol::Udp, src, dst).allowed;
                if ok {
                    self.remember(src, dst, now);
                }
                ok
            }
            Flow::Icmp { src, dst } => {
                self.acl
                    .peek_egress(
                        Protocol::Icmp,
                        SocketAddr::new(src, 0),
                        SocketAddr::new(dst, 0),
                    )
                    .allowed
            }
            Flow::Tcp | Flow::Link => true,
            Flow::Other => false,
        };
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    /// Whether `frame` may reach the sandbox.
    pub fn allow_ingress(&mut self, frame: &[u8], now: Instant) -> bool {
        let ok = match classify_ethernet(frame) {
            Flow::TcpOpen { src, dst } => self.acl.peek_ingress(Protocol::Tcp, dst, src).allowed,
            Flow::Udp { src, dst } => {
                self.is_reply(dst, src, now)
                    || self.acl.peek_ingress(Protocol::Udp, dst, src).allowed
            }
            Flow::Icmp { src, dst } => {
                self.acl
                    .peek_ingress(
                        Protocol::Icmp,
                        SocketAddr::new(dst, 0),
                        SocketAddr::new(src, 0),
                    )
                    .allowed
            }
            Flow::Tcp | Flow::Link => true,
            Flow::Other => false,
        };
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    fn remember(&mut self, local: SocketAddr, remote: SocketAddr, now: Instant) {
        if self.udp_flows.len() >= MAX_UDP_FLOWS {
            self.udp_flows
                .retain(|_, t| now.duration_since(*t) < UDP_FLOW_TIMEOUT);
            if self.udp_flows.len() >= MAX_UDP_FLOWS {
                if let Some(oldest) = self
                    .udp_flows
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| *k)
                {
                    self.udp_flows.remove(&oldest);
                }
            }
        }
        self.udp_flows.insert((local, remote), now);
    }

    fn is_reply(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> bool {
        self.udp_flows
            .get(&(local, remote))
            .is_some_and(|t| now.duration_since(*t) < UDP_FLOW_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};

    fn syn(src: [u8; 4], dst: [u8; 4], ack: bool) -> Vec<u8> {
        let (s, d) = (Ipv4Address::from(src), Ipv4Address::from(dst));
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1),
            ack_number: ack.then_some(TcpSeqNumber(5)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut p, &caps);
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(&mut t, &IpAddress::Ipv4(s), &IpAddress::Ipv4(d), &caps);
        buf
    }

    #[test]
    fn a_syn_opens_a_flow_and_a_syn_ack_does_not() {
        let src: SocketAddr = "10.0.0.2:40000".parse().expect("addr");
        let dst: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(
            classify_ip(&syn([10, 0, 0, 2], [10, 0, 0, 1], false)),
            Flow::TcpOpen { src, dst }
        );
        assert_eq!(
            classify_ip(&syn([10, 0, 0, 2], [10, 0, 0, 1], true)),
            Flow::Tcp
        );
    }

    #[test]
    fn garbage_is_other() {
        assert_eq!(classify_ip(&[]), Flow::Other);
        assert_eq!(classify_ip(&[0x45, 0, 0]), Flow::Other);
        assert_eq!(classify_ethernet(&[0u8; 10]), Flow::Other);
    }
}

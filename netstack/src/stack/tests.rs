//! The stack over its loopback interface, and the link filter against a policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::filter::LinkFilter;
use super::*;
use crate::acl::{Acl, AuditLog, Policy};

fn stack(policy: Policy) -> Stack {
    let acl = Arc::new(Acl::new(policy, AuditLog::discard("test")));
    Stack::new(StackConfig::default(), acl).expect("stack")
}

/// Retry `f` while it answers EAGAIN/EINPROGRESS (the stack thread moves packets).
fn settle<T>(mut f: impl FnMut() -> SockResult<T>) -> SockResult<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Err(SockError::EAGAIN) | Err(SockError::EINPROGRESS) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            r => return r,
        }
    }
}

fn any_port(ip: &str) -> SocketAddr {
    format!("{ip}:0").parse().expect("addr")
}

#[test]
fn tcp_over_loopback_connects_carries_data_and_ends() {
    let s = stack(Policy::allow_all());
    let l = s.tcp_socket(false);
    l.bind(any_port("127.0.0.1")).expect("bind");
    l.listen(8).expect("listen");
    let addr = l.local_addr();
    assert_ne!(addr.port(), 0);
    let c = s.tcp_socket(false);
    assert_eq!(c.connect(addr), Err(SockError::EINPROGRESS));
    settle(|| c.connect_status()).expect("connected");
    let (a, peer) = settle(|| l.accept()).expect("accepted");
    assert_eq!(peer, c.local_addr());
    assert_eq!(c.send(b"ping"), Ok(4));
    let mut buf = [0u8; 16];
    assert_eq!(settle(|| a.recv(&mut buf, false)), Ok(4));
    assert_eq!(&buf[..4], b"ping");
    c.shutdown(false, true).expect("shutdown");
    assert_eq!(settle(|| a.recv(&mut buf, false)), Ok(0), "end of stream");
    drop(a);
    assert_eq!(settle(|| c.recv(&mut buf, false)), Ok(0));
}

#[test]
fn a_burst_of_connects_is_accepted_not_reset() {
    let s = stack(Policy::allow_all());
    let l = s.tcp_socket(false);
    l.bind(any_port("127.0.0.1")).expect("bind");
    l.listen(128).expect("listen");
    let addr = l.local_addr();
    let clients: Vec<TcpSocket> = (0..60)
        .map(|_| {
            let c = s.tcp_socket(false);
            assert_eq!(c.connect(addr), Err(SockError::EINPROGRESS));
            c
        })
        .collect();
    for c in &clients {
        settle(|| c.connect_status()).expect("every client connects");
    }
    let accepted = (0..60).filter(|_| settle(|| l.accept()).is_ok()).count();
    assert_eq!(accepted, 60);
}

#[test]
fn a_closed_port_refuses_and_ports_conflict() {
    let s = stack(Policy::allow_all());
    let l = s.tcp_socket(false);
    l.bind(any_port("0.0.0.0")).expect("bind");
    let port = l.local_addr().port();
    let dup = s.tcp_socket(true);
    assert_eq!(
        dup.bind(format!("[::]:{port}").parse().expect("addr")),
        Err(SockError::EADDRINUSE),
        "a v6 wildcard overlaps the v4 one"
    );
    drop(l);
    let c = s.tcp_socket(false);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(c.connect(target), Err(SockError::EINPROGRESS));
    assert_eq!(settle(|| c.connect_status()), Err(SockError::ECONNREFUSED));
    let lone = s.tcp_socket(false);
    assert_eq!(
        lone.connect("192.0.2.1:80".parse().expect("addr")),
        Err(SockError::ENETUNREACH),
        "no link: only loopback is reachable"
    );
}

#[test]
fn udp_over_loopback_keeps_datagrams_and_senders() {
    let s = stack(Policy::allow_all());
    let a = s.udp_socket(false);
    a.bind(any_port("127.0.0.1")).expect("bind");
    let b = s.udp_socket(false);
    assert_eq!(b.send_to(b"one", Some(a.local_addr())), Ok(3));
    assert_eq!(b.send_to(b"two!", Some(a.local_addr())), Ok(4));
    let mut buf = [0u8; 2];
    let r = settle(|| a.recv_from(&mut buf, false)).expect("datagram");
    assert_eq!((r.len, r.full_len), (2, 3), "truncated, with its real size");
    assert_eq!(
        r.from,
        format!("127.0.0.1:{}", b.local_addr().port())
            .parse()
            .expect("addr")
    );
    let mut buf = [0u8; 16];
    let r = settle(|| a.recv_from(&mut buf, true)).expect("peek");
    assert_eq!(&buf[..r.len], b"two!");
    let r = settle(|| a.recv_from(&mut buf, false)).expect("datagram");
    assert_eq!(&buf[..r.len], b"two!");
    assert_eq!(a.recv_from(&mut buf, false).err(), Some(SockError::EAGAIN));
}

#[test]
fn listen_rules_refuse_binds_with_eacces() {
    let policy = Policy::from_yaml(
        "version: 1\ndefaults: {listen: deny}\nrules:\n  - {id: web, listen: {protocol: tcp, ports: [8080]}, action: allow}\n",
    )
    .expect("policy");
    let s = stack(policy);
    let t = s.tcp_socket(false);
    assert_eq!(
        t.bind("0.0.0.0:9090".parse().expect("addr")),
        Err(SockError::EACCES)
    );
    assert_eq!(t.bind("0.0.0.0:8080".parse().expect("addr")), Ok(()));
    let u = s.udp_socket(false);
    assert_eq!(
        u.bind("0.0.0.0:8080".parse().expect("addr")),
        Err(SockError::EACCES)
    );
    let e = s.tcp_socket(false);
    assert_eq!(
        e.bind("0.0.0.0:0".parse().expect("addr")),
        Ok(()),
        "ephemeral ports always"
    );
}

/// Build an Ethernet frame carrying an IPv4 TCP SYN (or SYN-ACK) or a UDP datagram.
fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, udp: bool, ack: bool) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::*;
    let (s, d) = (Ipv4Address::from(src), Ipv4Address::from(dst));
    let caps = ChecksumCapabilities::default();
    let mut payload = Vec::new();
    let proto = if udp {
        let repr = UdpRepr {
            src_port: sport,
            dst_port: dport,
        };
        payload.resize(repr.header_len() + 2, 0);
        let mut p = UdpPacket::new_unchecked(&mut payload);
        repr.emit(
            &mut p,
            &IpAddress::Ipv4(s),
            &IpAddress::Ipv4(d),
            2,
            |b| b.copy_from_slice(b"hi"),
            &caps,
        );
        IpProtocol::Udp
    } else {
        let repr = TcpRepr {
            src_port: sport,
            dst_port: dport,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1),
            ack_number: ack.then_some(TcpSeqNumber(9)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        payload.resize(repr.buffer_len(), 0);
        let mut p = TcpPacket::new_unchecked(&mut payload);
        repr.emit(&mut p, &IpAddress::Ipv4(s), &IpAddress::Ipv4(d), &caps);
        IpProtocol::Tcp
    };
    let ip = Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut f = vec![0u8; 14 + ip.buffer_len() + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f);
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let mut p = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut p, &caps);
    p.payload_mut().copy_from_slice(&payload);
    f
}

#[test]
fn the_link_filter_stops_new_flows_the_policy_denies() {
    let policy = Policy::from_yaml(
        "version: 1\ndefaults: {ingress: deny}\nrules:\n  - {id: no-web, egress: {protocol: tcp, to: [10.0.0.1/32], ports: [80]}, action: deny}\n  - {id: no-dns, egress: {protocol: udp, to: [10.0.0.1/32], ports: [53]}, action: deny}\n",
    )
    .expect("policy");
    let acl = Arc::new(Acl::new(policy, AuditLog::discard("test")));
    let mut f = LinkFilter::new(acl);
    let now = Instant::now();
    let me = [10, 0, 0, 2];
    let peer = [10, 0, 0, 1];
    assert!(
        !f.allow_egress(&frame(me, peer, 40000, 80, false, false), now),
        "denied SYN"
    );
    assert!(
        f.allow_egress(&frame(me, peer, 40000, 81, false, false), now),
        "other port"
    );
    assert!(
        f.allow_egress(&frame(me, peer, 8080, 40000, false, true), now),
        "SYN-ACK of an accepted connection"
    );
    assert!(
        !f.allow_egress(&frame(me, peer, 40001, 53, true, false), now),
        "denied datagram"
    );
    // Ingress is denied by default, except replies to datagrams the sandbox sent.
    assert!(
        !f.allow_ingress(&frame(peer, me, 5000, 8080, false, false), now),
        "inbound SYN"
    );
    assert!(!f.allow_ingress(&frame(peer, me, 7000, 40002, true, false), now));
    assert!(f.allow_egress(&frame(me, peer, 40002, 7000, true, false), now));
    assert!(
        f.allow_ingress(&frame(peer, me, 7000, 40002, true, false), now),
        "the reply"
    );
    assert!(
        !f.allow_ingress(
            &frame(peer, me, 7000, 40002, true, false),
            now + Duration::from_secs(31)
        ),
        "the exchange timed out"
    );
}

#[test]
fn a_host_connection_is_relayed_to_a_guest_port_over_loopback() {
    use std::io::{Read, Write};
    let s = stack(Policy::allow_all());
    let l = s.tcp_socket(true);
    l.bind("[::]:7000".parse().expect("addr")).expect("bind");
    l.listen(4).expect("listen");
    // A host connection pair: the relay gets one end, the "client" keeps the other.
    let host = std::net::TcpListener::bind("127.0.0.1:0").expect("host listener");
    let mut client =
        std::net::TcpStream::connect(host.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = host.accept().expect("accept");
    s.relay_to_guest(accepted, 7000).expect("relay");
    let (guest, peer) = settle(|| l.accept()).expect("the guest sees a connection");
    assert!(peer.ip().is_loopback(), "{peer}");
    client.write_all(b"GET /").expect("write");
    let mut buf = [0u8; 16];
    assert_eq!(settle(|| guest.recv(&mut buf, false)), Ok(5));
    assert_eq!(guest.send(b"200 OK"), Ok(6));
    drop(guest);
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("read");
    assert_eq!(
        got, b"200 OK",
        "data, then end of stream when the guest closes"
    );
}

#[test]
fn a_v6only_listener_refuses_ipv4() {
    let s = stack(Policy::allow_all());
    let l = s.tcp_socket(true);
    let mut o = l.options();
    o.v6only = true;
    l.set_options(o);
    l.bind("[::]:7100".parse().expect("addr")).expect("bind");
    l.listen(4).expect("listen");
    let c4 = s.tcp_socket(false);
    assert_eq!(
        c4.connect("127.0.0.1:7100".parse().expect("addr")),
        Err(SockError::EINPROGRESS)
    );
    assert!(
        settle(|| c4.connect_status()).is_err(),
        "v4 must not reach a v6-only listener"
    );
    let c6 = s.tcp_socket(true);
    assert_eq!(
        c6.connect("[::1]:7100".parse().expect("addr")),
        Err(SockError::EINPROGRESS)
    );
    settle(|| c6.connect_status()).expect("v6 connects");
}

#[test]
fn a_checkpointed_listener_listens_again_and_a_connection_comes_back_reset() {
    let old = stack(Policy::allow_all());
    let l = old.tcp_socket(false);
    l.bind(any_port("127.0.0.1")).expect("bind");
    l.listen(16).expect("listen");
    let addr = l.local_addr();
    let c = old.tcp_socket(false);
    assert_eq!(c.connect(addr), Err(SockError::EINPROGRESS));
    settle(|| c.connect_status()).expect("connected");
    let u = old.udp_socket(false);
    u.bind(any_port("127.0.0.1")).expect("udp bind");

    let (ls, cs, us) = (l.checkpoint(), c.checkpoint(), u.checkpoint());
    assert_eq!(
        ls.phase,
        checkpoint::TcpPhase::Listening {
            bound: addr,
            backlog: 16
        }
    );
    assert_eq!(cs.phase, checkpoint::TcpPhase::Connection);
    // Through the serialized form, into a fresh stack.
    let ls: checkpoint::TcpSocketState =
        serde_json::from_str(&serde_json::to_string(&ls).expect("encode")).expect("decode");

    let new = stack(Policy::allow_all());
    let l2 = new.restore_tcp(&ls).expect("listener");
    assert_eq!(l2.local_addr(), addr);
    let c2 = new.restore_tcp(&cs).expect("connection");
    let u2 = new.restore_udp(&us).expect("udp");
    assert_eq!(u2.local_addr(), u.local_addr());
    let mut buf = [0u8; 8];
    assert_ne!(
        c2.poll() & pollbits::ERR,
        0,
        "a reset connection polls POLLERR"
    );
    assert_eq!(c2.recv(&mut buf, false), Err(SockError::ECONNRESET));
    // And the restored listener takes connections.
    let d = new.tcp_socket(false);
    assert_eq!(d.connect(addr), Err(SockError::EINPROGRESS));
    settle(|| d.connect_status()).expect("connected to the restored listener");
    settle(|| l2.accept()).expect("accepted");
}

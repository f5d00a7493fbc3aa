//! [`Rtnl`]: a blocking rtnetlink client for the few questions and changes network adoption
//! and `--network sandbox` make (links, addresses, routes, namespace ids; veth pairs, link
//! state and aliases), in-process.
//!
//! Why not `ip`: a sandbox adopts its pod's namespace on the start-up path of every restore,
//! and each `ip` run is a fork+exec of a dynamically linked program (~2 ms here); adoption
//! made five, and creating a sandbox's own namespace ten more. One netlink socket answers the
//! same questions in tens of microseconds.
//!
//! A socket belongs to the network namespace of the thread that opened it, for its life:
//! open it on the thread that has `setns`ed into the namespace to be read or changed.
//! Messages are parsed and built by `netlink-packet-route`; kernel input is never trusted
//! (a message that does not parse is an error, not a panic).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The receive buffer: the kernel sizes a dump's datagrams to the reader's largest buffer
/// (at most 32 KiB); a larger datagram is an error, never parsed truncated.
const RECV_BUF: usize = 32 << 10;

/// A link, as adoption needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub ifname: String,
    /// `IFF_UP`.
    pub up: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// An Ethernet link (`ARPHRD_ETHER`).
    pub ether: bool,
    pub mtu: Option<u32>,
    /// `IFLA_LINK`: for a veth, its peer's ifindex (in the namespace `link_netnsid` names).
    pub link_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: absent when the peer is in the same namespace.
    pub link_netnsid: Option<i32>,
    /// `IFLA_INFO_KIND` is `veth`.
    pub veth: bool,
    /// `IFLA_IFALIAS`: the free-form description `ip link set DEV alias` writes.
    pub alias: Option<String>,
}

/// An address of a link: `IFA_LOCAL`, else `IFA_ADDRESS` (what `ip addr` shows as `local`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    pub net: IpNet,
}

/// A default route of the main table: its output link and gateway, or per hop for a
/// multipath route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultRoute {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub metric: Option<u32>,
    /// `(oif, gateway)` per hop of a multipath route.
    pub nexthops: Vec<(u32, Option<IpAddr>)>,
}

/// What ends a request's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A dump: messages, then `NLMSG_DONE`.
    Dump,
    /// A change: the ACK (`NLMSG_ERROR` with code 0).
    Ack,
    /// A single message.
    One,
}

/// A netlink route socket in the calling thread's network namespace.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Every link (`ip link show`).
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let req = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let mut out = Vec::new();
        self.request(req, Answer::Dump, |msg| {
            if let RouteNetlinkMessage::NewLink(l) = msg {
                out.push(link_of(&l));
            }
        })?;
        Ok(out)
    }

    /// The link named `name` (`ip link show dev NAME`); `ENODEV` when there is none.
    pub fn link(&mut self, name: &str) -> io::Result<Link> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let mut out = None;
        self.request(RouteNetlinkMessage::GetLink(msg), Answer::One, |msg| {
            if let RouteNetlinkMessage::NewLink(l) = msg {
                out = Some(link_of(&l));
            }
        })?;
        out.ok_or_else(|| bad("RTM_GETLINK: no link in the reply"))
    }

    /// The addresses of link `ifindex`, IPv4 before IPv6 and each family in the kernel's
    /// order (an IPv4 subnet's primary before its secondaries), as `ip addr show dev` lists
    /// them.
    pub fn addrs(&mut self, ifindex: u32) -> io::Result<Vec<Addr>> {
        let mut out = self.all_addrs()?;
        out.retain(|a| a.ifindex == ifindex);
        Ok(out)
    }

    /// The addresses of every link, in the order of [`Rtnl::addrs`] (`ip addr`).
    pub fn all_addrs(&mut self) -> io::Result<Vec<Addr>> {
        let req = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        let mut out = Vec::new();
        self.request(req, Answer::Dump, |msg| {
            if let RouteNetlinkMessage::NewAddress(a) = msg {
                out.extend(addr_of(&a));
            }
        })?;
        Ok(out)
    }

    /// The destination prefixes of every `family` route in every table, of any type, except
    /// those to the /0 prefix (`ip -4|-6 route show table all`, less what it calls `default`).
    pub fn route_destinations(&mut self, family: AddressFamily) -> io::Result<Vec<IpNet>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let mut out = Vec::new();
        self.request(RouteNetlinkMessage::GetRoute(msg), Answer::Dump, |msg| {
            if let RouteNetlinkMessage::NewRoute(r) = msg {
                if r.header.address_family == family {
                    out.extend(destination_of(&r));
                }
            }
        })?;
        Ok(out)
    }

    /// Create the veth pair `name`/`peer` with `peer` created straight in the network
    /// namespace `peer_netns` is a handle of (`ip link add NAME type veth peer name PEER netns
    /// NS`). Both ends start down, without addresses.
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_netns: BorrowedFd) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        let msg = RouteNetlinkMessage::NewLink(msg);
        self.request_with(msg, NLM_F_CREATE | NLM_F_EXCL, Answer::Ack, |_| {})
    }

    /// Set the alias of link `ifindex` (`ip link set DEV alias ALIAS`).
    pub fn set_alias(&mut self, ifindex: u32, alias: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_owned()));
        self.request(RouteNetlinkMessage::SetLink(msg), Answer::Ack, |_| {})
    }

    /// Bring link `ifindex` up (`ip link set DEV up`): `IFF_UP` set, no other flag touched.
    pub fn set_link_up(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), Answer::Ack, |_| {})
    }

    /// Delete link `ifindex` (`ip link del DEV`); for a veth, its peer goes too.
    pub fn del_link(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        self.request(RouteNetlinkMessage::DelLink(msg), Answer::Ack, |_| {})
    }

    /// The default routes of the main table for `family` (`ip -4|-6 route show default`).
    pub fn default_routes(&mut self, family: AddressFamily) -> io::Result<Vec<DefaultRoute>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let mut out = Vec::new();
        self.request(RouteNetlinkMessage::GetRoute(msg), Answer::Dump, |msg| {
            if let RouteNetlinkMessage::NewRoute(r) = msg {
                if r.header.address_family == family {
                    out.extend(default_route_of(&r));
                }
            }
        })?;
        Ok(out)
    }

    /// Remove `net` from link `ifindex` (`ip addr del NET dev IF`).
    pub fn del_addr(&mut self, ifindex: u32, net: IpNet) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelAddress(address_message(ifindex, net));
        self.request(msg, Answer::Ack, |_| {})
    }

    /// Give link `ifindex` the address `net` (`ip addr add NET dev IF`).
    pub fn add_addr(&mut self, ifindex: u32, net: IpNet) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(address_message(ifindex, net));
        self.request_with(msg, NLM_F_CREATE | NLM_F_EXCL, Answer::Ack, |_| {})
    }

    /// Add an IPv4 default route through `gateway` in the main table (`ip route add
    /// default via GW`).
    pub fn add_default_route_v4(&mut self, gateway: std::net::Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        let msg = RouteNetlinkMessage::NewRoute(msg);
        self.request_with(msg, NLM_F_CREATE | NLM_F_EXCL, Answer::Ack, |_| {})
    }

    /// The id this namespace gives the namespace `ns_fd` is a handle of (`RTM_GETNSID` with
    /// `NETNSA_FD`); None when it gives it none.
    pub fn nsid_of(&mut self, ns_fd: u32) -> io::Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(ns_fd));
        let mut id = None;
        self.request(RouteNetlinkMessage::GetNsId(msg), Answer::One, |msg| {
            if let RouteNetlinkMessage::NewNsId(m) = msg {
                id = m.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) => Some(*id),
                    _ => None,
                });
            }
        })?;
        match id {
            Some(id) => Ok((id >= 0).then_some(id)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RTM_GETNSID: no NETNSA_NSID in the reply",
            )),
        }
    }

    /// Send `msg` and feed every message of its answer to `each`, until `answer` says it
    /// is complete. A kernel error (`NLMSG_ERROR` with a code) is returned as that errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        answer: Answer,
        each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.request_with(msg, 0, answer, each)
    }

    /// [`Rtnl::request`] with more header flags (`NLM_F_CREATE`…).
    fn request_with(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        answer: Answer,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST
            | flags
            | match answer {
                Answer::Dump => NLM_F_DUMP,
                Answer::Ack => NLM_F_ACK,
                Answer::One => 0,
            };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;

        let mut rx = vec![0u8; RECV_BUF];
        loop {
            // MSG_TRUNC: the datagram's real length, so a truncated one is seen as such.
            let n = self.sock.recv(&mut &mut rx[..], libc::MSG_TRUNC)?;
            if n > RECV_BUF {
                return Err(bad("a datagram larger than the receive buffer"));
            }
            let mut at = 0;
            while at < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n])
                    .map_err(|e| bad(&format!("unparsable message: {e}")))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(bad("a message of length 0"));
                }
                // Align to 4 as the kernel does between messages of one datagram.
                at += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue; // an answer to an earlier request that gave up
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()), // the ACK
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        each(m);
                        if answer == Answer::One {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// An address message naming `net` on link `ifindex`, as iproute2 sends one: both
/// attributes carry the address (IPv4 matches on `IFA_LOCAL`, IPv6 on either).
fn address_message(ifindex: u32, net: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = ifindex;
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    msg
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {why}"))
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: l.header.index,
        up: l.header.flags.contains(LinkFlags::Up),
        loopback: l.header.flags.contains(LinkFlags::Loopback),
        ether: l.header.link_layer_type == LinkLayerType::Ether,
        ..Link::default()
    };
    for attr in &l.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.ifname = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::Link(index) => link.link_index = Some(*index),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
            LinkAttribute::LinkInfo(infos) => {
                link.veth = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            _ => {}
        }
    }
    link
}

fn addr_of(a: &AddressMessage) -> Option<Addr> {
    let find = |want_local: bool| {
        a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let ip = find(true).or_else(|| find(false))?;
    Some(Addr {
        ifindex: a.header.index,
        net: IpNet::new(ip, a.header.prefix_len).ok()?,
    })
}

/// `r` as a default route of the main table, if it is one (what `ip route show default`
/// lists: a unicast route to the /0 prefix).
fn default_route_of(r: &RouteMessage) -> Option<DefaultRoute> {
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    if r.header.destination_prefix_length != 0
        || r.header.kind != RouteType::Unicast
        || table != u32::from(RouteHeader::RT_TABLE_MAIN)
    {
        return None;
    }
    let mut route = DefaultRoute::default();
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Gateway(gw) => route.gateway = ip_of(gw),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            RouteAttribute::MultiPath(hops) => {
                route.nexthops = hops
                    .iter()
                    .map(|h| {
                        let gw = h.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(gw) => ip_of(gw),
                            _ => None,
                        });
                        (h.interface_index, gw)
                    })
                    .collect();
            }
            _ => {}
        }
    }
    Some(route)
}

/// The destination prefix of `r`, unless it is /0. A route without `RTA_DST` is to the
/// all-zero address.
fn destination_of(r: &RouteMessage) -> Option<IpNet> {
    let len = r.header.destination_prefix_length;
    if len == 0 {
        return None;
    }
    let dst = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => ip_of(d),
            _ => None,
        })
        .or(match r.header.address_family {
            AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
            _ => None,
        })?;
    IpNet::new(dst, len).ok()
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root may open a route socket in its own namespace: the loopback link is always there.
    #[test]
    fn lists_loopback_and_its_address() {
        let mut nl = Rtnl::open().expect("netlink socket");
        let links = nl.links().expect("links");
        let lo = links.iter().find(|l| l.loopback).expect("a loopback link");
        assert_eq!(lo.ifname, "lo");
        assert!(!lo.ether && !lo.veth);
        if lo.up {
            let addrs = nl.addrs(lo.ifindex).expect("addrs");
            assert!(
                addrs.iter().any(|a| a.net.addr().is_loopback()),
                "{addrs:?}"
            );
        }
        nl.default_routes(AddressFamily::Inet).expect("routes");
    }

    /// In a namespace of its own (root only): add an address and a default route, read
    /// them back as adoption does, remove the address.
    #[test]
    fn adds_reads_and_removes_in_a_private_namespace() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: plain syscall; it moves only this short-lived thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let mut nl = Rtnl::open().expect("netlink socket");
            let lo = nl
                .links()
                .expect("links")
                .into_iter()
                .find(|l| l.loopback)
                .expect("lo");
            let net: IpNet = "192.0.2.7/24".parse().expect("cidr");
            nl.add_addr(lo.ifindex, net).expect("add");
            assert_eq!(
                nl.add_addr(lo.ifindex, net)
                    .expect_err("twice")
                    .raw_os_error(),
                Some(libc::EEXIST)
            );
            let addrs = nl.addrs(lo.ifindex).expect("addrs");
            assert!(addrs.iter().any(|a| a.net == net), "{addrs:?}");
            // Loopback is down in a new namespace: the gateway is unreachable.
            let err = nl
                .add_default_route_v4("192.0.2.1".parse().expect("ip"))
                .expect_err("no route to the gateway");
            assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
            nl.del_addr(lo.ifindex, net).expect("del");
            assert!(nl.addrs(lo.ifindex).expect("addrs").is_empty());
        })
        .join()
        .expect("thread");
    }

    /// In a namespace of its own (root only): a veth pair whose peer is created in a second
    /// namespace, named, aliased, brought up, found by name, deleted together.
    #[test]
    fn makes_and_deletes_a_veth_pair_across_namespaces() {
        use std::os::fd::AsFd as _;

        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let (peer_tx, peer_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let peer_ns = std::thread::spawn(move || {
            // SAFETY: plain syscall; it moves only this short-lived thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let ns = std::fs::File::open("/proc/thread-self/ns/net").expect("open ns");
            peer_tx.send(ns).expect("send");
            // Stay until the other side has looked; then report what is here.
            done_rx.recv().expect("done");
            let mut nl = Rtnl::open().expect("netlink in the peer namespace");
            nl.links().expect("links")
        });
        let peer_ns_file = peer_rx.recv().expect("peer namespace");
        let host = std::thread::spawn(move || {
            // SAFETY: plain syscall; it moves only this short-lived thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let mut nl = Rtnl::open().expect("netlink socket");
            nl.add_veth("nvtest0", "eth7", peer_ns_file.as_fd())
                .expect("add veth");
            let err = nl
                .add_veth("nvtest0", "eth8", peer_ns_file.as_fd())
                .expect_err("twice");
            assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
            let link = nl.link("nvtest0").expect("by name");
            assert!(link.veth && link.ether && !link.up, "{link:?}");
            assert!(
                link.link_netnsid.is_some(),
                "the peer is elsewhere: {link:?}"
            );
            assert_eq!(link.alias, None);
            nl.set_alias(link.ifindex, "nanovisor test").expect("alias");
            nl.set_link_up(link.ifindex).expect("up");
            let link = nl.link("nvtest0").expect("by name");
            assert_eq!(link.alias.as_deref(), Some("nanovisor test"));
            assert!(link.up);
            let err = nl.link("eth7").expect_err("the peer is elsewhere");
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
            nl.del_link(link.ifindex).expect("del");
            assert!(nl.links().expect("links").iter().all(|l| !l.veth));
        });
        host.join().expect("host thread");
        done_tx.send(()).expect("done");
        let peer_links = peer_ns.join().expect("peer thread");
        // The peer went with its other end.
        assert!(
            peer_links.iter().all(|l| l.ifname != "eth7"),
            "{peer_links:?}"
        );
    }

    /// Route destinations: a /24 on a link, and nothing for the /0 prefix.
    #[test]
    fn lists_route_destinations_but_not_default() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: plain syscall; it moves only this short-lived thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let mut nl = Rtnl::open().expect("netlink socket");
            let lo = nl.link("lo").expect("lo");
            nl.set_link_up(lo.ifindex).expect("up");
            nl.add_addr(lo.ifindex, "192.0.2.7/24".parse().expect("cidr"))
                .expect("add");
            nl.add_default_route_v4("192.0.2.1".parse().expect("ip"))
                .expect("default route");
            let dsts = nl.route_destinations(AddressFamily::Inet).expect("routes");
            let want: IpNet = "192.0.2.0/24".parse().expect("cidr");
            assert!(dsts.contains(&want), "{dsts:?}");
            assert!(dsts.iter().all(|d| d.prefix_len() > 0), "{dsts:?}");
            assert!(dsts.iter().all(|d| d.addr().is_ipv4()), "{dsts:?}");
            assert_eq!(nl.default_routes(AddressFamily::Inet).expect("d").len(), 1);
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn kernel_errors_come_back_as_errno() {
        let mut nl = Rtnl::open().expect("netlink socket");
        // No link has index 0x7fff_fff0.
        let err = nl
            .del_addr(0x7fff_fff0, "192.0.2.9/24".parse().expect("cidr"))
            .expect_err("no such link");
        assert!(err.raw_os_error().is_some(), "{err}");
    }
}

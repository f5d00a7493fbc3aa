//! NETLINK_ROUTE messages: the requests a guest sends and the answers the sentry builds
//! for them from the sandbox's interfaces. Only reading is offered (links and addresses);
//! a request to change anything is refused with EPERM, as for a container without
//! CAP_NET_ADMIN: the sandbox's network is the sentry's, not the guest's.
//!
//! Layouts are Linux's (uapi linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
//! linux/if_addr.h): a 16-byte `nlmsghdr`, a fixed header per message kind, then
//! attributes (`rtattr`: length, type, value), each aligned to 4 bytes.

use std::net::IpAddr;

use netstack::stack::InterfaceInfo;

use crate::abi::Errno;

pub const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

const RTM_BASE: u16 = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
/// The last rtnetlink message type Linux 6.x knows (RTM_NEWTUNNEL's family ends below).
const RTM_MAX: u16 = 123;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_MULTICAST: u32 = 0x1000;
const IFF_LOWER_UP: u32 = 0x1_0000;

const IFLA_ADDRESS: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKMODE: u16 = 17;
const IF_OPER_UNKNOWN: u8 = 0;
const IF_OPER_UP: u8 = 6;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;

const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;

/// Messages are padded to this.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A request's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl Header {
    fn parse(b: &[u8]) -> Option<Header> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let u16_at = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
        Some(Header {
            len: u32_at(0)?,
            kind: u16_at(4)?,
            flags: u16_at(6)?,
            seq: u32_at(8)?,
            pid: u32_at(12)?,
        })
    }
}

/// Builds answer messages.
struct Writer<'a> {
    out: &'a mut Vec<Vec<u8>>,
    seq: u32,
    port: u32,
}

impl Writer<'_> {
    /// One message of `kind` with `body` (its fixed header and attributes).
    fn message(&mut self, kind: u16, flags: u16, body: &[u8]) {
        let len = NLMSG_HDRLEN + body.len();
        let mut m = Vec::with_capacity(align(len));
        m.extend_from_slice(&(len as u32).to_le_bytes());
        m.extend_from_slice(&kind.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&self.seq.to_le_bytes());
        m.extend_from_slice(&self.port.to_le_bytes());
        m.extend_from_slice(body);
        m.resize(align(len), 0);
        self.out.push(m);
    }
}

/// Append attribute `kind` with `value`, padded.
fn attr(body: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    body.extend_from_slice(&(len as u16).to_le_bytes());
    body.extend_from_slice(&kind.to_le_bytes());
    body.extend_from_slice(value);
    body.resize(align(body.len()), 0);
}

fn name_value(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// An RTM_NEWLINK body (ifinfomsg and attributes) for `i`.
fn link_body(i: &InterfaceInfo) -> Vec<u8> {
    let (kind, flags, mac, broadcast, oper) = match i.mac {
        None => (
            ARPHRD_LOOPBACK,
            IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
            [0; 6],
            [0; 6],
            IF_OPER_UNKNOWN,
        ),
        Some(mac) => (
            ARPHRD_ETHER,
            IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST | IFF_LOWER_UP,
            mac,
            [0xff; 6],
            IF_OPER_UP,
        ),
    };
    let mut b = Vec::with_capacity(128);
    b.push(AF_UNSPEC);
    b.push(0);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&(i.index as i32).to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // ifi_change
    attr(&mut b, IFLA_IFNAME, &name_value(&i.name));
    attr(&mut b, IFLA_TXQLEN, &1000u32.to_le_bytes());
    attr(&mut b, IFLA_OPERSTATE, &[oper]);
    attr(&mut b, IFLA_LINKMODE, &[0]);
    attr(&mut b, IFLA_MTU, &i.mtu.to_le_bytes());
    attr(&mut b, IFLA_ADDRESS, &mac);
    attr(&mut b, IFLA_BROADCAST, &broadcast);
    b
}

/// An RTM_NEWADDR body (ifaddrmsg and attributes) for address `net` of `i`.
fn addr_body(i: &InterfaceInfo, net: &ipnet::IpNet) -> Vec<u8> {
    let (family, scope) = match net.addr() {
        IpAddr::V4(a) if a.is_loopback() => (AF_INET, RT_SCOPE_HOST),
        IpAddr::V4(_) => (AF_INET, RT_SCOPE_UNIVERSE),
        IpAddr::V6(a) if a.is_loopback() => (AF_INET6, RT_SCOPE_HOST),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => (AF_INET6, RT_SCOPE_LINK),
        IpAddr::V6(_) => (AF_INET6, RT_SCOPE_UNIVERSE),
    };
    let mut b = Vec::with_capacity(96);
    b.push(family);
    b.push(net.prefix_len());
    b.push(IFA_F_PERMANENT as u8);
    b.push(scope);
    b.extend_from_slice(&i.index.to_le_bytes());
    match net {
        ipnet::IpNet::V4(v4) => {
            let a = v4.addr().octets();
            attr(&mut b, IFA_ADDRESS, &a);
            attr(&mut b, IFA_LOCAL, &a);
            if !i.is_loopback() && v4.prefix_len() < 31 {
                attr(&mut b, IFA_BROADCAST, &v4.broadcast().octets());
            }
            attr(&mut b, IFA_LABEL, &name_value(&i.name));
        }
        ipnet::IpNet::V6(v6) => attr(&mut b, IFA_ADDRESS, &v6.addr().octets()),
    }
    attr(&mut b, IFA_FLAGS, &IFA_F_PERMANENT.to_le_bytes());
    b
}

/// Answer one request (`msg`: header and payload): the messages to queue, in order.
fn answer(h: Header, msg: &[u8], ifaces: &[InterfaceInfo], w: &mut Writer) -> Result<(), Errno> {
    let payload = &msg[NLMSG_HDRLEN..];
    if h.kind > RTM_MAX {
        return Err(Errno::EOPNOTSUPP);
    }
    // Every rtnetlink type is NEW, DEL, GET or SET of some object, in that order.
    if h.kind & 3 != 2 {
        return Err(Errno::EPERM);
    }
    let dump = h.flags & NLM_F_DUMP == NLM_F_DUMP;
    match (h.kind, dump) {
        (RTM_GETLINK, true) => {
            for i in ifaces {
                w.message(RTM_NEWLINK, NLM_F_MULTI, &link_body(i));
            }
        }
        (RTM_GETLINK, false) => {
            // By index (ifinfomsg.ifi_index) or, with index 0, by IFLA_IFNAME.
            let index = payload
                .get(4..8)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(Errno::EINVAL)?;
            let name = if index == 0 {
                find_attr(payload.get(16..).unwrap_or(&[]), IFLA_IFNAME)
                    .map(|v| v.split(|b| *b == 0).next().unwrap_or(&[]).to_vec())
            } else {
                None
            };
            let found = ifaces.iter().find(|i| match &name {
                Some(n) => i.name.as_bytes() == n.as_slice(),
                None => i.index as i32 == index,
            });
            let i = found.ok_or(Errno::ENODEV)?;
            w.message(RTM_NEWLINK, 0, &link_body(i));
        }
        (RTM_GETADDR, true) => {
            let family = payload.first().copied().unwrap_or(AF_UNSPEC);
            // Linux dumps one family after the other: IPv4 first.
            for want in [AF_INET, AF_INET6] {
                if family != AF_UNSPEC && family != want {
                    continue;
                }
                for i in ifaces {
                    for net in i
                        .addrs
                        .iter()
                        .filter(|n| (want == AF_INET) == n.addr().is_ipv4())
                    {
                        w.message(RTM_NEWADDR, NLM_F_MULTI, &addr_body(i, net));
                    }
                }
            }
        }
        _ => return Err(Errno::EOPNOTSUPP),
    }
    if dump {
        w.message(NLMSG_DONE, NLM_F_MULTI, &0i32.to_le_bytes());
    }
    Ok(())
}

fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_le_bytes([attrs[0], attrs[1]]) as usize;
        let t = u16::from_le_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if t == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    None
}

/// Answer every request in `data` (one send), for the socket with port id `port`. Returns
/// the messages to queue for the sender, each as it will be read. `cap_ack`: error
/// messages carry only the request's header (NETLINK_CAP_ACK), not the whole request.
pub fn handle(data: &[u8], ifaces: &[InterfaceInfo], port: u32, cap_ack: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    // Like Linux (netlink_rcv_skb), stop at the first message whose length is impossible.
    while let Some(h) = Header::parse(rest) {
        let len = h.len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let msg = &rest[..len];
        rest = &rest[align(len).min(rest.len())..];
        // Not a request, or a control message (NOOP, ERROR, DONE): nothing to answer.
        if h.flags & NLM_F_REQUEST == 0 || h.kind < RTM_BASE {
            continue;
        }
        let mut w = Writer {
            out: &mut out,
            seq: h.seq,
            port,
        };
        let result = answer(h, msg, ifaces, &mut w);
        let error = match result {
            Err(e) => -e.0,
            Ok(()) if h.flags & NLM_F_ACK != 0 && h.flags & NLM_F_DUMP != NLM_F_DUMP => 0,
            Ok(()) => continue,
        };
        let echoed = if error == 0 || cap_ack {
            &msg[..NLMSG_HDRLEN]
        } else {
            msg
        };
        let mut body = error.to_le_bytes().to_vec();
        body.extend_from_slice(echoed);
        w.message(NLMSG_ERROR, 0, &body);
    }
    out
}

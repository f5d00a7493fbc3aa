//! [`AdoptedNetns`]: a network namespace someone else made, taken over for a sandbox
//! (`runsc do --netns PATH`).
//!
//! In Kubernetes a CNI plugin makes the pod's namespace: an interface (a veth, `eth0`) with the
//! pod's addresses and a default route, all configured in that namespace's kernel. Adoption does
//! what gVisor does with it: read the interface's addresses (IPv6 link-local ones excepted),
//! default gateways and MTU, then remove the addresses from the kernel interface and turn the
//! kernel's IPv6 off on it, so the namespace's kernel no longer answers ARP, NDP or TCP for
//! them. The sandbox's user-space stack owns them from then on and reaches the interface
//! through an AF_PACKET socket opened inside ([`AdoptedNetns::run_inside`]); it keeps the
//! interface's MAC address, so neighbours' ARP caches stay right.
//!
//! Adoption is one-way: nothing is given back when the sandbox exits (the namespace's owner
//! deletes it with the pod). Removing the last IPv4 address makes the kernel drop the routes
//! through the interface as well; they were read before. A second adoption of the same namespace
//! finds no address and fails, so two sandboxes never share an interface. A failure half-way
//! through removing addresses leaves the ones already removed removed.
//!
//! Offloads: the sandbox verifies every checksum and takes frames of at most MTU bytes. Inside,
//! GRO is turned off on the interface (so received segments are not merged before the packet
//! socket sees them) and TX checksum/TSO/GSO too (what the sandbox sends is complete anyway).
//! What matters most are the *peer* end's TX offloads: with TSO/GSO on, the peer hands the veth
//! TCP segments of up to 64 KiB, which [`sentry::net::link::PacketLink`] drops (it completes
//! partial checksums, but cannot split super-frames). The peer lives in another namespace. When
//! that is runsc's own (the node's, as with the CNI bridge and ptp plugins) and the match is
//! certain — each end names the other's ifindex, and the peer's link-netnsid is the id runsc's
//! namespace gives the adopted one (`RTM_GETNSID`) — the peer's offloads are turned off too.
//! Otherwise (a peer in a third namespace, not a veth, or not ours to change) they are left
//! alone with a warning, and host-to-sandbox TCP segments larger than the MTU are lost until
//! whoever made the namespace runs `ethtool -K PEER tx off tso off gso off`.
//!
//! Threads: as in [`super::netns`], one dedicated thread `setns`es into the namespace and stays
//! there, running closures (and the `ip` commands, which inherit its namespace); every other
//! thread keeps the caller's namespace. The namespace lives at least as long as that thread or
//! any socket opened in it, even if its owner unmounts `PATH` meanwhile.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context as _};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ns_thread::NsThread;

/// A network namespace whose interface's addresses now belong to a sandbox. Dropping it lets the
/// thread inside go; the namespace stays as its owner left it (minus the addresses).
pub struct AdoptedNetns {
    /// The namespace, as the caller named it.
    pub path: PathBuf,
    /// The adopted interface inside (e.g. `eth0`).
    pub ifname: String,
    /// The addresses taken from the interface, with their prefixes (no IPv6 link-local).
    pub addrs: Vec<IpNet>,
    /// The gateway of the interface's IPv4 default route (lowest metric), if any.
    pub gateway_v4: Option<Ipv4Addr>,
    /// The gateway of the interface's IPv6 default route (lowest metric), if any.
    pub gateway_v6: Option<Ipv6Addr>,
    /// The interface's MTU.
    pub mtu: u32,
    /// The veth peer in runsc's namespace whose TX offloads were turned off, when found.
    pub peer_if: Option<String>,
    inside: NsThread,
}

impl AdoptedNetns {
    /// Enter the network namespace at `path` (`/var/run/netns/NAME`, `/proc/PID/ns/net`) on a
    /// dedicated thread, find the interface (`ifname`, or the first Ethernet one other than
    /// loopback that is up), read its addresses, default gateways and MTU, remove the addresses
    /// from the kernel interface and turn offloads off (see the module doc). Call it from a
    /// thread in runsc's own namespace; needs CAP_SYS_ADMIN and CAP_NET_ADMIN, and iproute2.
    pub fn adopt(path: &Path, ifname: Option<&str>) -> anyhow::Result<AdoptedNetns> {
        let ns_file = File::open(path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        let thread_file = ns_file
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", path.display()))?;
        let inside = NsThread::spawn("netns-adopted", move || {
            // SAFETY: plain syscall on an fd `thread_file` owns; it moves only this
            // thread into the network namespace.
            if unsafe { libc::setns(thread_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .with_context(|| {
            format!(
                "setns({}, CLONE_NEWNET) (not a network namespace, or no CAP_SYS_ADMIN?)",
                path.display()
            )
        })?;
        let place = Place::Inside(path.to_owned());

        let wanted = ifname.map(str::to_owned);
        let iface = {
            let place = place.clone();
            inside.run(move || Iface::read(&place, wanted.as_deref()))??
        };
        {
            let (place, name, addrs) = (place.clone(), iface.name.clone(), iface.addrs.clone());
            inside.run(move || release(&place, &name, &addrs))??;
        }
        let peer_if = turn_peer_offloads_off(&ns_file, path, &iface);

        tracing::debug!(
            netns = %path.display(),
            ifname = %iface.name,
            addrs = ?iface.addrs,
            gateway_v4 = ?iface.gateway_v4,
            gateway_v6 = ?iface.gateway_v6,
            mtu = iface.mtu,
            peer = ?peer_if,
            "adopted network namespace"
        );
        Ok(AdoptedNetns {
            path: path.to_owned(),
            ifname: iface.name,
            addrs: iface.addrs,
            gateway_v4: iface.gateway_v4,
            gateway_v6: iface.gateway_v6,
            mtu: iface.mtu,
            peer_if,
            inside,
        })
    }

    /// Run `f` on the thread that lives in the namespace (so a socket it opens, such as the
    /// sandbox's AF_PACKET link, belongs to the namespace) and return its result. Processes
    /// `f` spawns start in the namespace too. Fails if `f` panics.
    pub fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.inside.run(f)
    }
}

impl Drop for AdoptedNetns {
    fn drop(&mut self) {
        self.inside.stop();
    }
}

/// Which namespace a command runs in, for error messages.
#[derive(Clone)]
enum Place {
    /// The adopted namespace, by the path the caller gave.
    Inside(PathBuf),
    /// runsc's own namespace.
    Runsc,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Inside(path) => write!(f, "network namespace {}", path.display()),
            Place::Runsc => f.write_str("runsc's network namespace"),
        }
    }
}

/// What adoption learns about the interface inside.
#[derive(Debug)]
struct Iface {
    name: String,
    ifindex: u32,
    mtu: u32,
    /// The veth peer: its ifindex, and the id the adopted namespace gives the peer's namespace
    /// (None: the peer is in the same namespace).
    peer: Option<(u32, Option<i32>)>,
    addrs: Vec<IpNet>,
    gateway_v4: Option<Ipv4Addr>,
    gateway_v6: Option<Ipv6Addr>,
}

impl Iface {
    /// Read the interface from the calling thread's namespace (`place`).
    fn read(place: &Place, wanted: Option<&str>) -> anyhow::Result<Iface> {
        let links: Vec<Link> = ip_json(place, &["-j", "-d", "link", "show"])?;
        let link = pick_link(&links, wanted).map_err(|why| anyhow!("{place}: {why}"))?;
        let name = link.ifname.clone();
        let with_addrs: Vec<Link> = ip_json(place, &["-j", "addr", "show", "dev", &name])?;
        let addrs = with_addrs
            .first()
            .map(|l| adoptable_addrs(&l.addr_info))
            .unwrap_or_default();
        if addrs.is_empty() {
            bail!(
                "{place}: {name} has no address to adopt (is it configured yet, or did another \
                 sandbox adopt it already?)"
            );
        }
        // Ask only for the families the interface has: a kernel without IPv6 fails `ip -6`.
        let mut gateway_v4 = None;
        if addrs.iter().any(|a| a.addr().is_ipv4()) {
            let routes: Vec<Route> = ip_json(place, &["-j", "-4", "route", "show", "default"])?;
            gateway_v4 = match default_gateway(&routes, &name) {
                Some(IpAddr::V4(gw)) => Some(gw),
                _ => None,
            };
        }
        let mut gateway_v6 = None;
        if addrs.iter().any(|a| a.addr().is_ipv6()) {
            let routes: Vec<Route> = ip_json(place, &["-j", "-6", "route", "show", "default"])?;
            gateway_v6 = match default_gateway(&routes, &name) {
                Some(IpAddr::V6(gw)) => Some(gw),
                _ => None,
            };
        }
        let peer = match (&link.linkinfo, link.link_index) {
            (Some(info), Some(index)) if info.info_kind.as_deref() == Some("veth") => {
                Some((index, link.link_netnsid))
            }
            _ => None,
        };
        Ok(Iface {
            name,
            ifindex: link.ifindex,
            mtu: link.mtu.unwrap_or(1500),
            peer,
            addrs,
            gateway_v4,
            gateway_v6,
        })
    }
}

/// Remove `addrs` from `ifname` in the calling thread's namespace (`place`), turn the kernel's
/// IPv6 off on it, and its offloads (best effort).
fn release(place: &Place, ifname: &str, addrs: &[IpNet]) -> anyhow::Result<()> {
    // Last first: `ip addr` lists an IPv4 subnet's primary address before its secondaries, and
    // deleting a primary takes its secondaries with it.
    for net in addrs.iter().rev() {
        let net = net.to_string();
        ip(place, &["addr", "del", &net, "dev", ifname])
            .with_context(|| format!("removing {net} from {ifname}"))?;
    }
    // No link-local address, router solicitations or NDP answers from the kernel either; the
    // sandbox answers for its own addresses. A kernel without IPv6 has nothing to turn off.
    let v6 = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if Path::new("/proc/sys/net/ipv6").exists() {
        if let Err(e) = std::fs::write(&v6, "1") {
            tracing::warn!("{place}: writing 1 to {v6}: {e}");
        }
    }
    if let Err(e) = super::ethtool::disable_gro(ifname) {
        tracing::warn!("{place}: {e}; large received segments may be merged and dropped");
    }
    if let Err(e) = super::ethtool::disable_tx_offloads(ifname) {
        tracing::debug!("{place}: {e}");
    }
    Ok(())
}

/// Turn the TX offloads of `iface`'s veth peer off when it is certainly in runsc's namespace
/// (called from a thread there); its name then. `ns` is a handle of the adopted namespace.
fn turn_peer_offloads_off(ns: &File, path: &Path, iface: &Iface) -> Option<String> {
    let keep = |why: String| {
        tracing::warn!(
            "network namespace {}: leaving the offloads of {}'s peer alone: {why}; unless they \
             are off (ethtool -K PEER tx off tso off gso off), TCP segments larger than the MTU \
             sent to the sandbox are lost",
            path.display(),
            iface.name
        );
        None
    };
    let Some((peer_index, peer_nsid)) = iface.peer else {
        return keep("it is not a veth".to_owned());
    };
    if peer_nsid.is_none() {
        return keep("the peer is inside the adopted namespace too".to_owned());
    }
    // Listing the links first makes the kernel give the adopted namespace an id here, if a
    // peer is here and it had none.
    let links: Vec<Link> = match ip_json(&Place::Runsc, &["-j", "-d", "link", "show"]) {
        Ok(links) => links,
        Err(e) => return keep(format!("{e:#}")),
    };
    let nsid = match nsid_of(ns) {
        Ok(Some(id)) => id,
        Ok(None) => return keep("no link in runsc's namespace leads into it".to_owned()),
        Err(e) => return keep(format!("RTM_GETNSID: {e}")),
    };
    let Some(peer) = find_peer(&links, iface.ifindex, peer_index, nsid) else {
        return keep("the peer is not in runsc's namespace".to_owned());
    };
    match super::ethtool::disable_tx_offloads(&peer.ifname) {
        Ok(()) => Some(peer.ifname.clone()),
        Err(e) => keep(e.to_string()),
    }
}

/// A link in `ip -j [-d] link|addr` output (the fields adoption reads).
#[derive(Debug, Deserialize)]
struct Link {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    mtu: Option<u32>,
    link_type: Option<String>,
    /// The peer's ifindex (veth), in the namespace `link_netnsid` names.
    link_index: Option<u32>,
    /// Absent when the peer is in the same namespace.
    link_netnsid: Option<i32>,
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    info_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    local: Option<IpAddr>,
    prefixlen: Option<u8>,
}

/// A route in `ip -j route` output.
#[derive(Debug, Deserialize)]
struct Route {
    dev: Option<String>,
    gateway: Option<IpAddr>,
    metric: Option<u32>,
    /// Multipath routes name devices and gateways per hop.
    #[serde(default)]
    nexthops: Vec<NextHop>,
}

#[derive(Debug, Deserialize)]
struct NextHop {
    dev: Option<String>,
    gateway: Option<IpAddr>,
}

/// The interface to adopt: `wanted` (which must be up), or the first Ethernet link other than
/// loopback that is up.
fn pick_link<'a>(links: &'a [Link], wanted: Option<&str>) -> Result<&'a Link, String> {
    let up = |l: &Link| l.flags.iter().any(|f| f == "UP");
    match wanted {
        Some(name) => {
            let link = links
                .iter()
                .find(|l| l.ifname == name)
                .ok_or_else(|| format!("no interface {name}"))?;
            if !up(link) {
                return Err(format!("{name} is down"));
            }
            Ok(link)
        }
        None => links
            .iter()
            .find(|l| {
                up(l)
                    && !l.flags.iter().any(|f| f == "LOOPBACK")
                    && l.link_type.as_deref() == Some("ether")
            })
            .ok_or_else(|| "no Ethernet interface other than loopback is up".to_owned()),
    }
}

/// The addresses worth adopting: all but IPv6 link-local ones (`fe80::/10`), which the sandbox
/// neither needs nor could keep unique.
fn adoptable_addrs(infos: &[AddrInfo]) -> Vec<IpNet> {
    infos
        .iter()
        .filter_map(|a| IpNet::new(a.local?, a.prefixlen?).ok())
        .filter(|net| match net.addr() {
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect()
}

/// The gateway of the lowest-metric default route through `ifname`, if one has a gateway.
fn default_gateway(routes: &[Route], ifname: &str) -> Option<IpAddr> {
    routes
        .iter()
        .filter_map(|r| {
            let gw = if r.dev.as_deref() == Some(ifname) {
                r.gateway
            } else {
                r.nexthops
                    .iter()
                    .find(|h| h.dev.as_deref() == Some(ifname) && h.gateway.is_some())
                    .and_then(|h| h.gateway)
            };
            Some((r.metric.unwrap_or(0), gw?))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gw)| gw)
}

/// The veth in `links` (runsc's namespace) that is the peer of the adopted interface: its
/// ifindex is `peer_index`, its own peer is `ifindex` in the namespace runsc calls `nsid`.
fn find_peer(links: &[Link], ifindex: u32, peer_index: u32, nsid: i32) -> Option<&Link> {
    links.iter().find(|l| {
        l.ifindex == peer_index
            && l.link_index == Some(ifindex)
            && l.link_netnsid == Some(nsid)
            && l.linkinfo.as_ref().and_then(|i| i.info_kind.as_deref()) == Some("veth")
    })
}

/// Run `ip ARGS` in the calling thread's network namespace (`place`) and return its stdout.
fn ip(place: &Place, args: &[&str]) -> anyhow::Result<String> {
    let cmdline = format!("ip {}", args.join(" "));
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            anyhow!("running `{cmdline}` in {place}: `ip` not found (install iproute2)")
        } else {
            anyhow!("running `{cmdline}` in {place}: {e}")
        }
    })?;
    if !out.status.success() {
        bail!(
            "`{cmdline}` in {place} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{cmdline}` in {place}: not UTF-8"))
}

/// Run `ip -j …` (see [`ip`]) and parse its JSON.
fn ip_json<T: DeserializeOwned>(place: &Place, args: &[&str]) -> anyhow::Result<T> {
    let out = ip(place, args)?;
    serde_json::from_str(&out)
        .with_context(|| format!("parsing the output of `ip {}` in {place}", args.join(" ")))
}

// From <linux/net_namespace.h>; libc does not carry them.
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_ALIGN(sizeof(struct rtgenmsg))`.
const RTGENMSG_LEN: usize = 4;
/// Attribute types carry two flag bits above these.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The id the calling thread's namespace gives the namespace `ns` is a handle of
/// (`RTM_GETNSID` with `NETNSA_FD`); None when it gives it none.
fn nsid_of(ns: &File) -> io::Result<Option<i32>> {
    // SAFETY: plain syscall with constant arguments; no pointers.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    let mut sock = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let fd = u32::try_from(ns.as_raw_fd()).map_err(|_| io::Error::other("negative fd"))?;
    // A request always gets an answer (RTM_NEWNSID or an error), so the read cannot hang.
    sock.write_all(&getnsid_request(fd))?;
    let mut reply = [0u8; 512];
    let n = sock.read(&mut reply)?;
    parse_nsid_reply(&reply[..n])
}

/// An `RTM_GETNSID` request naming the namespace by the fd `ns_fd`.
fn getnsid_request(ns_fd: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + RTGENMSG_LEN + 8;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_GETNSID.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // struct rtgenmsg, padded
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    msg.extend_from_slice(&ns_fd.to_ne_bytes());
    msg
}

/// The nsid in the kernel's answer to [`getnsid_request`]; None for "not assigned" (-1).
fn parse_nsid_reply(buf: &[u8]) -> io::Result<Option<i32>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("RTM_GETNSID: {why}"));
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let i32_at = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|s| i32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let len = i32_at(buf, 0).ok_or_else(|| bad("short reply"))? as u32 as usize;
    let msg = buf.get(..len).ok_or_else(|| bad("truncated reply"))?;
    match u16_at(msg, 4).ok_or_else(|| bad("short reply"))? {
        t if t == libc::NLMSG_ERROR as u16 => {
            let err = i32_at(msg, NLMSG_HDRLEN).ok_or_else(|| bad("short error"))?;
            Err(io::Error::from_raw_os_error(err.saturating_neg()))
        }
        t if t == libc::RTM_NEWNSID => {
            let mut at = NLMSG_HDRLEN + RTGENMSG_LEN;
            while let (Some(alen), Some(atype)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
                let alen = usize::from(alen);
                if alen < 4 {
                    break;
                }
                if atype & NLA_TYPE_MASK == NETNSA_NSID {
                    let id = i32_at(msg, at + 4).ok_or_else(|| bad("short NETNSA_NSID"))?;
                    return Ok((id >= 0).then_some(id));
                }
                at += (alen + 3) & !3;
            }
            Err(bad("no NETNSA_NSID in the reply"))
        }
        t => Err(bad(&format!("unexpected message type {t}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(json: &str) -> Vec<Link> {
        serde_json::from_str(json).expect("parses")
    }

    const CNI_LINKS: &str = r#"[
        {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback"},
        {"ifindex":2,"ifname":"tunl0","flags":["NOARP"],"mtu":1480,"link_type":"ipip"},
        {"ifindex":3,"link_index":73,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
         "mtu":1450,"link_type":"ether","link_netnsid":0,"linkinfo":{"info_kind":"veth"},
         "addr_info":[
           {"family":"inet","local":"10.244.1.7","prefixlen":24,"scope":"global"},
           {"family":"inet6","local":"fd00:10:244:1::7","prefixlen":64,"scope":"global"},
           {"family":"inet6","local":"fe80::c0de:83ff:fee2:68e1","prefixlen":64,"scope":"link"}]},
        {"ifindex":4,"ifname":"net1","flags":["BROADCAST","MULTICAST"],"link_type":"ether"}
    ]"#;

    #[test]
    fn picks_the_first_ethernet_interface_that_is_up() {
        let links = links(CNI_LINKS);
        assert_eq!(pick_link(&links, None).expect("found").ifname, "eth0");
        assert_eq!(pick_link(&links, Some("eth0")).expect("named").ifindex, 3);
        assert_eq!(
            pick_link(&links, Some("net1")).expect_err("down"),
            "net1 is down"
        );
        assert_eq!(
            pick_link(&links, Some("eth9")).expect_err("absent"),
            "no interface eth9"
        );
        assert!(pick_link(&links[..2], None).is_err());
    }

    #[test]
    fn adopts_all_addresses_but_ipv6_link_local() {
        let links = links(CNI_LINKS);
        let addrs = adoptable_addrs(&links[2].addr_info);
        let want: Vec<IpNet> = ["10.244.1.7/24", "fd00:10:244:1::7/64"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect();
        assert_eq!(addrs, want);
        assert_eq!(addrs[0].to_string(), "10.244.1.7/24");
    }

    #[test]
    fn default_gateway_is_the_lowest_metric_route_through_the_interface() {
        let routes: Vec<Route> = serde_json::from_str(
            r#"[
            {"dst":"default","gateway":"192.0.2.1","dev":"net1","flags":[]},
            {"dst":"default","gateway":"10.244.1.254","dev":"eth0","metric":200,"flags":[]},
            {"dst":"default","gateway":"10.244.1.1","dev":"eth0","metric":100,"flags":["onlink"]},
            {"dst":"default","dev":"eth0","metric":1,"flags":[]}
        ]"#,
        )
        .expect("parses");
        assert_eq!(
            default_gateway(&routes, "eth0"),
            Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)))
        );
        assert_eq!(default_gateway(&routes, "eth9"), None);
        let multipath: Vec<Route> = serde_json::from_str(
            r#"[{"dst":"default","metric":1024,"flags":[],"nexthops":[
                {"gateway":"fe80::1","dev":"net1","weight":1,"flags":[]},
                {"gateway":"fe80::2","dev":"eth0","weight":1,"flags":[]}]}]"#,
        )
        .expect("parses");
        assert_eq!(
            default_gateway(&multipath, "eth0"),
            Some("fe80::2".parse().expect("ip"))
        );
    }

    #[test]
    fn the_peer_must_match_both_ways_and_by_namespace_id() {
        let host = links(
            r#"[
            {"ifindex":73,"link_index":3,"ifname":"other","link_netnsid":1,"linkinfo":{"info_kind":"veth"}},
            {"ifindex":73,"link_index":3,"ifname":"vethab12","link_netnsid":2,"linkinfo":{"info_kind":"veth"}},
            {"ifindex":74,"link_index":3,"ifname":"vethcd34","link_netnsid":2,"linkinfo":{"info_kind":"veth"}}
        ]"#,
        );
        assert_eq!(find_peer(&host, 3, 73, 2).expect("peer").ifname, "vethab12");
        // Another pod's veth with the same indices in another namespace is not ours.
        assert_eq!(find_peer(&host, 3, 73, 1).expect("peer").ifname, "other");
        assert!(find_peer(&host, 3, 73, 5).is_none());
        assert!(find_peer(&host, 4, 73, 2).is_none());
    }

    #[test]
    fn nsid_request_and_replies() {
        let req = getnsid_request(7);
        assert_eq!(req.len(), 28);
        assert_eq!(u32::from_ne_bytes([req[0], req[1], req[2], req[3]]), 28);
        assert_eq!(&req[24..28], &7u32.to_ne_bytes());

        let reply = |ty: u16, body: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(body);
            m
        };
        let nsid = |id: i32| {
            let mut body = vec![0u8; 4];
            body.extend_from_slice(&8u16.to_ne_bytes());
            body.extend_from_slice(&NETNSA_NSID.to_ne_bytes());
            body.extend_from_slice(&id.to_ne_bytes());
            reply(libc::RTM_NEWNSID, &body)
        };
        assert_eq!(parse_nsid_reply(&nsid(2)).expect("ok"), Some(2));
        assert_eq!(parse_nsid_reply(&nsid(-1)).expect("ok"), None);
        let err = reply(libc::NLMSG_ERROR as u16, &(-libc::EBADF).to_ne_bytes());
        assert_eq!(
            parse_nsid_reply(&err).expect_err("error").raw_os_error(),
            Some(libc::EBADF)
        );
        assert!(parse_nsid_reply(&nsid(2)[..20]).is_err());
        assert!(parse_nsid_reply(&reply(libc::RTM_NEWNSID, &[0; 4])).is_err());
        assert!(parse_nsid_reply(&[1, 2]).is_err());
    }

    /// Whether this process may create namespaces and veths, with iproute2 present.
    fn can_create() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let have_ip = Command::new("ip").arg("-V").output().is_ok();
        if !(root && have_ip) {
            eprintln!("skipping: needs root and iproute2");
        }
        root && have_ip
    }

    #[test]
    fn nsid_of_own_namespace_is_none_and_of_a_file_an_error() {
        if !can_create() {
            return;
        }
        let own = File::open("/proc/self/ns/net").expect("own netns");
        assert_eq!(nsid_of(&own).expect("answer"), None);
        let not_ns = File::open("/proc/self/stat").expect("a file");
        assert!(nsid_of(&not_ns).is_err());
    }

    /// A namespace made the way the CNI bridge plugin makes one; deleted when dropped.
    struct CniNetns {
        name: String,
        host_if: String,
    }

    impl Drop for CniNetns {
        fn drop(&mut self) {
            let _ = ip(&Place::Runsc, &["link", "del", &self.host_if]);
            let _ = ip(&Place::Runsc, &["netns", "del", &self.name]);
        }
    }

    #[test]
    fn adopt_takes_the_addresses_and_routes_and_turns_the_peer_offloads_off() {
        if !can_create() {
            return;
        }
        let pid = std::process::id();
        let ns = CniNetns {
            name: format!("nvadopt-unit-{pid}"),
            host_if: format!("nvau{pid}"),
        };
        let host = |args: &[&str]| ip(&Place::Runsc, args).expect("ip");
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&Place::Runsc, &all).expect("ip -n")
        };
        host(&["netns", "add", &ns.name]);
        host(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.name,
        ]);
        // 192.0.2.0/24 (TEST-NET-1) is never routed; no host address is needed on the peer.
        host(&["link", "set", &ns.host_if, "up"]);
        inside(&["link", "set", "eth0", "mtu", "1400", "up"]);
        inside(&["addr", "add", "192.0.2.7/24", "dev", "eth0"]);
        inside(&["addr", "add", "192.0.2.8/24", "dev", "eth0"]);
        inside(&["addr", "add", "2001:db8::7/64", "dev", "eth0", "nodad"]);
        inside(&["route", "add", "default", "via", "192.0.2.1"]);
        inside(&[
            "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
        ]);

        let path = PathBuf::from(format!("/var/run/netns/{}", ns.name));
        let adopted = AdoptedNetns::adopt(&path, None).expect("adopt");
        assert_eq!(adopted.ifname, "eth0");
        assert_eq!(adopted.mtu, 1400);
        let want: Vec<IpNet> = ["192.0.2.7/24", "192.0.2.8/24", "2001:db8::7/64"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect();
        assert_eq!(adopted.addrs, want);
        assert_eq!(adopted.gateway_v4, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(adopted.gateway_v6, Some("fe80::1".parse().expect("ip")));
        assert_eq!(adopted.peer_if.as_deref(), Some(ns.host_if.as_str()));

        // The kernel inside holds none of them (nor a link-local address) any more.
        let left: Vec<Link> =
            serde_json::from_str(&inside(&["-j", "addr", "show", "dev", "eth0"])).expect("json");
        assert!(left[0].addr_info.is_empty(), "{left:?}");
        // Jobs run in the namespace.
        let ifname = adopted
            .run_inside(|| ip(&Place::Runsc, &["-j", "link", "show", "dev", "eth0"]))
            .expect("run_inside")
            .expect("eth0 inside");
        assert!(ifname.contains("\"link_netnsid\""), "{ifname}");

        let again = AdoptedNetns::adopt(&path, Some("eth0"))
            .err()
            .expect("a second adoption fails");
        let again = format!("{again:#}");
        assert!(
            again.contains(&path.display().to_string()) && again.contains("no address"),
            "{again}"
        );
        let missing = AdoptedNetns::adopt(&path, Some("eth7"))
            .err()
            .expect("no eth7");
        assert!(
            format!("{missing:#}").contains("no interface eth7"),
            "{missing:#}"
        );
        let not_ns = AdoptedNetns::adopt(Path::new("/proc/self/stat"), None)
            .err()
            .expect("not a namespace");
        assert!(
            format!("{not_ns:#}").contains("setns(/proc/self/stat"),
            "{not_ns:#}"
        );
        drop(adopted);
    }
}

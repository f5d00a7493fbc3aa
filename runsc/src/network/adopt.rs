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
//! there, running closures (an rtnetlink socket it opens, [`super::rtnl`], belongs to the
//! namespace); every other thread keeps the caller's namespace. The namespace lives at least
//! as long as that thread or any socket opened in it, even if its owner unmounts `PATH`
//! meanwhile.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;

use super::ns_thread::NsThread;
use super::rtnl::{Addr, DefaultRoute, Link, Rtnl};

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
    /// thread in runsc's own namespace; needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
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
            let (place, name, index) = (place.clone(), iface.name.clone(), iface.ifindex);
            let addrs = iface.addrs.clone();
            inside.run(move || release(&place, &name, index, &addrs))??;
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

/// What [`AdoptedNetns::adopt`] would take from a namespace (its first Ethernet interface that
/// is up), read without changing anything, so it can be put back for a second sandbox:
/// `runsc image build` reaches its app at these addresses, and restores the app it
/// checkpointed in the same namespace.
pub struct Configuration {
    path: PathBuf,
    ifname: String,
    /// The interface's addresses, with their prefixes (no IPv6 link-local).
    pub addrs: Vec<IpNet>,
    gateway_v4: Option<Ipv4Addr>,
}

impl Configuration {
    /// Read the configuration of the namespace at `path`.
    pub fn read(path: &Path) -> anyhow::Result<Configuration> {
        let iface = in_namespace(path, {
            let place = Place::Inside(path.to_owned());
            move || Iface::read(&place, None)
        })??;
        Ok(Configuration {
            path: path.to_owned(),
            ifname: iface.name,
            addrs: iface.addrs,
            gateway_v4: iface.gateway_v4,
        })
    }

    /// Configure the interface as it was read, after a sandbox that adopted it is gone:
    /// its addresses, the kernel's IPv6 and the IPv4 default route (an IPv6 default route
    /// is not put back). Needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    pub fn apply(&self) -> anyhow::Result<()> {
        let (ifname, addrs, gateway) = (self.ifname.clone(), self.addrs.clone(), self.gateway_v4);
        let place = Place::Inside(self.path.clone());
        in_namespace(&self.path, move || -> anyhow::Result<()> {
            let nl = &mut rtnl(&place)?;
            let links = nl
                .links()
                .with_context(|| format!("{place}: listing links"))?;
            let link = links
                .iter()
                .find(|l| l.ifname == ifname)
                .ok_or_else(|| anyhow!("{place}: no interface {ifname} any more"))?;
            if addrs.iter().any(|a| a.addr().is_ipv6()) {
                let v6 = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
                std::fs::write(&v6, "0").with_context(|| format!("{place}: writing 0 to {v6}"))?;
            }
            for net in &addrs {
                match nl.add_addr(link.ifindex, *net) {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                        return Err(e).with_context(|| format!("{place}: adding {net} to {ifname}"))
                    }
                    _ => {}
                }
            }
            if let Some(gw) = gateway {
                match nl.add_default_route_v4(gw) {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                        return Err(e).with_context(|| format!("{place}: adding default via {gw}"))
                    }
                    _ => {}
                }
            }
            Ok(())
        })?
    }
}

/// Run `f` on a short-lived thread in the network namespace at `path`.
fn in_namespace<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let ns_file = File::open(path)
        .with_context(|| format!("opening network namespace {}", path.display()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: plain syscall on an fd `ns_file` owns; it moves only this
                // short-lived thread into the network namespace.
                if unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("setns({}, CLONE_NEWNET)", path.display()));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("in {}: the thread panicked", path.display()))?
    })
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
        let nl = &mut rtnl(place)?;
        let links = nl
            .links()
            .with_context(|| format!("{place}: listing links"))?;
        let link = pick_link(&links, wanted).map_err(|why| anyhow!("{place}: {why}"))?;
        let name = link.ifname.clone();
        let addrs = adoptable_addrs(
            &nl.addrs(link.ifindex)
                .with_context(|| format!("{place}: listing the addresses of {name}"))?,
        );
        if addrs.is_empty() {
            bail!(
                "{place}: {name} has no address to adopt (is it configured yet, or did another \
                 sandbox adopt it already?)"
            );
        }
        // Ask only for the families the interface has.
        let mut gateway_v4 = None;
        if addrs.iter().any(|a| a.addr().is_ipv4()) {
            let routes = nl
                .default_routes(AddressFamily::Inet)
                .with_context(|| format!("{place}: listing IPv4 default routes"))?;
            gateway_v4 = match default_gateway(&routes, link.ifindex) {
                Some(IpAddr::V4(gw)) => Some(gw),
                _ => None,
            };
        }
        let mut gateway_v6 = None;
        if addrs.iter().any(|a| a.addr().is_ipv6()) {
            let routes = nl
                .default_routes(AddressFamily::Inet6)
                .with_context(|| format!("{place}: listing IPv6 default routes"))?;
            gateway_v6 = match default_gateway(&routes, link.ifindex) {
                Some(IpAddr::V6(gw)) => Some(gw),
                _ => None,
            };
        }
        let peer = match link.link_index {
            Some(index) if link.veth => Some((index, link.link_netnsid)),
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

/// An rtnetlink socket in the calling thread's namespace (`place`).
fn rtnl(place: &Place) -> anyhow::Result<Rtnl> {
    Rtnl::open().with_context(|| format!("{place}: opening an rtnetlink socket"))
}

/// Remove `addrs` from `ifname` (index `ifindex`) in the calling thread's namespace (`place`),
/// turn the kernel's IPv6 off on it, and its offloads (best effort).
fn release(place: &Place, ifname: &str, ifindex: u32, addrs: &[IpNet]) -> anyhow::Result<()> {
    let nl = &mut rtnl(place)?;
    // Last first: the kernel lists an IPv4 subnet's primary address before its secondaries,
    // and deleting a primary takes its secondaries with it.
    for net in addrs.iter().rev() {
        nl.del_addr(ifindex, *net)
            .with_context(|| format!("{place}: removing {net} from {ifname}"))?;
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
    let mut nl = match rtnl(&Place::Runsc) {
        Ok(nl) => nl,
        Err(e) => return keep(format!("{e:#}")),
    };
    // Listing the links first makes the kernel give the adopted namespace an id here, if a
    // peer is here and it had none.
    let links = match nl.links() {
        Ok(links) => links,
        Err(e) => return keep(format!("listing runsc's links: {e}")),
    };
    let Ok(fd) = u32::try_from(ns.as_raw_fd()) else {
        return keep("a negative fd".to_owned());
    };
    let nsid = match nl.nsid_of(fd) {
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

/// The interface to adopt: `wanted` (which must be up), or the first Ethernet link other than
/// loopback that is up.
fn pick_link<'a>(links: &'a [Link], wanted: Option<&str>) -> Result<&'a Link, String> {
    match wanted {
        Some(name) => {
            let link = links
                .iter()
                .find(|l| l.ifname == name)
                .ok_or_else(|| format!("no interface {name}"))?;
            if !link.up {
                return Err(format!("{name} is down"));
            }
            Ok(link)
        }
        None => links
            .iter()
            .find(|l| l.up && !l.loopback && l.ether)
            .ok_or_else(|| "no Ethernet interface other than loopback is up".to_owned()),
    }
}

/// The addresses worth adopting: all but IPv6 link-local ones (`fe80::/10`), which the sandbox
/// neither needs nor could keep unique.
fn adoptable_addrs(addrs: &[Addr]) -> Vec<IpNet> {
    addrs
        .iter()
        .map(|a| a.net)
        .filter(|net| match net.addr() {
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect()
}

/// The gateway of the lowest-metric default route through link `ifindex`, if one has a
/// gateway.
fn default_gateway(routes: &[DefaultRoute], ifindex: u32) -> Option<IpAddr> {
    routes
        .iter()
        .filter_map(|r| {
            let gw = if r.oif == Some(ifindex) {
                r.gateway
            } else {
                r.nexthops
                    .iter()
                    .find(|(oif, gw)| *oif == ifindex && gw.is_some())
                    .and_then(|(_, gw)| *gw)
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
            && l.veth
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Run `ip ARGS` (set-up only: the code under test speaks rtnetlink itself).
    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn link(ifindex: u32, ifname: &str, up: bool) -> Link {
        Link {
            ifindex,
            ifname: ifname.to_owned(),
            up,
            ether: true,
            ..Link::default()
        }
    }

    /// What a CNI plugin leaves in a pod's namespace: loopback, a tunnel device, the veth
    /// `eth0` (peer 73 in namespace 0) and a second Ethernet link that is down.
    fn cni_links() -> Vec<Link> {
        vec![
            Link {
                loopback: true,
                ether: false,
                mtu: Some(65536),
                ..link(1, "lo", true)
            },
            Link {
                ether: false,
                ..link(2, "tunl0", false)
            },
            Link {
                mtu: Some(1450),
                link_index: Some(73),
                link_netnsid: Some(0),
                veth: true,
                ..link(3, "eth0", true)
            },
            link(4, "net1", false),
        ]
    }

    fn addr(net: &str) -> Addr {
        Addr {
            ifindex: 3,
            net: net.parse().expect("cidr"),
        }
    }

    #[test]
    fn picks_the_first_ethernet_interface_that_is_up() {
        let links = cni_links();
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
        let addrs = adoptable_addrs(&[
            addr("10.244.1.7/24"),
            addr("fd00:10:244:1::7/64"),
            addr("fe80::c0de:83ff:fee2:68e1/64"),
        ]);
        let want: Vec<IpNet> = ["10.244.1.7/24", "fd00:10:244:1::7/64"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect();
        assert_eq!(addrs, want);
        assert_eq!(addrs[0].to_string(), "10.244.1.7/24");
    }

    #[test]
    fn default_gateway_is_the_lowest_metric_route_through_the_interface() {
        let route = |oif: u32, gw: Option<&str>, metric: Option<u32>| DefaultRoute {
            oif: Some(oif),
            gateway: gw.map(|g| g.parse().expect("ip")),
            metric,
            nexthops: Vec::new(),
        };
        let routes = [
            route(4, Some("192.0.2.1"), None),
            route(3, Some("10.244.1.254"), Some(200)),
            route(3, Some("10.244.1.1"), Some(100)),
            route(3, None, Some(1)),
        ];
        assert_eq!(
            default_gateway(&routes, 3),
            Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)))
        );
        assert_eq!(default_gateway(&routes, 9), None);
        let multipath = [DefaultRoute {
            oif: None,
            gateway: None,
            metric: Some(1024),
            nexthops: vec![
                (4, Some("fe80::1".parse().expect("ip"))),
                (3, Some("fe80::2".parse().expect("ip"))),
            ],
        }];
        assert_eq!(
            default_gateway(&multipath, 3),
            Some("fe80::2".parse().expect("ip"))
        );
    }

    #[test]
    fn the_peer_must_match_both_ways_and_by_namespace_id() {
        let veth = |ifname: &str, ifindex: u32, nsid: i32| Link {
            link_index: Some(3),
            link_netnsid: Some(nsid),
            veth: true,
            ..link(ifindex, ifname, true)
        };
        let host = [
            veth("other", 73, 1),
            veth("vethab12", 73, 2),
            veth("vethcd34", 74, 2),
        ];
        assert_eq!(find_peer(&host, 3, 73, 2).expect("peer").ifname, "vethab12");
        // Another pod's veth with the same indices in another namespace is not ours.
        assert_eq!(find_peer(&host, 3, 73, 1).expect("peer").ifname, "other");
        assert!(find_peer(&host, 3, 73, 5).is_none());
        assert!(find_peer(&host, 4, 73, 2).is_none());
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
        let nsid_of = |f: &File| {
            let fd = u32::try_from(f.as_raw_fd()).expect("fd");
            Rtnl::open().expect("netlink").nsid_of(fd)
        };
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
            let _ = Command::new("ip")
                .args(["link", "del", &self.host_if])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
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
        let host = |args: &[&str]| ip(args);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
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
        let left = inside(&["-j", "addr", "show", "dev", "eth0"]);
        assert!(left.contains("\"addr_info\":[]"), "{left}");
        // Jobs run in the namespace.
        let eth0 = adopted
            .run_inside(|| {
                let mut nl = Rtnl::open().expect("netlink inside");
                nl.links()
                    .expect("links inside")
                    .into_iter()
                    .find(|l| l.ifname == "eth0")
            })
            .expect("run_inside")
            .expect("eth0 inside");
        assert!(eth0.veth && eth0.link_netnsid.is_some(), "{eth0:?}");

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

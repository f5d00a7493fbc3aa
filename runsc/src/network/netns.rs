//! [`SandboxNetns`]: the network namespace and veth pair of `runsc do --network sandbox`, set up
//! the way a CNI plugin sets up a pod's.
//!
//! The host end (`nv` + 8 hex digits) stays in the caller's (root) namespace with
//! `10.201.N.1/24`; its peer `eth0` sits in a fresh namespace, up, with no IP address: the
//! sandbox's user-space stack owns `10.201.N.2`, so the namespace's kernel must never answer ARP
//! or TCP for it (IPv6 is off on `eth0` too, so the kernel sends no solicitations either). The
//! host end's TX offloads are off so the sandbox reads ordinary frames (see [`super::ethtool`]).
//!
//! Namespaces belong to threads, not processes: one dedicated thread `unshare`s a new network
//! namespace and stays there, running closures sent by [`SandboxNetns::run_inside`] (among them
//! the ones that configure the inside through a netlink socket opened there). Every other
//! thread keeps the caller's namespace. The namespace lives as long as that thread or any
//! socket opened in it; when it dies the kernel deletes the veth pair with it, so a crashed
//! runsc leaves nothing behind for long. Host ends whose owner process is gone are deleted by
//! the next [`SandboxNetns::create`] anyway (each carries its owner's pid and start time in its
//! alias).
//!
//! Beyond the host: the sandbox's address is masqueraded (see [`super::nat`]), so it reaches
//! what the host reaches, as a container on Docker's default bridge does.
//!
//! Concurrency: `create` holds an exclusive `flock` on [`LOCK_PATH`] while it picks a subnet and
//! until the host address is assigned, so concurrent runsc processes never pick the same one.
//!
//! Everything is done in-process, over rtnetlink ([`super::rtnl`]), sysctl files and ethtool
//! ioctls: no iproute2 needed at run time, and no fork+exec of `ip` (ten per sandbox, ~2 ms
//! each, when it was used; `create` went from ~30 ms to ~3 ms).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs::File;
use std::hash::BuildHasher as _;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::AddressFamily;

use super::ns_thread::NsThread;
use super::rtnl::{Addr, Rtnl};

/// The lock that serializes subnet choice and veth creation between runsc processes.
pub const LOCK_PATH: &str = "/run/nanovisor/netns.lock";

/// Sandbox subnets are `10.201.N.0/24`.
const SUBNET_PREFIX: [u8; 2] = [10, 201];
const PREFIX_LEN: u8 = 24;
/// The interface name inside the namespace.
const GUEST_IF: &str = "eth0";
/// Prefix of host veth names; the rest is 8 hex digits.
const HOST_IF_PREFIX: &str = "nv";
/// Prefix of the alias written on every host veth we create.
const ALIAS_PREFIX: &str = "nanovisor ";

/// A sandbox's network namespace, with a veth pair between it and the caller's namespace.
/// Dropping it deletes the pair and releases the namespace.
pub struct SandboxNetns {
    /// The host end of the veth pair, in the caller's namespace.
    pub host_if: String,
    /// The host end's address (`10.201.N.1`); the sandbox's gateway.
    pub host_addr: Ipv4Addr,
    /// The address the sandbox's own stack uses (`10.201.N.2`); not assigned in any kernel.
    pub guest_addr: Ipv4Addr,
    /// Prefix length of the subnet shared by both ends.
    pub prefix_len: u8,
    /// The veth end inside the namespace (`eth0`).
    pub guest_if: String,
    /// Whether the veth pair exists (so `Drop` has something to delete).
    veth_created: bool,
    /// The rules that carry the sandbox's traffic beyond the host (None: no NAT).
    nat: Option<super::nat::Masquerade>,
    inside: NsThread,
}

impl SandboxNetns {
    /// Create the namespace and veth pair for `sandbox_id`, on a subnet in `10.201.0.0/16` that
    /// no host address or route uses. Call it from a thread in the namespace the host end
    /// should live in (normally the root namespace); needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
    pub fn create(sandbox_id: &str) -> anyhow::Result<SandboxNetns> {
        let mut nl = Rtnl::open().context("opening an rtnetlink socket in the host namespace")?;
        let lock = LockFile::acquire(Path::new(LOCK_PATH))?;
        remove_stale_veths(&mut nl);

        let links = link_names(&mut nl)?;
        let used = used_prefixes(
            &nl.all_addrs().context("listing host addresses")?,
            &nl.route_destinations(AddressFamily::Inet)
                .context("listing host IPv4 routes")?,
        );
        let octet = pick_subnet(&used).ok_or_else(|| {
            anyhow!(
                "no free /24 left in 10.201.0.0/16 for sandbox {sandbox_id} \
                 (all overlap host addresses or routes)"
            )
        })?;
        let host_if = pick_host_if(sandbox_id, &links);

        let inside = NsThread::spawn(&format!("netns-{sandbox_id}"), || {
            // SAFETY: plain syscall; it moves only this thread into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
        .context("unshare(CLONE_NEWNET) (needs CAP_SYS_ADMIN)")?;
        let mut netns = SandboxNetns {
            host_addr: Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], octet, 1),
            guest_addr: Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], octet, 2),
            prefix_len: PREFIX_LEN,
            guest_if: GUEST_IF.to_owned(),
            host_if,
            veth_created: false,
            nat: None,
            inside,
        };
        // From here on, a failure drops `netns`, which undoes whatever was done.

        // Born with IPv6 off: no router/neighbour solicitations from eth0, ever.
        netns
            .inside
            .run(|| set_ipv6_disabled("default"))?
            .context("disabling IPv6 for new devices in the sandbox namespace")?;

        let ns_path = netns.netns_path();
        let ns_file =
            File::open(&ns_path).with_context(|| format!("opening {}", ns_path.display()))?;
        let host_if = netns.host_if.clone();
        nl.add_veth(&host_if, GUEST_IF, ns_file.as_fd())
            .with_context(|| {
                format!("creating veth pair {host_if} (peer {GUEST_IF} in the sandbox namespace)")
            })?;
        netns.veth_created = true;
        drop(ns_file);
        let host_index = nl
            .link(&host_if)
            .with_context(|| format!("looking up the new veth {host_if}"))?
            .ifindex;
        nl.set_alias(host_index, &owner_alias(sandbox_id))
            .with_context(|| format!("setting the alias of {host_if}"))?;
        super::ethtool::disable_tx_offloads(&host_if)
            .with_context(|| format!("turning offloads off on {host_if}"))?;
        let host_net = Ipv4Net::new(netns.host_addr, netns.prefix_len)
            .with_context(|| format!("host address {}/{}", netns.host_addr, netns.prefix_len))?;
        nl.add_addr(host_index, host_net.into())
            .with_context(|| format!("adding {host_net} to {host_if}"))?;
        nl.set_link_up(host_index)
            .with_context(|| format!("bringing {host_if} up"))?;
        // The address is visible to other runsc processes now.
        drop(lock);

        let mut live = links;
        live.insert(netns.host_if.clone());
        netns.nat = match super::nat::Masquerade::add(&netns.host_if, netns.guest_addr, &live) {
            Ok(nat) => Some(nat),
            Err(e) => {
                tracing::warn!(
                    "no NAT for sandbox {sandbox_id}: it reaches this host but nothing beyond: {e:#}"
                );
                None
            }
        };

        netns
            .inside
            .run(|| -> anyhow::Result<()> {
                set_ipv6_disabled(GUEST_IF)?;
                super::ethtool::disable_gro(GUEST_IF)
                    .with_context(|| format!("turning GRO off on {GUEST_IF}"))?;
                let mut nl = Rtnl::open().context("opening an rtnetlink socket")?;
                for dev in ["lo", GUEST_IF] {
                    let index = nl
                        .link(dev)
                        .with_context(|| format!("looking up {dev}"))?
                        .ifindex;
                    nl.set_link_up(index)
                        .with_context(|| format!("bringing {dev} up"))?;
                }
                Ok(())
            })?
            .context("configuring the sandbox namespace")?;

        tracing::debug!(
            sandbox = sandbox_id,
            host_if = %netns.host_if,
            host_addr = %netns.host_addr,
            guest_addr = %netns.guest_addr,
            "created sandbox network namespace"
        );
        Ok(netns)
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

    /// The namespace as a path (`/proc/PID/task/TID/ns/net`), for `nsenter --net=` or `ip …
    /// netns`; valid while `self` lives.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            self.inside.tid
        ))
    }
}

impl Drop for SandboxNetns {
    fn drop(&mut self) {
        drop(self.nat.take());
        if self.veth_created {
            // Deleting one end deletes both.
            if let Err(e) = delete_link(&self.host_if) {
                tracing::warn!("deleting sandbox veth: {e:#}");
            }
        }
        self.inside.stop();
    }
}

/// An exclusive `flock`, released when dropped (closing the file releases it).
struct LockFile {
    _file: File,
}

impl LockFile {
    fn acquire(path: &Path) -> anyhow::Result<LockFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        loop {
            // SAFETY: plain syscall on an fd `file` owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(LockFile { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// Delete link `name` of the calling thread's namespace (`ip link del NAME`).
fn delete_link(name: &str) -> anyhow::Result<()> {
    let mut nl = Rtnl::open().context("opening an rtnetlink socket")?;
    let index = nl
        .link(name)
        .with_context(|| format!("looking up {name}"))?
        .ifindex;
    nl.del_link(index)
        .with_context(|| format!("deleting {name}"))
}

/// Write `disable_ipv6 = 1` for `dev` in the calling thread's namespace (`/proc/sys/net` shows
/// the namespace of the thread that opens it). A kernel without IPv6 has nothing to disable.
fn set_ipv6_disabled(dev: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    if !Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    std::fs::write(&path, "1").with_context(|| format!("writing 1 to {path}"))
}

/// Names of all links of `nl`'s namespace.
fn link_names(nl: &mut Rtnl) -> anyhow::Result<HashSet<String>> {
    let links = nl.links().context("listing host links")?;
    Ok(links.into_iter().map(|l| l.ifname).collect())
}

/// A fresh host interface name, `nv` + 8 hex digits, not among `taken`.
fn pick_host_if(sandbox_id: &str, taken: &HashSet<String>) -> String {
    let state = RandomState::new();
    let mut attempt = 0u32;
    loop {
        let hash = state.hash_one((sandbox_id, std::process::id(), attempt));
        let name = format!("{HOST_IF_PREFIX}{:08x}", hash as u32);
        if !taken.contains(&name) {
            return name;
        }
        attempt += 1;
    }
}

/// The alias that marks a host veth as ours and names its owner process.
fn owner_alias(sandbox_id: &str) -> String {
    let pid = std::process::id();
    let start = proc_start_time(pid).unwrap_or(0);
    let id: String = sandbox_id
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    format!("{ALIAS_PREFIX}pid={pid} start={start} sandbox={id}")
}

/// A process's start time (clock ticks since boot, field 22 of `/proc/PID/stat`).
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after it don't.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process an alias names is gone (or its pid now belongs to another process).
fn alias_owner_is_gone(alias: &str) -> bool {
    let Some(fields) = alias.strip_prefix(ALIAS_PREFIX) else {
        return false;
    };
    let mut pid = None;
    let mut start = None;
    for field in fields.split(' ') {
        if let Some(v) = field.strip_prefix("pid=") {
            pid = v.parse::<u32>().ok();
        } else if let Some(v) = field.strip_prefix("start=") {
            start = v.parse::<u64>().ok();
        }
    }
    let (Some(pid), Some(start)) = (pid, start) else {
        return false;
    };
    match proc_start_time(pid) {
        None => true,
        Some(now) => start != 0 && now != start,
    }
}

/// Delete host veths a runsc that is gone left behind. Normally the kernel already did (the
/// pair dies with the namespace), unless something else kept that namespace alive.
fn remove_stale_veths(nl: &mut Rtnl) {
    let links = match nl.links() {
        Ok(links) => links,
        Err(e) => {
            tracing::warn!("listing veths for cleanup: {e}");
            return;
        }
    };
    for link in links.iter().filter(|l| l.veth) {
        let Some(alias) = &link.alias else {
            continue;
        };
        let name = &link.ifname;
        if name.starts_with(HOST_IF_PREFIX) && alias_owner_is_gone(alias) {
            match nl.del_link(link.ifindex) {
                Ok(()) => tracing::info!("deleted stale sandbox veth {name} ({alias})"),
                Err(e) => tracing::warn!("deleting stale sandbox veth {name}: {e}"),
            }
        }
    }
}

/// IPv4 prefixes in use on the host: interface addresses (what `ip -4 addr` lists) and route
/// destinations (`ip -4 route show table all`; the default route is not a conflict, and
/// `destinations` holds none).
fn used_prefixes(addrs: &[Addr], destinations: &[IpNet]) -> Vec<(Ipv4Addr, u8)> {
    addrs
        .iter()
        .map(|a| a.net)
        .chain(destinations.iter().copied())
        .filter_map(|net| match net {
            IpNet::V4(v4) => Some((v4.addr(), v4.prefix_len())),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// Whether two prefixes share any address.
fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(a.0) & mask == u32::from(b.0) & mask
}

/// The first `N` such that `10.201.N.0/24` overlaps none of `used`.
fn pick_subnet(used: &[(Ipv4Addr, u8)]) -> Option<u8> {
    (0..=255u8).find(|&n| {
        let candidate = (
            Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], n, 0),
            PREFIX_LEN,
        );
        used.iter().all(|&u| !overlaps(candidate, u))
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use anyhow::bail;
    use serde_json::Value;

    use super::*;

    /// Run `ip ARGS` (in the calling thread's network namespace) and return its stdout: the
    /// independent oracle the in-process code is checked against.
    fn ip(args: &[&str]) -> anyhow::Result<String> {
        let cmdline = format!("ip {}", args.join(" "));
        let out = Command::new("ip")
            .args(args)
            .output()
            .with_context(|| format!("running `{cmdline}`"))?;
        if !out.status.success() {
            bail!(
                "`{cmdline}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).with_context(|| format!("`{cmdline}` printed non-UTF-8"))
    }

    /// `a.b.c.d` or `a.b.c.d/n` as an address and prefix length; `default` and the like are
    /// None.
    fn parse_prefix(s: &str) -> Option<(Ipv4Addr, u8)> {
        match s.split_once('/') {
            Some((addr, len)) => {
                let len: u8 = len.parse().ok()?;
                (len <= 32).then_some(())?;
                Some((addr.parse().ok()?, len))
            }
            None => Some((s.parse().ok()?, 32)),
        }
    }

    /// What [`used_prefixes`] must find, read from `ip -j -4 addr` and `ip -j -4 route show
    /// table all` instead (as runsc itself once did).
    fn used_prefixes_per_ip(addr_json: &str, route_json: &str) -> Vec<(Ipv4Addr, u8)> {
        let mut used = Vec::new();
        let links: Vec<Value> = serde_json::from_str(addr_json).expect("`ip -j addr` json");
        for info in links
            .iter()
            .filter_map(|l| l.get("addr_info")?.as_array())
            .flatten()
        {
            let (Some(local), Some(len)) = (
                info.get("local").and_then(Value::as_str),
                info.get("prefixlen").and_then(Value::as_u64),
            ) else {
                continue;
            };
            if let (Ok(addr), Ok(len)) = (local.parse::<Ipv4Addr>(), u8::try_from(len)) {
                used.push((addr, len.min(32)));
            }
        }
        let routes: Vec<Value> = serde_json::from_str(route_json).expect("`ip -j route` json");
        for dst in routes
            .iter()
            .filter_map(|r| r.get("dst").and_then(Value::as_str))
        {
            used.extend(parse_prefix(dst));
        }
        used
    }

    #[test]
    fn picks_a_subnet_clear_of_addresses_and_routes() {
        let addr = |ifindex, net: &str| Addr {
            ifindex,
            net: net.parse().expect("cidr"),
        };
        let addrs = [
            addr(1, "127.0.0.1/8"),
            addr(1, "::1/128"),
            addr(2, "10.201.0.7/24"),
            addr(3, "10.201.1.1/30"),
        ];
        let net = |s: &str| s.parse::<IpNet>().expect("cidr");
        let routes = [net("10.201.2.0/23"), net("10.201.4.9/32"), net("fd00::/8")];
        let used = used_prefixes(&addrs, &routes);
        assert_eq!(used.len(), 5, "{used:?}");
        assert_eq!(pick_subnet(&used), Some(5));
        assert_eq!(pick_subnet(&[]), Some(0));
        // A route covering the whole /16 (or more) leaves nothing.
        assert_eq!(pick_subnet(&[(Ipv4Addr::new(10, 0, 0, 0), 8)]), None);
    }

    /// The oracle on the JSON that `ip` prints: the same choice as from netlink.
    #[test]
    fn ip_json_oracle_picks_the_same() {
        let addrs = r#"[
            {"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifname":"eth0","addr_info":[{"family":"inet","local":"10.201.0.7","prefixlen":24}]},
            {"ifname":"nvx","addr_info":[{"family":"inet","local":"10.201.1.1","prefixlen":30}]}
        ]"#;
        let routes = r#"[
            {"dst":"default","gateway":"192.0.2.1","dev":"eth0"},
            {"dst":"10.201.2.0/23","dev":"eth1"},
            {"type":"local","dst":"10.201.4.9","dev":"eth1","table":"local"}
        ]"#;
        let used = used_prefixes_per_ip(addrs, routes);
        assert_eq!(pick_subnet(&used), Some(5));
        // The default route is no conflict.
        assert_eq!(parse_prefix("default"), None);
    }

    /// On this host, netlink finds exactly the prefixes `ip` lists (root, iproute2).
    #[test]
    fn used_prefixes_match_ip() {
        if !can_create() {
            return;
        }
        let mut nl = Rtnl::open().expect("netlink");
        // Another test may add or remove a sandbox meanwhile: retry until both reads agree.
        let mut last = None;
        for _ in 0..20 {
            let mut ours = used_prefixes(
                &nl.all_addrs().expect("addrs"),
                &nl.route_destinations(AddressFamily::Inet).expect("routes"),
            );
            let mut theirs = used_prefixes_per_ip(
                &ip(&["-j", "-4", "addr"]).expect("ip addr"),
                &ip(&["-j", "-4", "route", "show", "table", "all"]).expect("ip route"),
            );
            ours.sort();
            theirs.sort();
            if ours == theirs {
                return;
            }
            last = Some((ours, theirs));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("netlink and `ip` disagree: {last:?}");
    }

    /// On this host, netlink lists the links `ip -j link` does, with their aliases.
    #[test]
    fn link_names_and_aliases_match_ip() {
        if !can_create() {
            return;
        }
        let ns = SandboxNetns::create("netns-unit-test-links").expect("create");
        let mut nl = Rtnl::open().expect("netlink");
        let ours = nl.links().expect("links");
        let theirs: Vec<Value> =
            serde_json::from_str(&ip(&["-j", "link"]).expect("ip link")).expect("json");
        for link in &theirs {
            let name = link["ifname"].as_str().expect("ifname");
            let Some(mine) = ours.iter().find(|l| l.ifname == name) else {
                continue; // created after our dump
            };
            assert_eq!(
                mine.alias.as_deref(),
                link.get("ifalias").and_then(Value::as_str),
                "{name}"
            );
        }
        let host = ours
            .iter()
            .find(|l| l.ifname == ns.host_if)
            .expect("host end");
        assert!(host.veth && host.up);
        let alias = host.alias.as_deref().expect("an alias");
        assert!(alias.ends_with("sandbox=netns-unit-test-links"), "{alias}");
        assert!(!alias_owner_is_gone(alias));
        let names = link_names(&mut nl).expect("names");
        assert!(names.contains("lo") && names.contains(&ns.host_if));
    }

    #[test]
    fn prefix_overlap() {
        let p = |s: &str| parse_prefix(s).expect("valid");
        assert!(overlaps(p("10.201.3.0/24"), p("10.201.3.77")));
        assert!(overlaps(p("10.201.3.0/24"), p("10.0.0.0/8")));
        assert!(overlaps(p("10.201.3.0/24"), p("0.0.0.0/0")));
        assert!(!overlaps(p("10.201.3.0/24"), p("10.201.4.0/24")));
        assert!(!overlaps(p("10.201.3.0/24"), p("10.201.2.0/24")));
        assert_eq!(parse_prefix("10.1.2.3/33"), None);
    }

    #[test]
    fn host_if_names_fit_ifnamsiz() {
        let taken = HashSet::new();
        let name = pick_host_if("a-very-long-sandbox-id-indeed", &taken);
        assert_eq!(name.len(), 10);
        assert!(name.starts_with(HOST_IF_PREFIX));
        let taken: HashSet<String> = [name.clone()].into();
        assert_ne!(pick_host_if("a-very-long-sandbox-id-indeed", &taken), name);
    }

    #[test]
    fn alias_names_a_live_owner() {
        let alias = owner_alias("sb 1");
        assert!(alias.ends_with("sandbox=sb1"), "{alias}");
        assert!(!alias_owner_is_gone(&alias));
        assert!(alias_owner_is_gone(
            "nanovisor pid=4194304999 start=1 sandbox=x"
        ));
        let me = std::process::id();
        assert!(alias_owner_is_gone(&format!(
            "nanovisor pid={me} start=1 sandbox=x"
        )));
        assert!(!alias_owner_is_gone("somebody else's veth"));
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
    fn create_configures_both_ends_and_drop_removes_them() {
        if !can_create() {
            return;
        }
        const V6_DEFAULT: &str = "/proc/sys/net/ipv6/conf/default/disable_ipv6";
        let host_v6 = std::fs::read_to_string(V6_DEFAULT).ok();
        let ns = SandboxNetns::create("netns-unit-test").expect("create");
        assert!(ns.host_if.len() < libc::IFNAMSIZ);
        assert_eq!(ns.guest_if, "eth0");
        assert_eq!(ns.prefix_len, 24);
        assert_eq!(ns.host_addr.octets()[3], 1);
        assert_eq!(ns.guest_addr.octets()[3], 2);

        let host: Vec<Value> = serde_json::from_str(
            &ip(&["-j", "-4", "addr", "show", "dev", &ns.host_if]).expect("ip"),
        )
        .expect("json");
        assert_eq!(host[0]["addr_info"][0]["local"], ns.host_addr.to_string());
        assert_eq!(host[0]["addr_info"][0]["prefixlen"], 24);
        assert_eq!(host[0]["addr_info"].as_array().map(Vec::len), Some(1));
        assert!(host[0]["flags"].to_string().contains("\"UP\""), "{host:?}");
        let details: Vec<Value> = serde_json::from_str(
            &ip(&["-j", "-d", "link", "show", "dev", &ns.host_if]).expect("ip"),
        )
        .expect("json");
        assert_eq!(details[0]["linkinfo"]["info_kind"], "veth", "{details:?}");
        assert!(details[0]["ifalias"]
            .as_str()
            .is_some_and(|a| a.starts_with("nanovisor pid=")));
        assert!(
            details[0].get("link_netnsid").is_some(),
            "the peer is in another namespace: {details:?}"
        );

        let (inside, v6) = ns
            .run_inside(|| {
                (
                    ip(&["-j", "addr"]),
                    std::fs::read_to_string("/proc/sys/net/ipv6/conf/eth0/disable_ipv6"),
                )
            })
            .expect("run_inside");
        let inside: Vec<Value> = serde_json::from_str(&inside.expect("ip inside")).expect("json");
        assert_eq!(inside.len(), 2, "only lo and eth0 inside: {inside:?}");
        let eth0 = inside
            .iter()
            .find(|l| l["ifname"] == "eth0")
            .expect("eth0 inside");
        assert!(eth0["flags"].to_string().contains("\"UP\""), "{eth0:?}");
        assert_eq!(
            eth0["addr_info"],
            serde_json::json!([]),
            "eth0 must have no address"
        );
        let lo = inside.iter().find(|l| l["ifname"] == "lo").expect("lo");
        assert!(lo["flags"].to_string().contains("\"UP\""), "{lo:?}");
        assert_eq!(v6.expect("sysctl").trim(), "1");
        // The host's own IPv6 setting is untouched.
        assert_eq!(std::fs::read_to_string(V6_DEFAULT).ok(), host_v6);

        // A panicking job is reported and leaves the namespace usable.
        assert!(ns.run_inside(|| panic!("job panics on purpose")).is_err());
        assert_eq!(ns.run_inside(|| 7).expect("still alive"), 7);

        let (path, host_if) = (ns.netns_path(), ns.host_if.clone());
        assert!(path.exists());
        drop(ns);
        assert!(!path.exists(), "namespace thread still alive");
        assert!(
            !ip(&["-j", "link"]).expect("ip link").contains(&host_if),
            "{host_if} left behind"
        );
    }

    /// The whole path a sandbox uses: the host kernel ARPs for the guest address and sends it a
    /// UDP datagram, which a `PacketLink` inside the namespace reads with a valid checksum.
    #[test]
    fn host_reaches_a_packet_link_inside() {
        use netstack::link::Link as _;
        use sentry::net::link::PacketLink;

        if !can_create() {
            return;
        }
        let ns = SandboxNetns::create("netns-unit-test-udp").expect("create");
        let mut link = ns
            .run_inside(|| PacketLink::open("eth0"))
            .expect("run_inside")
            .expect("open eth0");
        let mac = link.mac();
        let (guest, host) = (ns.guest_addr.octets(), ns.host_addr.octets());

        let payload: Vec<u8> = (0..1400u32).map(|i| (i * 7) as u8).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let (payload, guest_addr, stop) = (payload.clone(), ns.guest_addr, stop.clone());
            std::thread::spawn(move || {
                let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
                // The first datagram waits for ARP; resend until the test has one.
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = sock.send_to(&payload, (guest_addr, 9));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
        };

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = vec![0u8; 2048];
        let mut answered_arp = false;
        let mut udp = None;
        while udp.is_none() && std::time::Instant::now() < deadline {
            let n = match link.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("recv: {e}"),
            };
            let f = &buf[..n];
            if n >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 1] && f[38..42] == guest {
                // Who has the guest address? We do (the kernel inside must not).
                let mut reply = Vec::with_capacity(42);
                reply.extend_from_slice(&f[6..12]);
                reply.extend_from_slice(&mac);
                reply.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
                reply.extend_from_slice(&mac);
                reply.extend_from_slice(&guest);
                reply.extend_from_slice(&f[22..32]);
                link.send(&reply).expect("send ARP reply");
                answered_arp = true;
            } else if n >= 42 && f[12..14] == [8, 0] && f[23] == 17 && f[26..30] == host {
                udp = Some(f.to_vec());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = sender.join();
        let udp = udp.expect("no UDP datagram from the host arrived");
        assert!(answered_arp);
        assert_eq!(&udp[0..6], &mac);
        assert_eq!(&udp[42..], &payload[..]);
        // UDP checksum over the pseudo-header and the datagram must verify.
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&udp[26..34]);
        add(&[0, 17]);
        add(&udp[38..40]);
        add(&udp[34..]);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "bad UDP checksum");
        drop(ns);
        drop(link);
    }
}

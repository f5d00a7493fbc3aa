//! `runsc do [--rootfs DIR] [--cwd DIR] [--env K=V]… [--network none|sandbox] [--netns PATH]
//! [-p HOST:GUEST]… [--acl FILE] -- CMD ARGS…`: run a command in a fresh sandbox; exit
//! with its status (128+N when killed by signal N).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use netstack::acl::{Acl, AuditLog, Policy};
use netstack::stack::{LinkConfig, Stack, StackConfig};
use sentry::net::link::PacketLink;

use anyhow::Context as _;
use clap::Args;
use sentry::abi::Errno;
use sentry::sandbox::{self, SandboxConfig, SandboxError};

use crate::network::adopt::AdoptedNetns;
use crate::network::forward::{parse_port_mapping, PortForward};
use crate::network::loopback_forward;
use crate::network::netns::SandboxNetns;

#[derive(Args)]
pub struct DoArgs {
    /// Root file system (a host directory, read-only; writes go to an in-memory overlay).
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
    /// Working directory inside the sandbox.
    #[arg(long, default_value = "/")]
    cwd: String,
    /// Environment variable for the command (repeatable), replacing a default of the same
    /// name: PATH and HOME are set, and TERM (the caller's) when stdout is a terminal, as
    /// `docker run -t` does.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Guest physical memory, in MiB.
    #[arg(long, default_value_t = 2048)]
    memory_mib: u64,
    /// Host name inside the sandbox.
    #[arg(long, default_value = "nanovisor")]
    hostname: String,
    /// The sandbox's network: `none` (loopback only; the default without `--netns`) or
    /// `sandbox` (a fresh network namespace with a veth pair to the host, the way a CNI plugin
    /// sets up a pod).
    #[arg(long, value_enum)]
    network: Option<NetworkMode>,
    /// Adopt the network namespace at PATH (`/var/run/netns/NAME`, `/proc/PID/ns/net`) that a
    /// CNI plugin set up, instead of creating one: `--network sandbox` with someone else's
    /// namespace. The addresses of its interface move from the kernel to the sandbox for good.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
    /// Forward a host port (on 127.0.0.1) to a guest port: through the veth with
    /// `--network sandbox` (with `--netns`, the host must route to the adopted address),
    /// over the sandbox's own loopback with `--network none`.
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST")]
    publish: Vec<String>,
    /// The network policy (YAML or JSON; see docs/acl.md). Default: allow everything.
    #[arg(long, value_name = "FILE")]
    acl: Option<PathBuf>,
    /// Where audit lines go (default: stderr).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// A resolver the DNS proxy forwards allowed questions to, when the policy names
    /// none (repeatable; `IP`, `IP:PORT`, or `gateway[:PORT]` for the host end of the
    /// sandbox's veth).
    #[arg(long = "dns-upstream", value_name = "ADDR")]
    dns_upstream: Vec<String>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    /// Loopback only.
    None,
    /// A network namespace and veth pair of its own.
    Sandbox,
    /// Refused: a Nanovisor guest never uses host sockets.
    Host,
}

/// A `--dns-upstream` value: an address, or the gateway (known once the veth exists).
enum Upstream {
    Addr(SocketAddr),
    Gateway(u16),
}

fn parse_upstream(s: &str) -> anyhow::Result<Upstream> {
    let bad = || anyhow::anyhow!("--dns-upstream {s:?}: expected IP, IP:PORT or gateway[:PORT]");
    if let Some(rest) = s.strip_prefix("gateway") {
        return match rest.strip_prefix(':') {
            None if rest.is_empty() => Ok(Upstream::Gateway(53)),
            Some(port) => Ok(Upstream::Gateway(port.parse().map_err(|_| bad())?)),
            None => Err(bad()),
        };
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Upstream::Addr(a));
    }
    let ip: IpAddr = s.parse().map_err(|_| bad())?;
    Ok(Upstream::Addr(SocketAddr::new(ip, 53)))
}

/// A sandbox id for `do`: nothing refers to it but the audit log and interface names.
/// The program's environment: PATH, HOME and (at a terminal) the caller's TERM, then
/// each `--env`, which replaces a default of the same name, as `docker run -e` does.
fn guest_env(given: &[String], term: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut env: Vec<Vec<u8>> = vec![
        b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_vec(),
        // The program runs as root; npm, the Node REPL's history and shells want a home.
        b"HOME=/root".to_vec(),
    ];
    // Colours and line editing for a person at a terminal.
    if let Some(term) = term {
        let mut kv = b"TERM=".to_vec();
        kv.extend_from_slice(term);
        env.push(kv);
    }
    for kv in given {
        let kv = kv.as_bytes();
        let name = kv.split(|b| *b == b'=').next().unwrap_or(kv);
        env.retain(|e| e.split(|b| *b == b'=').next() != Some(name));
        env.push(kv.to_vec());
    }
    env
}

fn new_sandbox_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("do-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

pub fn run(args: DoArgs) -> anyhow::Result<i32> {
    // The signals a terminal or a supervisor sends (Ctrl-C, SIGTERM) go to the guest's
    // program, as `runsc run` and `docker run` forward them: it may end cleanly, and this
    // process lives to take the network down after it. Blocked before any thread starts,
    // so that every thread inherits the mask and only the forwarding thread takes them.
    let forwarded = super::run::forwarded_set();
    forwarded.thread_block()?;
    for kv in &args.env {
        if !kv.contains('=') || kv.starts_with('=') {
            anyhow::bail!("--env {kv:?}: expected KEY=VALUE");
        }
    }
    if !args.cwd.starts_with('/') {
        anyhow::bail!(
            "--cwd {:?}: must be an absolute path inside the sandbox",
            args.cwd
        );
    }
    let meta = std::fs::metadata(&args.rootfs)
        .with_context(|| format!("--rootfs {}", args.rootfs.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("--rootfs {}: not a directory", args.rootfs.display());
    }
    let term = std::io::IsTerminal::is_terminal(&std::io::stdout())
        .then(|| std::env::var_os("TERM"))
        .flatten();
    let envp = guest_env(&args.env, term.as_ref().map(|t| t.as_bytes()));
    let argv: Vec<Vec<u8>> = args.command.iter().map(|s| s.as_bytes().to_vec()).collect();
    let id = new_sandbox_id();
    let policy = match &args.acl {
        Some(path) => Policy::load(path).map_err(|e| anyhow::anyhow!("--acl: {e}"))?,
        None => Policy::allow_all(),
    };
    let audit = match &args.audit_log {
        Some(path) => {
            AuditLog::file(&id, path).with_context(|| format!("--audit-log {}", path.display()))?
        }
        None => AuditLog::stderr(&id),
    };
    let upstreams = args
        .dns_upstream
        .iter()
        .map(|s| parse_upstream(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut gateway = None;
    let publish = args
        .publish
        .iter()
        .map(|s| parse_port_mapping(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let acl = Arc::new(Acl::new(policy, audit));
    let network = match (args.network, &args.netns) {
        (Some(NetworkMode::None), Some(_)) => {
            anyhow::bail!("--netns conflicts with --network none")
        }
        (Some(mode), _) => mode,
        (None, Some(_)) => NetworkMode::Sandbox,
        (None, None) => NetworkMode::None,
    };
    let mut netns = None;
    let mut adopted = None;
    let mut forwards = Vec::new();
    let link = match (network, args.netns.as_deref()) {
        (NetworkMode::Host, _) => anyhow::bail!(
            "--network host: not supported; the guest never uses host sockets (use --network sandbox)"
        ),
        // -p still works: the stack relays host connections over the sandbox's loopback.
        (NetworkMode::None, _) => None,
        (NetworkMode::Sandbox, Some(path)) => {
            let (link, gw, ns) = adopted_link(&id, path, &publish, &mut forwards)?;
            gateway = gw;
            adopted = Some(ns);
            Some(link)
        }
        (NetworkMode::Sandbox, None) => {
            let ns = SandboxNetns::create(&id).context("--network sandbox")?;
            let ifname = ns.guest_if.clone();
            let packet = ns
                .run_inside(move || PacketLink::open(&ifname))?
                .with_context(|| format!("opening {} in the sandbox's namespace", ns.guest_if))?;
            let guest = ns.guest_addr;
            say!(
                "runsc: sandbox {id}: address {guest}/{} (host side {} on {})",
                ns.prefix_len, ns.host_addr, ns.host_if
            );
            for (host_port, guest_port) in &publish {
                let fwd = PortForward::start(*host_port, SocketAddr::new(guest.into(), *guest_port))?;
                say!(
                    "runsc: forwarding {} to {guest}:{guest_port}",
                    fwd.local_addr()
                );
                forwards.push(fwd);
            }
            let link = LinkConfig {
                link: Box::new(packet),
                name: ns.guest_if.clone(),
                addrs: vec![IpNet::new(guest.into(), ns.prefix_len)?],
                gateway_v4: Some(ns.host_addr),
                gateway_v6: None,
            };
            gateway = Some(IpAddr::V4(ns.host_addr));
            netns = Some(ns);
            Some(link)
        }
    };
    // The root file system's resolv.conf: its search domains and options for the guest,
    // its nameservers the proxy's upstreams unless --dns-upstream names some.
    let resolver = crate::network::resolver::from_rootfs(&args.rootfs);
    let mut dns_upstream = Vec::new();
    if upstreams.is_empty() && link.is_some() {
        dns_upstream = resolver.as_ref().map(|r| r.upstreams()).unwrap_or_default();
    }
    for u in upstreams {
        dns_upstream.push(match (u, gateway) {
            (Upstream::Addr(a), _) => a,
            (Upstream::Gateway(port), Some(gw)) => SocketAddr::new(gw, port),
            (Upstream::Gateway(_), None) => {
                anyhow::bail!("--dns-upstream gateway needs --network sandbox")
            }
        });
    }
    let net = Arc::new(
        Stack::new(StackConfig { link, dns_upstream }, acl)
            .context("starting the sandbox's network stack")?,
    );
    if network == NetworkMode::None {
        for (host_port, guest_port) in &publish {
            let addr = loopback_forward::start(net.clone(), *host_port, *guest_port)?;
            say!("runsc: forwarding {addr} to the sandbox's port {guest_port}");
        }
    }
    let status = sandbox::run(SandboxConfig {
        rootfs: args.rootfs,
        cwd: args.cwd.into_bytes(),
        argv,
        envp,
        hostname: args.hostname.into_bytes(),
        memory: args.memory_mib << 20,
        net,
        resolv_conf: resolver.map(|r| r.for_guest_bytes()),
        on_start: Some(Box::new(move |sandbox, pid| {
            std::thread::spawn(move || {
                while let Ok(sig) = forwarded.wait() {
                    let Some(sandbox) = sandbox.upgrade() else {
                        return;
                    };
                    if let Err(e) = sandbox.signal(pid, sig as u8) {
                        tracing::debug!("forwarding {sig}: {e:?}");
                    }
                }
            });
        })),
    })?;
    drop(forwards);
    drop(netns);
    drop(adopted);
    Ok(status.shell_code())
}

/// `--netns PATH`: adopt the namespace, open its interface inside, report its addresses and
/// start `-p` forwards (to the first IPv4 address, else the first). Returns the link, the
/// gateway for `--dns-upstream gateway`, and the namespace, to keep while the sandbox runs.
fn adopted_link(
    id: &str,
    path: &Path,
    publish: &[(u16, u16)],
    forwards: &mut Vec<PortForward>,
) -> anyhow::Result<(LinkConfig, Option<IpAddr>, AdoptedNetns)> {
    let ns = AdoptedNetns::adopt(path, None).context("--netns")?;
    let ifname = ns.ifname.clone();
    let packet = ns
        .run_inside(move || PacketLink::open(&ifname))?
        .with_context(|| format!("opening {} in {}", ns.ifname, path.display()))?;
    let peer = match &ns.peer_if {
        Some(peer) => format!("; TX offloads turned off on its peer {peer}"),
        None => String::new(),
    };
    say!(
        "runsc: sandbox {id}: adopted {} (mtu {}) in {}{peer}",
        ns.ifname,
        ns.mtu,
        ns.path.display()
    );
    for net in &ns.addrs {
        let gw = match net {
            IpNet::V4(_) => ns.gateway_v4.map(IpAddr::V4),
            IpNet::V6(_) => ns.gateway_v6.map(IpAddr::V6),
        };
        let gw = gw.map_or_else(|| "none".to_owned(), |g| g.to_string());
        say!(
            "runsc: sandbox {id}: address {net} (gateway {gw} on {})",
            ns.ifname
        );
    }
    let guest = ns
        .addrs
        .iter()
        .map(IpNet::addr)
        .find(IpAddr::is_ipv4)
        .or_else(|| ns.addrs.first().map(IpNet::addr))
        .context("the adopted interface has no address")?;
    for (host_port, guest_port) in publish {
        let fwd = PortForward::start(*host_port, SocketAddr::new(guest, *guest_port))?;
        say!(
            "runsc: forwarding {} to {}",
            fwd.local_addr(),
            SocketAddr::new(guest, *guest_port)
        );
        forwards.push(fwd);
    }
    let link = LinkConfig {
        link: Box::new(packet),
        name: ns.ifname.clone(),
        addrs: ns.addrs.clone(),
        gateway_v4: ns.gateway_v4,
        gateway_v6: ns.gateway_v6,
    };
    let gateway = ns
        .gateway_v4
        .map(IpAddr::V4)
        .or(ns.gateway_v6.map(IpAddr::V6));
    Ok((link, gateway, ns))
}

/// The exit code for a failure of `do` itself.
pub fn error_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<SandboxError>() {
        Some(SandboxError::Exec { errno, .. }) if *errno == Errno::ENOENT => 127,
        Some(SandboxError::Load { source, .. }) if source.errno() == Errno::ENOENT => 127,
        Some(SandboxError::Exec { .. }) | Some(SandboxError::Load { .. }) => 126,
        _ => 125,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_variables_add_to_the_defaults_and_replace_them_by_name() {
        let text = |env: Vec<Vec<u8>>| {
            env.into_iter()
                .map(|kv| String::from_utf8_lossy(&kv).into_owned())
                .collect::<Vec<_>>()
        };
        let env = guest_env(&["FOO=1".into(), "HOME=/home/app".into()], Some(b"xterm"));
        assert_eq!(
            text(env),
            [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
                "FOO=1",
                "HOME=/home/app"
            ]
        );
        assert_eq!(text(guest_env(&[], None)).len(), 2);
        // A name alone (no '=') still replaces its default.
        assert!(!text(guest_env(&["PATH".into()], None))
            .iter()
            .any(|e| e.starts_with("PATH=")));
    }
}

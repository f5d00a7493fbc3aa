//! `runsc do [--rootfs DIR] [--cwd DIR] [--env K=V]… [--network none|sandbox]
//! [-p HOST:GUEST]… [--acl FILE] -- CMD ARGS…`: run a command in a fresh sandbox; exit
//! with its status (128+N when killed by signal N).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use netstack::acl::{Acl, AuditLog, Policy};
use netstack::stack::{LinkConfig, Stack, StackConfig};
use sentry::net::link::PacketLink;

use anyhow::Context as _;
use clap::Args;
use sentry::abi::Errno;
use sentry::sandbox::{self, SandboxConfig, SandboxError};

use crate::network::forward::{parse_port_mapping, PortForward};
use crate::network::netns::SandboxNetns;

#[derive(Args)]
pub struct DoArgs {
    /// Root file system (a host directory, read-only; writes go to an in-memory overlay).
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
    /// Working directory inside the sandbox.
    #[arg(long, default_value = "/")]
    cwd: String,
    /// Environment variable for the command (repeatable). Without any, PATH is set.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Guest physical memory, in MiB.
    #[arg(long, default_value_t = 2048)]
    memory_mib: u64,
    /// Host name inside the sandbox.
    #[arg(long, default_value = "nanovisor")]
    hostname: String,
    /// The sandbox's network: `none` (loopback only) or `sandbox` (a fresh network
    /// namespace with a veth pair to the host, the way a CNI plugin sets up a pod).
    #[arg(long, value_enum, default_value_t = NetworkMode::None)]
    network: NetworkMode,
    /// Forward a host port (on 127.0.0.1) to a guest port; needs `--network sandbox`.
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
fn new_sandbox_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("do-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

pub fn run(args: DoArgs) -> anyhow::Result<i32> {
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
    let mut envp: Vec<Vec<u8>> = args.env.iter().map(|s| s.as_bytes().to_vec()).collect();
    if envp.is_empty() {
        envp.push(b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_vec());
    }
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
    let mut netns = None;
    let mut forwards = Vec::new();
    let link = match args.network {
        NetworkMode::Host => anyhow::bail!(
            "--network host: not supported; the guest never uses host sockets (use --network sandbox)"
        ),
        NetworkMode::None => {
            if !publish.is_empty() {
                anyhow::bail!("-p needs --network sandbox");
            }
            None
        }
        NetworkMode::Sandbox => {
            let ns = SandboxNetns::create(&id).context("--network sandbox")?;
            let ifname = ns.guest_if.clone();
            let packet = ns
                .run_inside(move || PacketLink::open(&ifname))?
                .with_context(|| format!("opening {} in the sandbox's namespace", ns.guest_if))?;
            let guest = ns.guest_addr;
            eprintln!(
                "runsc: sandbox {id}: address {guest}/{} (host side {} on {})",
                ns.prefix_len, ns.host_addr, ns.host_if
            );
            for (host_port, guest_port) in &publish {
                let fwd = PortForward::start(*host_port, SocketAddr::new(guest.into(), *guest_port))?;
                eprintln!(
                    "runsc: forwarding {} to {guest}:{guest_port}",
                    fwd.local_addr()
                );
                forwards.push(fwd);
            }
            let link = LinkConfig {
                link: Box::new(packet),
                addrs: vec![IpNet::new(guest.into(), ns.prefix_len)?],
                gateway_v4: Some(ns.host_addr),
                gateway_v6: None,
            };
            gateway = Some(IpAddr::V4(ns.host_addr));
            netns = Some(ns);
            Some(link)
        }
    };
    let mut dns_upstream = Vec::new();
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
    let status = sandbox::run(SandboxConfig {
        rootfs: args.rootfs,
        cwd: args.cwd.into_bytes(),
        argv,
        envp,
        hostname: args.hostname.into_bytes(),
        memory: args.memory_mib << 20,
        net,
    })?;
    drop(forwards);
    drop(netns);
    Ok(status.shell_code())
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

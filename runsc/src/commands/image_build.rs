//! `runsc image build -o DIR (--ready-port N | --ready-marker TEXT) [--timeout S]
//! (--bundle B | -- CMD…)`: boot an app once, wait until it is ready, checkpoint it, and
//! store the image content-addressed under DIR (`DIR/sha256-<hex>`, printed on stdout).
//! Every later cold start restores the image (`runsc restore --image-path …`).
//!
//! The app runs as a container of a private state root: `-- CMD…` makes a bundle over
//! the host's root (read-only, as `runsc do`), `--bundle` takes the app's own. Readiness
//! is a TCP port some guest socket listens on (asked of the sandbox's netstack, so no
//! connection is made and nothing is counted by the app), or a text the app prints.
//! What the app prints goes to a log in the work directory, shown when it fails.
//!
//! Warm-up (`--warm-up N`, with `--ready-port`): once ready, the app gets N requests of
//! `GET /` before the checkpoint, so the image holds a warm app
//! (see [`crate::network::warm_up`]). The last few of them record the image's working
//! set: the app is checkpointed, that image restored with its pages' accessed bits
//! cleared (`--working-set record`), the requests served, and the image written is the
//! checkpoint taken then, whose accessed bits say which pages a restored guest touches
//! first. Restores prefault those (`sentry::platform::kvm::WorkingSet`).

use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use ipnet::IpNet;

use crate::commands::{checkpoint, GlobalOpts};
use crate::container::{Container, Status};
use crate::network::adopt::Configuration;
use crate::network::netns::SandboxNetns;
use crate::network::rtnl::Rtnl;
use crate::network::warm_up;

#[derive(Args)]
pub struct BuildArgs {
    /// Where to store the image: DIR/sha256-<hex> (DIR is created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,
    /// The app is ready once a guest socket listens on this TCP port.
    #[arg(long, value_name = "N", conflicts_with = "ready_marker")]
    ready_port: Option<u16>,
    /// The app is ready once it has printed this text (stdout or stderr).
    #[arg(long, value_name = "TEXT")]
    ready_marker: Option<String>,
    /// Give up if the app is not ready after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 60)]
    timeout: u64,
    /// With --ready-port: send the app this many requests of `GET /` (HTTP/1.1) once it is
    /// ready, before the checkpoint; 0 sends none. Node's V8 compiles each function when
    /// it first runs: the first request a server answers pays for compiling its whole
    /// request path. Served before the checkpoint, that work is in the image, and no
    /// restored sandbox does it again; the last three record which pages a restored copy
    /// touches first, which restores prefault. The app is reached at the address of the
    /// bundle's network namespace (with `-- CMD…`, or a bundle that names none by path,
    /// one made for the build: a veth pair to this host, as `runsc do --network sandbox`
    /// makes).
    #[arg(long = "warm-up", value_name = "N", default_value_t = warm_up::DEFAULT_REQUESTS)]
    warm_up: u32,
    /// The app's OCI bundle (else the command after `--`).
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    bundle: Option<PathBuf>,
    /// With `-- CMD…`: guest memory in MiB (a restored sandbox has the same).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory: u64,
    /// With `-- CMD…`: an environment variable (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// With `-- CMD…`: the working directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    cwd: String,
    /// The command to run (after `--`).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Progress on stderr: one line rewritten in place on a terminal, lines otherwise.
struct Progress {
    tty: bool,
    start: Instant,
    last: std::cell::RefCell<String>,
}

impl Progress {
    /// Show `what`: on a terminal with the time ticking, elsewhere once per change.
    fn say(&self, what: &str) {
        let t = self.start.elapsed().as_secs_f64();
        if self.tty {
            eprint!("\r\x1b[2K[{t:6.2} s] {what}");
        } else if *self.last.borrow() != what {
            say!("[{t:6.2} s] {what}");
            *self.last.borrow_mut() = what.to_string();
        }
    }

    fn done(&self, what: &str) {
        self.say(what);
        if self.tty {
            say!();
        }
    }
}

pub fn run(args: BuildArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    if args.ready_port.is_none() && args.ready_marker.is_none() {
        bail!("say when the app is ready: --ready-port N or --ready-marker TEXT");
    }
    if args.bundle.is_none() && args.command.is_empty() {
        bail!("give the app: --bundle DIR, or a command after --");
    }
    let work = std::env::temp_dir().join(format!("nanovisor-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = build(&args, global, &work);
    let _ = std::fs::remove_dir_all(&work);
    let dir = result?;
    println!("{}", dir.display());
    Ok(0)
}

fn build(args: &BuildArgs, global: &GlobalOpts, work: &Path) -> anyhow::Result<PathBuf> {
    let progress = Progress {
        tty: std::io::stderr().is_terminal(),
        start: Instant::now(),
        last: Default::default(),
    };
    let warming = args.ready_port.is_some() && args.warm_up > 0;
    let given = match &args.bundle {
        Some(b) => Some(std::path::absolute(b).with_context(|| format!("bundle {}", b.display()))?),
        None => None,
    };
    // A namespace of its own for the app to be reached in, unless its bundle names one;
    // kept until the app's sandbox is gone (`cleanup` below is dropped first).
    let build_netns = match &given {
        _ if !warming => None,
        None => build_netns(),
        Some(b) if bundle_netns(b)?.is_none() => build_netns(),
        Some(_) => None,
    };
    let bundle = match (&given, &build_netns) {
        (Some(b), Some(ns)) => rebundle(b, work, &ns.netns_path())?,
        (Some(b), None) => b.clone(),
        (None, ns) => command_bundle(args, work, ns.as_ref())?,
    };
    // How the app's namespace is configured before its sandbox adopts it: where to reach
    // it, and what to put back for the sandbox that records the working set.
    let app_net = if warming { app_network(&bundle) } else { None };
    let warm_to = match (args.ready_port, &app_net) {
        (Some(port), Some(net)) => app_address(net).map(|ip| SocketAddr::new(ip, port)),
        _ => None,
    };
    let root = work.join("root");
    let log = work.join("app.log");
    let id = "image-build";
    let runsc = |sub: &[&std::ffi::OsStr], out: Stdio| -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding the runsc binary")?;
        let err_path = work.join(format!("{}.err", sub[0].to_string_lossy()));
        let status = Command::new(exe)
            .args(global.child_args(None).iter().skip(2))
            .arg("--root")
            .arg(&root)
            .args(sub)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(std::fs::File::create(&err_path)?)
            .status()
            .context("running runsc")?;
        if !status.success() {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!("runsc {}: {}", sub[0].to_string_lossy(), err.trim());
        }
        Ok(())
    };
    let app_out = std::fs::File::create(&log).context("creating the app's log")?;
    progress.say("booting the app");
    runsc(
        &[
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            id.as_ref(),
        ],
        Stdio::from(app_out),
    )?;
    let cleanup = Cleanup(root.clone());
    runsc(&["start".as_ref(), id.as_ref()], Stdio::null())?;
    let mut container = Container::load(&crate::container::dir::Root::new(&root)?, id)?;
    wait_ready(args, &container, &log, &progress)?;

    if let Some(to) = warm_to {
        let (before, recording) = warm_up::split(args.warm_up);
        progress.say(&format!("warming the app up ({before} requests to {to})"));
        let warmed = match warm_up::run(to, before) {
            Ok(report) => {
                progress.say(&format!("warmed up: {report}"));
                true
            }
            Err(e) => {
                say!("warning: warm-up of {to} stopped: {e:#}; checkpointing as is");
                false
            }
        };
        if warmed && recording > 0 {
            let build = Build {
                args,
                work,
                root: &root,
                log: &log,
                bundle: &bundle,
                id,
                progress: &progress,
                runsc: &runsc,
            };
            container = build.record_working_set(&container, app_net.as_ref(), to, recording)?;
        }
    }
    progress.say("ready; checkpointing");
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let written = checkpoint::take(&container, false, |guest_bytes| {
        let mut w = checkpoints::ImageWriter::create_content_addressed(
            &args.output,
            sentry::VERSION,
            guest_bytes,
        )
        .with_context(|| format!("creating an image in {}", args.output.display()))?;
        if args.command.is_empty() {
            w.set_source("bundle", bundle.display().to_string());
        } else {
            w.set_source("command", args.command.join(" "));
        }
        Ok(w)
    })?;
    progress.done(&format!(
        "image {} ({})",
        written.digest,
        written.dir.display()
    ));
    drop(cleanup);
    Ok(written.dir)
}

/// What the working-set step needs of the build.
struct Build<'a> {
    args: &'a BuildArgs,
    work: &'a Path,
    root: &'a Path,
    log: &'a Path,
    bundle: &'a Path,
    id: &'a str,
    progress: &'a Progress,
    /// Runs a runsc subcommand on the build's state root, stdout to the given place.
    runsc: &'a dyn Fn(&[&std::ffi::OsStr], Stdio) -> anyhow::Result<()>,
}

impl Build<'_> {
    /// Checkpoint the warm app, restore it with its accessed bits cleared (in its
    /// namespace configured again: `net`), serve it `requests` requests at `to`; the
    /// restored container, whose checkpoint records the pages they touched.
    fn record_working_set(
        &self,
        warm: &Container,
        net: Option<&Configuration>,
        to: SocketAddr,
        requests: u32,
    ) -> anyhow::Result<Container> {
        self.progress
            .say("checkpointing the warm app, to record its working set");
        let first = self.work.join("first-image");
        checkpoint::take(warm, false, |guest_bytes| {
            checkpoints::ImageWriter::create(&first, sentry::VERSION, guest_bytes)
                .context("creating the first image")
        })
        .context("checkpointing the warm app")?;
        delete(self.root);
        if let Some(net) = net {
            net.apply()
                .context("configuring the app's network namespace again")?;
        }
        self.progress.say("restoring it, recording what it touches");
        let app_out = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log)
            .context("opening the app's log")?;
        (self.runsc)(
            &[
                "create".as_ref(),
                "--bundle".as_ref(),
                self.bundle.as_os_str(),
                "--checkpoint-image".as_ref(),
                first.as_os_str(),
                "--working-set".as_ref(),
                "record".as_ref(),
                self.id.as_ref(),
            ],
            Stdio::from(app_out),
        )?;
        (self.runsc)(&["start".as_ref(), self.id.as_ref()], Stdio::null())?;
        let restored = Container::load(&crate::container::dir::Root::new(self.root)?, self.id)?;
        wait_ready(self.args, &restored, self.log, self.progress)?;
        let report = warm_up::run(to, requests).context("recording the working set")?;
        self.progress
            .say(&format!("working set recorded: {report}"));
        Ok(restored)
    }
}

/// Wait until the app is ready, or fail if it exits or the build's timeout passes.
fn wait_ready(
    args: &BuildArgs,
    container: &Container,
    log: &Path,
    progress: &Progress,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        if ready(args, container, log)? {
            return Ok(());
        }
        let (status, _) = container.status();
        if status == Status::Stopped {
            bail!("the app exited before it was ready{}", tail(log));
        }
        if Instant::now() >= deadline {
            bail!(
                "the app was not ready after {} s ({}){}",
                args.timeout,
                readiness(args),
                tail(log)
            );
        }
        progress.say(&format!("waiting for the app ({})", readiness(args)));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deletes the build's container however the build ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete(&self.0);
    }
}

/// `runsc delete --force` the build's container under state root `root`.
fn delete(root: &Path) {
    if let Ok(exe) = std::env::current_exe() {
        let _ = Command::new(exe)
            .arg("--root")
            .arg(root)
            .args(["delete", "--force", "image-build"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn readiness(args: &BuildArgs) -> String {
    match (&args.ready_port, &args.ready_marker) {
        (Some(port), _) => format!("a listener on TCP port {port}"),
        (None, Some(marker)) => format!("the text {marker:?}"),
        (None, None) => "nothing".into(),
    }
}

fn ready(args: &BuildArgs, c: &Container, log: &Path) -> anyhow::Result<bool> {
    if let Some(port) = args.ready_port {
        return match c.control().and_then(|mut ctl| ctl.tcp_listening(port)) {
            Ok(listening) => Ok(listening),
            // The sandbox went away: the caller sees the container stopped.
            Err(_) => Ok(false),
        };
    }
    let marker = args.ready_marker.as_deref().unwrap_or_default();
    Ok(std::fs::read_to_string(log)
        .map(|text| text.contains(marker))
        .unwrap_or(false))
}

/// The end of the app's output, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return " (it printed nothing)".into();
    }
    let from = lines.len().saturating_sub(20);
    format!("; the app printed:\n{}", lines[from..].join("\n"))
}

/// A network namespace for a `-- CMD…` app, so warm-up requests can reach it: the veth
/// pair `runsc do --network sandbox` makes, with the guest's address configured inside
/// for the sandbox to adopt (as a CNI plugin leaves a pod's). None, with a warning, when
/// it cannot be made (no CAP_NET_ADMIN, no iproute2): the app is built without warm-up.
fn build_netns() -> Option<SandboxNetns> {
    let made =
        SandboxNetns::create(&format!("image-build-{}", std::process::id())).and_then(|ns| {
            let net = IpNet::new(IpAddr::V4(ns.guest_addr), ns.prefix_len)?;
            let (gateway, dev) = (ns.host_addr, ns.guest_if.clone());
            ns.run_inside(move || -> anyhow::Result<()> {
                let mut nl = Rtnl::open().context("opening an rtnetlink socket")?;
                let link = nl
                    .links()?
                    .into_iter()
                    .find(|l| l.ifname == dev)
                    .ok_or_else(|| anyhow!("no {dev} in the build's namespace"))?;
                nl.add_addr(link.ifindex, net)
                    .with_context(|| format!("adding {net} to {dev}"))?;
                nl.add_default_route_v4(gateway)
                    .with_context(|| format!("adding a default route via {gateway}"))?;
                Ok(())
            })??;
            Ok(ns)
        });
    match made {
        Ok(ns) => Some(ns),
        Err(e) => {
            say!("warning: no network namespace for the app ({e:#}): no warm-up");
            None
        }
    }
}

/// The configuration of the bundle's network namespace (with `-- CMD…`, the build's own),
/// read before the sandbox adopts it. None, with a warning, when there is none.
fn app_network(bundle: &Path) -> Option<Configuration> {
    let config = bundle.join("config.json");
    let path = oci_spec::runtime::Spec::load(&config)
        .ok()
        .and_then(|spec| crate::boot::network::netns_path(&spec));
    let Some(path) = path else {
        say!(
            "warning: the bundle names no network namespace to reach the app through: \
             no warm-up"
        );
        return None;
    };
    match Configuration::read(&path) {
        Ok(net) => Some(net),
        Err(e) => {
            say!("warning: {e:#}: no warm-up");
            None
        }
    }
}

/// Where the app is reached: its namespace's first IPv4 address, else its first.
fn app_address(net: &Configuration) -> Option<IpAddr> {
    let addrs = &net.addrs;
    let first = addrs
        .iter()
        .find(|a| a.addr().is_ipv4())
        .or(addrs.first())
        .map(|a| a.addr());
    if first.is_none() {
        say!("warning: the app's network namespace has no address: no warm-up");
    }
    first
}

/// The network namespace the bundle at `bundle` names by path, if it does.
fn bundle_netns(bundle: &Path) -> anyhow::Result<Option<PathBuf>> {
    let config = bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::load(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    Ok(crate::boot::network::netns_path(&spec))
}

/// A copy of the bundle at `bundle` (which names no network namespace to join) that runs
/// in the namespace at `netns`, for the app to be warmed up through: its config.json with the root made
/// absolute and the network namespace set, in `work`. A sandbox restored from the image
/// gets whatever network its own bundle gives it.
fn rebundle(bundle: &Path, work: &Path, netns: &Path) -> anyhow::Result<PathBuf> {
    let path = bundle.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let root = config
        .pointer("/root/path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| anyhow!("{}: no root.path", path.display()))?;
    config["root"]["path"] = serde_json::json!(bundle.join(root));
    let joined = serde_json::json!({"type": "network", "path": netns});
    if !config.get("linux").is_some_and(|l| l.is_object()) {
        config["linux"] = serde_json::json!({});
    }
    match config["linux"]["namespaces"].as_array_mut() {
        Some(namespaces) => {
            namespaces.retain(|n| n.get("type").and_then(|t| t.as_str()) != Some("network"));
            namespaces.push(joined);
        }
        None => config["linux"]["namespaces"] = serde_json::json!([joined]),
    }
    let copy = work.join("bundle");
    std::fs::create_dir_all(&copy)?;
    std::fs::write(copy.join("config.json"), config.to_string())?;
    Ok(copy)
}

/// A bundle over the host's root running `args.command`, in `netns` when given.
fn command_bundle(
    args: &BuildArgs,
    work: &Path,
    netns: Option<&SandboxNetns>,
) -> anyhow::Result<PathBuf> {
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let mut env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_string()];
    env.extend(args.env.iter().cloned());
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                    "args": args.command, "env": env, "cwd": args.cwd},
        "root": {"path": "/", "readonly": true},
        "linux": {"resources": {"memory": {"limit": args.memory.checked_mul(1 << 20)
            .ok_or_else(|| anyhow!("--memory {} MiB is too large", args.memory))?}}},
    });
    if let Some(ns) = netns {
        config["linux"]["namespaces"] =
            serde_json::json!([{"type": "network", "path": ns.netns_path()}]);
    }
    std::fs::write(bundle.join("config.json"), config.to_string())?;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebundled_app_joins_the_build_namespace_over_its_own_root() {
        let dir = std::env::temp_dir().join(format!("nv-rebundle-{}", std::process::id()));
        let (bundle, work) = (dir.join("app"), dir.join("work"));
        std::fs::create_dir_all(&bundle).expect("bundle");
        std::fs::create_dir_all(&work).expect("work");
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["node", "server.js"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs", "readonly": true},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]},
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).expect("config");
        assert_eq!(bundle_netns(&bundle).expect("read"), None);

        let copy = rebundle(&bundle, &work, Path::new("/var/run/netns/build")).expect("rebundle");
        assert_eq!(
            bundle_netns(&copy).expect("read"),
            Some(PathBuf::from("/var/run/netns/build"))
        );
        let text = std::fs::read_to_string(copy.join("config.json")).expect("copy");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["root"]["path"], serde_json::json!(bundle.join("rootfs")));
        assert_eq!(v["linux"]["namespaces"][0]["type"], "pid");
        assert_eq!(v["linux"]["namespaces"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["process"]["args"][1], "server.js");

        // A bundle with no `linux` at all gets one.
        std::fs::write(
            bundle.join("config.json"),
            serde_json::json!({"ociVersion": "1.0.2",
                               "process": {"args": ["x"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                               "root": {"path": "/"}})
            .to_string(),
        )
        .expect("config");
        let copy = rebundle(&bundle, &work, Path::new("/run/netns/b")).expect("rebundle");
        assert_eq!(
            bundle_netns(&copy).expect("read"),
            Some(PathBuf::from("/run/netns/b"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! `runsc boot` (hidden): become the sandbox process for container ID. Started by
//! `runsc create`, which passes the write end of a pipe (`--ready-fd`) and waits for one
//! line on it: `ready` once the control socket listens, or `error: …`. The process then
//! serves the control socket and exits with the container init's status (the code, or
//! 128+N for a signal), so that whoever reaps it (conmon, containerd's shim) sees the
//! container's exit.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _};
use clap::Args;
use netstack::acl::Acl;
use oci_spec::runtime::Spec;
use sentry::sandbox::Sandbox;

use crate::boot::control::{self, Controller};
use crate::boot::network;
use crate::network::adopt::AdoptedNetns;

/// Guest memory when the spec sets no memory limit.
const DEFAULT_MEMORY: u64 = 2 << 30;

#[derive(Args)]
pub struct BootArgs {
    /// The OCI bundle (directory holding config.json).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The pipe to report readiness on.
    #[arg(long)]
    pub ready_fd: i32,
    /// The slave end of the container's terminal, when it has one.
    #[arg(long)]
    pub console_fd: Option<i32>,
    /// A network policy file (else the bundle's annotations decide).
    #[arg(long)]
    pub acl: Option<PathBuf>,
    /// The container id.
    pub id: String,
}

/// What stays alive while the sandbox runs.
struct Booted {
    sandbox: Arc<Sandbox>,
    started: Receiver<i32>,
    controller: Arc<Controller>,
    _netns: Option<AdoptedNetns>,
}

pub fn run(args: BootArgs, root: &Path) -> anyhow::Result<i32> {
    // SAFETY: `runsc create` hands this process the write end of its pipe as --ready-fd;
    // nothing else in the process owns that descriptor.
    let mut ready = unsafe { File::from_raw_fd(args.ready_fd) };
    let booted = match boot(&args, root) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(ready, "error: {e:#}");
            return Err(e);
        }
    };
    writeln!(ready, "ready").context("reporting readiness")?;
    drop(ready);
    // Wait for `start`, then for init to end.
    let Ok(pid) = booted.started.recv() else {
        return Ok(0);
    };
    let status = booted
        .sandbox
        .wait(pid)
        .map_err(|e| anyhow!("waiting for the container's init: {e}"))?;
    sentry::sandbox::log_fatal_signal(&format!("container {}: init", args.id), status);
    // Let `runsc wait` / `exec-wait` callers get their answer before the socket goes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while booted
        .controller
        .waiting
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(status.shell_code())
}

fn memory_limit(spec: &Spec) -> u64 {
    spec.linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| (l as u64).clamp(256 << 20, 64 << 30))
        .unwrap_or(DEFAULT_MEMORY)
}

fn boot(args: &BootArgs, root: &Path) -> anyhow::Result<Booted> {
    let state_dir = root.join(&args.id);
    let config = args.bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| anyhow!("{}: {e}", config.display()))?;
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| anyhow!("{}: no root", config.display()))?;
    let rootfs = if rootfs.is_absolute() {
        rootfs
    } else {
        args.bundle.join(rootfs)
    };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no process", config.display()))?;

    let policy = network::policy_for(&spec, args.acl.as_deref())?;
    let audit = network::audit_log(&args.id, &state_dir)?;
    let acl = Arc::new(Acl::new(policy, audit));
    let (stack, netns) = network::build_stack(&args.id, &spec, acl.clone())?;
    let hostname = spec
        .hostname()
        .clone()
        .unwrap_or_else(|| "nanovisor".into());
    let sandbox = Sandbox::new(memory_limit(&spec), hostname.as_bytes(), stack)?;
    sandbox
        .add_container(&args.id, &rootfs)
        .with_context(|| format!("root file system {}", rootfs.display()))?;

    let init = crate::oci::process_spec(process);
    let fds: Vec<OwnedFd> = match args.console_fd {
        // SAFETY: `runsc create` passes the pty's slave end as --console-fd; we own it.
        Some(fd) => vec![unsafe { OwnedFd::from_raw_fd(fd) }],
        None => Vec::new(),
    };
    let mut init_spec = init.clone();
    init_spec.terminal = args.console_fd.is_some();
    let init = control::process_spec(&init_spec, fds)
        .map_err(|r| anyhow!("the container's process: {r:?}"))?;

    let sock_path = state_dir.join("control.sock");
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path)
        .with_context(|| format!("binding {}", sock_path.display()))?;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", sock_path.display()))?;
    let (tx, rx) = mpsc::channel();
    let controller = Arc::new(Controller {
        sandbox: sandbox.clone(),
        id: args.id.clone(),
        init: Mutex::new(Some(init)),
        started: Mutex::new(Some(tx)),
        acl,
        audit_path: state_dir.join("audit.log"),
        waiting: Default::default(),
    });
    let c = controller.clone();
    nanovisor_proto::serve(listener, move |req, fds, out| c.handle(req, fds, out))
        .context("serving the control socket")?;
    Ok(Booted {
        sandbox,
        started: rx,
        controller,
        _netns: netns,
    })
}

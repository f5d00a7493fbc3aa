//! `runsc boot` (hidden): become the sandbox process for container ID. Started by
//! `runsc create`, which passes the write end of a pipe (`--ready-fd`) and waits for one
//! line on it: `ready` once the control socket listens, or `error: …`. The process then
//! serves the control socket and exits with the container init's status (the code, or
//! 128+N for a signal), so that whoever reaps it (conmon, containerd's shim) sees the
//! container's exit. Further containers of a pod join through the socket
//! (`CreateContainer`); they end when this container's init does.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use clap::Args;
use netstack::acl::Acl;
use oci_spec::runtime::Spec;
use sentry::sandbox::{HostSource, Sandbox};
use sentry::steps::Steps;

use crate::boot::control::{self, Controller};
use crate::boot::network;
use crate::commands::restore::WorkingSet;
use crate::confine;
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
    /// Restore the sandbox from this checkpoint image instead of starting the bundle's
    /// process (`runsc restore`).
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,
    /// With --restore: what to do with the image's working set.
    #[arg(long, value_enum, default_value_t = WorkingSet::Prefault)]
    pub working_set: WorkingSet,
    /// The container id.
    pub id: String,
}

/// What stays alive while the sandbox runs.
struct Booted {
    _cgroup: Option<confine::cgroup::Cgroup>,
    /// The container's OOM mark (`commands::oom`), opened while the host's tree is still
    /// there; written only if the init is OOM-killed.
    oom_mark: Option<File>,
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
    // Wait for `start`, then for init to end; the pod's other containers end with it.
    let status = booted.controller.wait_init(&args.id).map_err(|r| {
        anyhow!(
            "waiting for the container's init: {}",
            control::error_text(&r)
        )
    })?;
    sentry::sandbox::log_fatal_signal(&format!("container {}: init", args.id), status);
    // When this sandbox's own container ends, so does the sandbox: no one can ask it then
    // whether the init was OOM-killed, so it says so in the container's state directory.
    if booted.controller.init_oom_killed(&args.id) {
        if let Some(mut mark) = booted.oom_mark.as_ref() {
            if let Err(e) = mark.write_all(crate::commands::oom::MARK_TEXT) {
                tracing::warn!("marking the init's OOM kill: {e}");
            }
        }
    }
    booted.controller.shut_down();
    // Let requests in flight (a `runsc wait`, the kill that ended the init) get their
    // answers before the socket goes.
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
        .map(|l| (l as u64).clamp(confine::cgroup::MIN_GUEST_MEMORY, 64 << 30))
        .unwrap_or(DEFAULT_MEMORY)
}

fn boot(args: &BootArgs, root: &Path) -> anyhow::Result<Booted> {
    let mut steps = Steps::new("boot");
    let state_dir = root.join(&args.id);
    let config = args.bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| anyhow!("{}: {e}", config.display()))?;
    // Confinement, part one, while this process still has a single thread: its own
    // mount, IPC and UTS namespaces and the pod's network namespace; a host cgroup with
    // the spec's limits. (Its PID namespace comes from `runsc create`.)
    let namespaces = confine::namespaces::NamespaceSet::from_oci(&spec);
    confine::namespaces::unshare(&namespaces).context("entering the sandbox's namespaces")?;
    steps.done("namespaces");
    // The vDSO's clock needs ~20 ms of calibration before guests read time without a
    // syscall: spend them building the sandbox.
    sentry::vdso::start_clock_updater();
    // Joining a cgroup waits for an RCU grace period (cgroup v1: ~6-10 ms here), mostly
    // idle: done on a thread while this one opens the root, adopts the network and, for a
    // restore, builds the sandbox. Either way it is joined
    // before any guest code runs and before the host's file tree goes.
    let cgroup = {
        let (spec, id) = (spec.clone(), args.id.clone());
        std::thread::Builder::new()
            .name("cgroup".into())
            .spawn(move || sandbox_cgroup(&spec, &id))
            .context("starting the cgroup thread")?
    };
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

    // Everything this process needs from the host's file tree is opened from here on,
    // before it gives the tree up below. A pod's later containers arrive as fds.
    let root_source = HostSource::open_root(&rootfs)
        .with_context(|| format!("root file system {}", rootfs.display()))?;
    let mounts = crate::boot::mounts::plan(&spec, &args.bundle)
        .into_iter()
        .filter_map(|m| m.open().transpose())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = network::policy_for(&spec, args.acl.as_deref())?;
    let audit = network::audit_log(&args.id, &state_dir)?;
    let audit_path = state_dir.join("audit.log");
    let audit_reader = File::open(&audit_path)
        .with_context(|| format!("opening {} for reading", audit_path.display()))?;
    let acl = Arc::new(Acl::new(policy, audit));
    steps.done("root file system, mounts and policy");
    // The resolv.conf the container would have had: its nameservers become the DNS
    // proxy's upstreams, its search domains and options the guest's.
    let resolver = crate::network::resolver::for_container(&spec, &args.bundle, &rootfs);
    let upstreams = resolver.as_ref().map(|r| r.upstreams()).unwrap_or_default();
    let guest_resolv_conf = resolver.map(|r| r.for_guest_bytes());
    let (stack, netns) = network::build_stack(&args.id, &spec, acl.clone(), upstreams)?;
    steps.done("network");
    let join_cgroup = |steps: &mut Steps| {
        let joined = cgroup
            .join()
            .map_err(|_| anyhow!("creating the cgroup: the thread panicked"))?;
        steps.done("cgroup joined");
        joined
    };
    let (cgroup, built) = match &args.restore {
        // A restored sandbox's memory is a private mapping of the image, faulted in once
        // its guest runs, after the join: what its build allocates (the VM, vCPUs,
        // threads: a few hundred KiB) goes to runsc's cgroup, and the join's wait (an RCU
        // grace period on cgroup v1, ~6 ms here) overlaps with the build.
        Some(image) => {
            let built = restore_sandbox(args, image, stack, root_source, mounts, &mut steps)?;
            // The restored container keeps the resolv.conf of its image; a pod's later
            // containers get this one's.
            if let (Built::Restored(sandbox, _), Some(text)) = (&built, &guest_resolv_conf) {
                sandbox.set_resolv_conf(text.clone());
            }
            (join_cgroup(&mut steps)?, built)
        }
        // A new sandbox loads the app into guest memory as it is built, and pages are
        // charged to whoever writes them first: join before.
        None => {
            let cgroup = join_cgroup(&mut steps)?;
            let built = new_sandbox(
                args,
                &spec,
                process,
                stack,
                FileSystem {
                    root_source,
                    mounts,
                    resolv_conf: guest_resolv_conf,
                },
                &rootfs,
            )?;
            (cgroup, built)
        }
    };
    steps.done("sandbox");

    let sock_path = state_dir.join("control.sock");
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path)
        .with_context(|| format!("binding {}", sock_path.display()))?;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", sock_path.display()))?;
    let controller = Arc::new(match built {
        Built::New(sandbox, init) => {
            Controller::new(sandbox, &args.id, init, acl, Some(audit_reader))
        }
        Built::Restored(sandbox, pid) => {
            Controller::restored(sandbox, &args.id, pid, acl, Some(audit_reader))
        }
    });
    // Confinement, part two, before any guest code runs and before the control socket
    // takes requests: the host's file tree goes (an empty read-only root; what the
    // sandbox needs is open already), then every capability but reading the rootfs as
    // its owner would, no new privileges, and the reviewed seccomp allowlist
    // (runsc/src/confine/seccomp_policy.json) on every thread.
    let oom_mark = open_oom_mark(&state_dir);
    confine::namespaces::pivot_to_empty(&[]).context("giving up the host's file tree")?;
    steps.done("control socket and pivot_root");
    let c = controller.clone();
    nanovisor_proto::serve(listener, move |req, fds, out| c.handle(req, fds, out))
        .context("serving the control socket")?;
    confine::caps::drop_all_but(&[confine::caps::Capability::DacReadSearch])
        .context("dropping capabilities")?;
    confine::seccomp::install().context("installing the seccomp filter")?;
    steps.done("capabilities and seccomp");
    Ok(Booted {
        _cgroup: cgroup,
        oom_mark,
        controller,
        _netns: netns,
    })
}

/// A sandbox just built: a new one with its init to start, or a restored one (held
/// paused) with its init's pid.
enum Built {
    New(Arc<Sandbox>, sentry::sandbox::ProcessSpec),
    Restored(Arc<Sandbox>, i32),
}

/// A new container's files: its root, its mounts, and what its /etc/resolv.conf says.
struct FileSystem {
    root_source: HostSource,
    mounts: Vec<sentry::sandbox::MountSpec>,
    resolv_conf: Option<Vec<u8>>,
}

fn new_sandbox(
    args: &BootArgs,
    spec: &Spec,
    process: &oci_spec::runtime::Process,
    stack: Arc<netstack::stack::Stack>,
    fs: FileSystem,
    rootfs: &Path,
) -> anyhow::Result<Built> {
    let FileSystem {
        root_source,
        mounts,
        resolv_conf,
    } = fs;
    let hostname = spec
        .hostname()
        .clone()
        .unwrap_or_else(|| "nanovisor".into());
    let sandbox = Sandbox::new(memory_limit(spec), hostname.as_bytes(), stack)?;
    if confine::seccomp::debug_hooks_requested() {
        sandbox.enable_debug_hooks();
    }
    if let Some(text) = resolv_conf {
        sandbox.set_resolv_conf(text);
    }
    sandbox
        .add_container(&args.id, root_source, mounts)
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

    Ok(Built::New(sandbox, init))
}

/// The sandbox of checkpoint image `image`, over this bundle's root and mounts.
fn restore_sandbox(
    args: &BootArgs,
    image: &Path,
    stack: Arc<netstack::stack::Stack>,
    root_source: HostSource,
    mounts: Vec<sentry::sandbox::MountSpec>,
    steps: &mut Steps,
) -> anyhow::Result<Built> {
    let opened = checkpoints::Image::open(image, sentry::VERSION)
        .with_context(|| format!("checkpoint image {}", image.display()))?;
    let memory_image = opened
        .checked_memory_file()
        .with_context(|| format!("checkpoint image {}", image.display()))?
        .try_clone()
        .with_context(|| format!("checkpoint image {}: memory.img", image.display()))?;
    steps.done("checkpoint image opened");
    let mut containers = std::collections::HashMap::new();
    containers.insert(args.id.clone(), (root_source, mounts));
    // The container's stdio now: the terminal `create` made, or this process's own.
    let stdio = match args.console_fd {
        Some(fd) => {
            // SAFETY: `runsc create` passes the pty's slave end as --console-fd; we own it.
            let tty = unsafe { OwnedFd::from_raw_fd(fd) };
            [tty.try_clone()?, tty.try_clone()?, tty]
        }
        None => [
            std::io::stdin().as_fd().try_clone_to_owned()?,
            std::io::stdout().as_fd().try_clone_to_owned()?,
            std::io::stderr().as_fd().try_clone_to_owned()?,
        ],
    };
    let mut stdio_by_id = std::collections::HashMap::new();
    stdio_by_id.insert(args.id.clone(), stdio);
    let sandbox = Sandbox::restore(sentry::state::sandbox::RestoreInput {
        memory_image,
        state: opened.kernel_state(),
        net: stack,
        containers,
        stdio: stdio_by_id,
        working_set: args.working_set.into(),
    })
    .with_context(|| format!("restoring {}", image.display()))?;
    if confine::seccomp::debug_hooks_requested() {
        sandbox.enable_debug_hooks();
    }
    let pid = sandbox.init_pid(&args.id).ok_or_else(|| {
        anyhow!(
            "checkpoint image {}: its container has no init process",
            image.display()
        )
    })?;
    tracing::info!(image = %opened.digest(), pid, "restored from a checkpoint");
    Ok(Built::Restored(sandbox, pid))
}

/// The container's OOM mark, created empty (an empty mark says nothing); None, logged, if
/// it cannot be made: the kill is then reported as a plain SIGKILL.
fn open_oom_mark(state_dir: &Path) -> Option<File> {
    let path = state_dir.join(crate::commands::oom::MARK);
    match File::create(&path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("creating {}: {e}", path.display());
            None
        }
    }
}

/// The sandbox's host cgroup: `linux.cgroupsPath` (or `nanovisor/ID`) with the spec's
/// limits, holding this process. None when the host has no usable cgroup hierarchy.
fn sandbox_cgroup(spec: &Spec, id: &str) -> anyhow::Result<Option<confine::cgroup::Cgroup>> {
    let linux = spec.linux().as_ref();
    let path =
        confine::cgroup::CgroupPath::from_oci(linux.and_then(|l| l.cgroups_path().as_deref()), id)?;
    let resources = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let cgroup = confine::cgroup::Cgroup::create_at(&path, &resources)
        .with_context(|| format!("creating the cgroup {path}"))?;
    cgroup.add_self().context("joining the sandbox's cgroup")?;
    Ok(Some(cgroup))
}

//! A sandbox: one VM and one kernel, holding one or more containers (a pod), each with
//! its own root file system, whose processes the caller starts, signals, waits for,
//! pauses and lists. `runsc boot` drives it for the OCI runtime; [`run`] is the one-shot
//! form `runsc do` uses.
//!
//! A container's first process is its init: when init ends, the container's other
//! processes are killed, as when a pid namespace's init dies. Processes started with
//! [`Sandbox::spawn`] have no parent inside the sandbox; their status is collected by
//! [`Sandbox::wait`].
//!
//! Lock order: `containers` before any thread group's locks.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::abi::Errno;
use crate::kernel::exec::{execve, ExecError};
use crate::kernel::exit::ExitStatus;
use crate::kernel::run::spawn_thread;
use crate::kernel::signal::{self, SignalState};
use crate::kernel::sigqueue::{PendingSignals, SigInfo, SI_USER};
use crate::kernel::task::{Credentials, Kernel, ProcessInfo, Rlimits, Task, MAX_THREADS};
use crate::kernel::thread_group::{Member, ThreadGroup};
use crate::mm::MemoryManager;
use crate::platform::kvm::KvmPlatform;
use crate::platform::{Platform, PlatformError};
pub use crate::vfs::host_source::{HostSource, SourceKind};
use crate::vfs::{FdTable, FsContext, Mount, MountError, Vfs, VfsError};
use crate::waiter::Waiter;

/// How a one-shot sandbox (`runsc do`) is set up.
pub struct SandboxConfig {
    pub rootfs: PathBuf,
    pub cwd: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub hostname: Vec<u8>,
    /// Bytes of guest physical memory.
    pub memory: u64,
    /// The sandbox's network stack, built by the caller with its link and ACL.
    pub net: Arc<netstack::stack::Stack>,
    /// The guest's /etc/resolv.conf (None: one naming the DNS proxy alone).
    pub resolv_conf: Option<Vec<u8>>,
    /// Called once the program runs (`runsc do` starts forwarding signals to it).
    pub on_start: Option<OnStart>,
}

/// What [`SandboxConfig::on_start`] is given: the sandbox and the program's pid.
pub type OnStart = Box<dyn FnOnce(std::sync::Weak<Sandbox>, i32) + Send>;

/// The size of the /dev/shm a container gets when its spec mounts none there (Docker's
/// and containerd's default).
const DEV_SHM_SIZE: u64 = 64 << 20;

/// What the guest's resolver is pointed at by default: netstack's DNS proxy alone.
pub(crate) fn default_resolv_conf() -> Vec<u8> {
    netstack::dns::resolv_conf::ResolvConf::default().for_guest_bytes()
}

/// One of a container's mounts (from the OCI spec's `mounts`).
#[derive(Debug)]
pub struct MountSpec {
    /// The absolute guest path of the mount point.
    pub destination: Vec<u8>,
    pub kind: MountKind,
}

/// What a container mount is.
#[derive(Debug)]
pub enum MountKind {
    /// A host directory or regular file, opened by the caller. Writable binds take the
    /// guest's writes (a volume); read-only ones refuse them with EROFS.
    Bind { source: HostSource, readonly: bool },
    /// An empty in-memory file system (`size=` in bytes, `mode=`).
    Tmpfs {
        size: Option<u64>,
        mode: Option<u32>,
    },
    /// procfs: the sentry's /proc (already at /proc; elsewhere, mounted there too).
    Proc,
    /// sysfs and cgroup: an empty read-only directory.
    EmptyReadOnly,
    /// Not applied (devpts, mqueue, devtmpfs, …: the sandbox's /dev serves them); why.
    Ignored(String),
}

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Vfs(#[from] VfsError),
    #[error("root file system {path}: {error}")]
    OpenRoot { path: String, error: std::io::Error },
    #[error(transparent)]
    Checkpoint(#[from] crate::state::StateError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("setting up stdio: {0}")]
    Stdio(std::io::Error),
    #[error("{path}: {errno}")]
    Exec { path: String, errno: Errno },
    #[error("{path}")]
    Load { path: String, source: ExecError },
    #[error("no command given")]
    NoCommand,
    #[error("no container {0:?} in this sandbox")]
    NoContainer(String),
    #[error("container {0:?} already exists")]
    ContainerExists(String),
    #[error("no process {0} started by the sandbox")]
    NoProcess(i32),
    #[error("too many threads in the sandbox")]
    TooManyThreads,
}

/// Where a process's stdio comes from.
pub enum Stdio {
    /// The sandbox process's own fds 0, 1 and 2.
    Inherit,
    /// Host descriptors for stdin, stdout and stderr.
    Fds([OwnedFd; 3]),
}

/// A process to start.
pub struct ProcessSpec {
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    pub stdio: Stdio,
    /// (RLIMIT_* resource, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
}

/// A process as `ps` shows it.
#[derive(Clone, Debug)]
pub struct ProcessEntry {
    pub pid: i32,
    pub ppid: i32,
    pub container: String,
}

/// Resource use of the sandbox.
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxStats {
    /// Guest memory in use (bytes of frames handed out).
    pub memory_bytes: u64,
    /// Processes in the container asked about.
    pub pids: u32,
    /// Processes of the container asked about (of the whole sandbox when none) killed
    /// for want of guest memory, since the sandbox started.
    pub oom_kills: u64,
    /// The init of the container asked about was one of them.
    pub init_oom_killed: bool,
}

pub(crate) struct Container {
    pub(crate) vfs: Arc<Vfs>,
    pub(crate) init: Option<Arc<ThreadGroup>>,
}

/// A running sandbox.
pub struct Sandbox {
    pub(crate) platform: Arc<KvmPlatform>,
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) containers: Mutex<HashMap<String, Container>>,
    /// Processes started by `spawn`, for `wait` and `signal`.
    pub(crate) started: Mutex<HashMap<i32, Arc<ThreadGroup>>>,
    /// What each container's /etc/resolv.conf says (a pod's containers share one).
    pub(crate) resolv_conf: Mutex<Vec<u8>>,
}

impl Sandbox {
    /// A VM with `memory` bytes of guest memory and a kernel named `hostname`.
    pub fn new(
        memory: u64,
        hostname: &[u8],
        net: Arc<netstack::stack::Stack>,
    ) -> Result<Arc<Sandbox>, SandboxError> {
        let platform = Arc::new(KvmPlatform::new(memory)?);
        let kernel = Kernel::new(platform.clone(), hostname, net);
        Ok(Arc::new(Sandbox {
            platform,
            kernel,
            containers: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
            resolv_conf: Mutex::new(default_resolv_conf()),
        }))
    }

    /// What /etc/resolv.conf says in containers added from now on (it must name the DNS
    /// proxy for the DNS policy to hold; see `netstack::dns::resolv_conf`).
    pub fn set_resolv_conf(&self, text: Vec<u8>) {
        *self.resolv_conf.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    pub(crate) fn containers(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn started(&self) -> MutexGuard<'_, HashMap<i32, Arc<ThreadGroup>>> {
        self.started.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add container `id` whose root is the opened host directory `rootfs` (read-only,
    /// under an in-memory overlay), with the sandbox's /etc/resolv.conf, and `mounts` in
    /// order.
    ///
    /// Everything from the host arrives open (see `vfs::host_source`): the sandbox
    /// process may have given up the host's file tree. A bind or tmpfs that cannot be
    /// made fails the container; the kinds the sandbox provides itself (/proc, /dev,
    /// sysfs, …) never do.
    pub fn add_container(
        &self,
        id: &str,
        rootfs: HostSource,
        mounts: Vec<MountSpec>,
    ) -> Result<(), SandboxError> {
        if self.containers().contains_key(id) {
            return Err(SandboxError::ContainerExists(id.to_string()));
        }
        let shown = rootfs.shown().display().to_string();
        let vfs = Vfs::new(rootfs)?;
        let fs = FsContext::new(vfs.clone(), b"/")
            .map_err(|errno| SandboxError::Exec { path: shown, errno })?;
        // Before the mounts, so that a writable bind of a host /etc is never written to. A
        // bind at /etc/resolv.conf itself is not applied (see `apply_mount`).
        let resolv_conf = self
            .resolv_conf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Err(e) = fs.write_file(b"/etc/resolv.conf", &resolv_conf) {
            tracing::warn!("cannot provide /etc/resolv.conf: {e:?}; name lookups will fail");
        }
        for m in mounts {
            apply_mount(&vfs, m)?;
        }
        // /dev/shm is a tmpfs, as every container runtime mounts one (POSIX semaphores
        // and shared memory: Python's multiprocessing, Chromium) unless the spec has its
        // own there.
        if !vfs.has_mount(b"/dev/shm") {
            apply_mount(
                &vfs,
                MountSpec {
                    destination: b"/dev/shm".to_vec(),
                    kind: MountKind::Tmpfs {
                        size: Some(DEV_SHM_SIZE),
                        mode: Some(0o1777),
                    },
                },
            )?;
        }
        self.containers()
            .insert(id.to_string(), Container { vfs, init: None });
        Ok(())
    }

    /// Start `spec` in container `id` and return its pid once `execve` has succeeded. The
    /// container's first process becomes its init.
    pub fn spawn(self: &Arc<Self>, id: &str, spec: ProcessSpec) -> Result<i32, SandboxError> {
        let (vfs, is_init) = {
            let c = self.containers();
            let c = c
                .get(id)
                .ok_or_else(|| SandboxError::NoContainer(id.to_string()))?;
            (c.vfs.clone(), c.init.is_none())
        };
        let arg0 = spec.argv.first().cloned().ok_or(SandboxError::NoCommand)?;
        let shown = String::from_utf8_lossy(&arg0).into_owned();
        let fs = FsContext::new(vfs, &spec.cwd).map_err(|errno| SandboxError::Exec {
            path: String::from_utf8_lossy(&spec.cwd).into_owned(),
            errno,
        })?;
        let path = resolve_command(&fs, &arg0, &spec.envp);
        let files = match spec.stdio {
            Stdio::Inherit => FdTable::with_stdio(),
            Stdio::Fds(fds) => FdTable::with_host_fds(fds),
        }
        .map_err(SandboxError::Stdio)?;
        if is_init {
            // A restore gives the container's stdio anew: mark whose these are.
            files.set_stdio_owner(id);
        }
        let kernel = self.kernel.clone();
        kernel
            .reserve_thread()
            .map_err(|_| SandboxError::TooManyThreads)?;
        // The very first process is pid 1, as in a fresh pid namespace.
        let pid = if kernel.processes.get(1).is_none() && self.started().is_empty() {
            1
        } else {
            kernel.alloc_tid()
        };
        let group = ThreadGroup::new(pid);
        *group.container.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(id);
        let waiter = Waiter::new();
        let pending = Arc::new(PendingSignals::default());
        let blocked = Arc::new(AtomicU64::new(0));
        let leader = Member {
            tid: pid,
            waiter: waiter.clone(),
            pending: pending.clone(),
            kicker: None,
            blocked: blocked.clone(),
            real_blocked: Default::default(),
        };
        if group.join(leader, MAX_THREADS).is_err() {
            kernel.release_thread();
            return Err(SandboxError::TooManyThreads);
        }
        let mut rlimits = Rlimits::default();
        for (resource, soft, hard) in &spec.rlimits {
            if let Some(r) = rlimits.0.get_mut(*resource as usize) {
                *r = (*soft, *hard);
            }
        }
        let space = self.platform.new_address_space()?;
        let mm = Arc::new(MemoryManager::new(space, self.platform.memory().clone()));
        let mut task = Task {
            regs: Default::default(),
            mm,
            files: Arc::new(files),
            fs,
            process: ProcessInfo {
                pid,
                dumpable: true,
                ..Default::default()
            },
            tid: pid,
            creds: Credentials::new(spec.uid, spec.gid, spec.additional_gids),
            rlimits,
            signals: SignalState {
                actions: group.actions.clone(),
                ..Default::default()
            },
            clear_child_tid: 0,
            robust_list: (0, 0),
            kernel: kernel.clone(),
            exit_status: None,
            thread_exit: None,
            group: group.clone(),
            pending,
            blocked,
            restart: None,
            regs_replaced: false,
            fpu_restore: None,
            fpu_layout: (0, 0),
            waiter,
        };
        let ctx = match kernel.take_context() {
            Ok(c) => c,
            Err(_) => {
                kernel.release_thread();
                return Err(SandboxError::TooManyThreads);
            }
        };
        task.fpu_layout = (ctx.fpu_size(), ctx.fpu_features());
        kernel.register_process(&group);
        if let Err(e) = execve(&mut task, &path, spec.argv, spec.envp) {
            kernel.unregister_process(pid);
            kernel.release_thread();
            kernel.retire_context(ctx);
            return Err(match e {
                ExecError::Open(errno) => SandboxError::Exec { path: shown, errno },
                ExecError::NoMemory => SandboxError::Exec {
                    path: shown,
                    errno: Errno::ENOMEM,
                },
                source => SandboxError::Load {
                    path: shown,
                    source,
                },
            });
        }
        task.regs_replaced = false;
        self.started().insert(pid, group.clone());
        if is_init {
            if let Some(c) = self.containers().get_mut(id) {
                c.init = Some(group.clone());
            }
            // So that an OOM kill of it is logged as the end of the container.
            self.kernel.oom.note_init(pid, id);
        }
        spawn_thread(task, ctx).map_err(|_| SandboxError::TooManyThreads)?;
        if is_init {
            self.watch_init(id.to_string(), pid, group);
        }
        Ok(pid)
    }

    /// When container `id`'s init (`pid`) ends, the container's other processes go too.
    pub(crate) fn watch_init(self: &Arc<Self>, id: String, pid: i32, group: Arc<ThreadGroup>) {
        let sb = self.clone();
        let _ = std::thread::Builder::new()
            .name(format!("init-{pid}"))
            .spawn(move || {
                group.wait_all_gone();
                sb.kill_container_rest(&id, pid);
            });
    }

    pub(crate) fn kill_container_rest(&self, id: &str, init: i32) {
        for g in self.kernel.processes.all() {
            if g.tgid != init && &*g.container() == id {
                g.exit_group(ExitStatus::Signaled(signal::SIGKILL), 0);
            }
        }
    }

    /// Take container `id` out of the sandbox: kill its processes, wait (a few seconds at
    /// most) for them to go, and drop its file-system view, closing every host fd it
    /// held (its root, its mounts) so the host can unmount them.
    pub fn remove_container(&self, id: &str) -> Result<(), SandboxError> {
        if !self.containers().contains_key(id) {
            return Err(SandboxError::NoContainer(id.to_string()));
        }
        self.signal_container(id, signal::SIGKILL);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.processes(Some(id)).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.containers().remove(id);
        Ok(())
    }

    /// Block until process `pid` (started by `spawn`) has ended; its status.
    pub fn wait(&self, pid: i32) -> Result<ExitStatus, SandboxError> {
        let g = self
            .started()
            .get(&pid)
            .cloned()
            .ok_or(SandboxError::NoProcess(pid))?;
        Ok(g.wait_all_gone())
    }

    /// Whether process `pid` was ended by the out-of-memory killer.
    pub fn oom_killed(&self, pid: i32) -> bool {
        self.kernel.oom.killed(pid)
    }

    /// The container's init pid, if it has been started.
    pub fn init_pid(&self, id: &str) -> Option<i32> {
        self.containers()
            .get(id)
            .and_then(|c| c.init.as_ref().map(|g| g.tgid))
    }

    /// Whether process `pid` has ended (and how).
    pub fn status(&self, pid: i32) -> Option<ExitStatus> {
        let g = self.started().get(&pid).cloned()?;
        if g.count() == 0 {
            Some(g.exit_status().unwrap_or(ExitStatus::Exited(0)))
        } else {
            None
        }
    }

    /// Send `sig` to process `pid` (any process of the sandbox).
    pub fn signal(&self, pid: i32, sig: u8) -> Result<(), Errno> {
        if sig as usize > signal::NSIG || sig == 0 {
            return Err(Errno::EINVAL);
        }
        let g = self
            .kernel
            .processes
            .get(pid)
            .or_else(|| self.started().get(&pid).cloned())
            .ok_or(Errno::ESRCH)?;
        if g.count() == 0 {
            return Err(Errno::ESRCH);
        }
        g.signal_group(SigInfo::user(sig, SI_USER, 0, 0));
        Ok(())
    }

    /// Send `sig` to every process of container `id` (kill --all).
    pub fn signal_container(&self, id: &str, sig: u8) {
        for g in self.kernel.processes.all() {
            if &*g.container() == id {
                g.signal_group(SigInfo::user(sig, SI_USER, 0, 0));
            }
        }
    }

    /// Stop running guest code until `resume`.
    pub fn pause(&self) {
        self.kernel.freezer.pause();
        for g in self.kernel.processes.all() {
            g.kick_all();
        }
    }

    pub fn resume(&self) {
        self.kernel.freezer.resume();
    }

    pub fn is_paused(&self) -> bool {
        self.kernel.freezer.is_paused()
    }

    /// The live processes of container `id` (all containers when None).
    pub fn processes(&self, id: Option<&str>) -> Vec<ProcessEntry> {
        let mut v: Vec<ProcessEntry> = self
            .kernel
            .processes
            .all()
            .into_iter()
            .filter(|g| g.count() > 0)
            .filter(|g| id.is_none_or(|id| &*g.container() == id))
            .map(|g| ProcessEntry {
                pid: g.tgid,
                ppid: g.ppid(),
                container: g.container().to_string(),
            })
            .collect();
        v.sort_by_key(|p| p.pid);
        v
    }

    pub fn stats(&self, id: Option<&str>) -> SandboxStats {
        SandboxStats {
            memory_bytes: self.platform.memory().frames_in_use() * crate::arch::PAGE_SIZE,
            pids: self.processes(id).len() as u32,
            oom_kills: self.kernel.oom.kills(id),
            init_oom_killed: id
                .and_then(|id| self.init_pid(id))
                .is_some_and(|pid| self.oom_killed(pid)),
        }
    }

    /// Let guests call the Nanovisor-private debug hooks (`syscalls::debug`), one of
    /// which makes the sentry break its own seccomp policy. Only for the operator's
    /// security tests: `runsc boot` calls it when `NANOVISOR_DEBUG_HOOKS=1`.
    pub fn enable_debug_hooks(&self) {
        tracing::warn!(
            "debug hooks enabled: guests may make the sentry call a host syscall outside its seccomp policy"
        );
        self.kernel.enable_debug_hooks();
    }

    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }
}

/// Build a sandbox for `config`, run its program to the end on the calling thread, and
/// return how it ended (`runsc do`).
pub fn run(config: SandboxConfig) -> Result<ExitStatus, SandboxError> {
    let config_argv0 = config
        .argv
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default();
    let sandbox = Sandbox::new(config.memory, &config.hostname, config.net)?;
    let rootfs = HostSource::open_root(&config.rootfs).map_err(|error| SandboxError::OpenRoot {
        path: config.rootfs.display().to_string(),
        error,
    })?;
    if let Some(text) = config.resolv_conf {
        sandbox.set_resolv_conf(text);
    }
    sandbox.add_container("", rootfs, Vec::new())?;
    let pid = sandbox.spawn(
        "",
        ProcessSpec {
            argv: config.argv,
            envp: config.envp,
            cwd: config.cwd,
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            stdio: Stdio::Inherit,
            rlimits: Vec::new(),
        },
    )?;
    if let Some(started) = config.on_start {
        started(Arc::downgrade(&sandbox), pid);
    }
    let status = sandbox.wait(pid)?;
    log_fatal_signal(&config_argv0, status);
    // When init ends, the sandbox ends: stop every other process, as a container's
    // pid namespace does.
    for other in sandbox.kernel.processes.all() {
        other.exit_group(ExitStatus::Signaled(signal::SIGKILL), 0);
    }
    Ok(status)
}

/// Make one container mount. Binds and tmpfs must succeed; the rest are best effort.
fn apply_mount(vfs: &Vfs, m: MountSpec) -> Result<(), SandboxError> {
    let dest = String::from_utf8_lossy(&m.destination).into_owned();
    if crate::vfs::path::normalize(&m.destination) == b"/etc/resolv.conf" {
        // Runtimes bind the pod's resolv.conf there; the guest's resolver must keep
        // pointing at the DNS proxy, which enforces the DNS policy.
        tracing::debug!("mount at {dest} not applied: the sandbox's DNS proxy serves it");
        return Ok(());
    }
    let required = matches!(m.kind, MountKind::Bind { .. } | MountKind::Tmpfs { .. });
    let what = match m.kind {
        MountKind::Bind { source, readonly } => Mount::bind(source, readonly),
        MountKind::Tmpfs { size, mode } => Mount::Tmpfs { size, mode },
        MountKind::Proc => Mount::Proc,
        MountKind::EmptyReadOnly => Mount::EmptyReadOnly,
        MountKind::Ignored(why) => {
            tracing::debug!("mount at {dest} not applied: {why}");
            return Ok(());
        }
    };
    match vfs.mount(&m.destination, what) {
        Ok(()) => Ok(()),
        // The sandbox's own /dev and /proc stay (a tmpfs or devtmpfs at /dev, proc at /proc).
        Err(e @ MountError::Reserved(_)) => {
            tracing::debug!("mount not applied: {e}");
            Ok(())
        }
        Err(e) if !required => {
            tracing::debug!("mount not applied: {e}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Say on the sandbox's log that a process died of a signal (the guest's stderr may show
/// nothing, as a shell would print "Segmentation fault").
pub fn log_fatal_signal(what: &str, status: ExitStatus) {
    if let ExitStatus::Signaled(sig) = status {
        tracing::warn!("{what} killed by signal {sig} ({})", signal::name(sig));
    }
}

/// The default search path of a container whose environment sets none (runc's).
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command name without a slash is looked up in the process's PATH inside the
/// container, as OCI runtimes do before exec; the first executable match wins. Otherwise,
/// or when nothing matches, the name is used as given (execve reports the error).
fn resolve_command(fs: &FsContext, arg0: &[u8], envp: &[Vec<u8>]) -> Vec<u8> {
    if arg0.contains(&b'/') || arg0.is_empty() {
        return arg0.to_vec();
    }
    let path = envp
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(|b| *b == b':').filter(|d| !d.is_empty()) {
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(arg0);
        if fs.open_exec(&candidate).is_ok() {
            return candidate;
        }
    }
    arg0.to_vec()
}

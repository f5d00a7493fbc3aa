//! A sandbox: one VM, one guest program, run until it exits. This is what `runsc do`
//! drives.

use std::path::PathBuf;
use std::sync::Arc;

use std::sync::atomic::AtomicU64;

use crate::abi::Errno;
use crate::kernel::exec::{execve, ExecError};
use crate::kernel::exit::ExitStatus;
use crate::kernel::run::run_thread;
use crate::kernel::signal::{self, SignalState};
use crate::kernel::task::{Credentials, Kernel, ProcessInfo, Rlimits, Task, MAX_THREADS};
use crate::kernel::thread_group::{Member, ThreadGroup};
use crate::loader::LoadError;
use crate::mm::MemoryManager;
use crate::platform::kvm::KvmPlatform;
use crate::platform::{Context, Platform, PlatformError};
use crate::vfs::{FdTable, FsContext, Vfs, VfsError};
use crate::waiter::Waiter;

/// How a sandbox is set up.
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
}

/// What the guest's resolver is pointed at: netstack's DNS proxy.
const RESOLV_CONF: &[u8] = b"# Written by Nanovisor: the sandbox's DNS proxy enforces the DNS policy.\nnameserver 127.0.0.53\n";

/// Why a sandbox could not run its program.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Vfs(#[from] VfsError),
    #[error("setting up stdio: {0}")]
    Stdio(std::io::Error),
    #[error("{path}: {errno}")]
    Exec { path: String, errno: Errno },
    #[error("{path}")]
    Load { path: String, source: LoadError },
    #[error("no command given")]
    NoCommand,
}

/// Build a sandbox for `config`, run its program to the end, and return how it ended.
pub fn run(config: SandboxConfig) -> Result<ExitStatus, SandboxError> {
    let path = config
        .argv
        .first()
        .cloned()
        .ok_or(SandboxError::NoCommand)?;
    let shown = String::from_utf8_lossy(&path).into_owned();
    let platform = Arc::new(KvmPlatform::new(config.memory)?);
    let vfs = Vfs::new(&config.rootfs)?;
    let fs = FsContext::new(vfs, &config.cwd).map_err(|errno| SandboxError::Exec {
        path: String::from_utf8_lossy(&config.cwd).into_owned(),
        errno,
    })?;
    if let Err(e) = fs.write_file(b"/etc/resolv.conf", RESOLV_CONF) {
        tracing::warn!("cannot provide /etc/resolv.conf: {e:?}; name lookups will fail");
    }
    // The first thread leads the process's thread group.
    let group = ThreadGroup::new(1);
    let waiter = Waiter::new();
    let pending = Arc::new(AtomicU64::new(0));
    let blocked = Arc::new(AtomicU64::new(0));
    let leader = Member {
        tid: 1,
        waiter: waiter.clone(),
        pending: pending.clone(),
        kicker: None,
        blocked: blocked.clone(),
    };
    if group.join(leader, MAX_THREADS).is_err() {
        return Err(SandboxError::NoCommand);
    }
    // The first program starts the way every later one does: through execve, from an
    // empty address space.
    let space = platform.new_address_space()?;
    let mm = Arc::new(MemoryManager::new(space, platform.memory().clone()));
    let mut task = Task {
        regs: Default::default(),
        mm,
        files: Arc::new(FdTable::with_stdio().map_err(SandboxError::Stdio)?),
        fs,
        process: ProcessInfo {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            dumpable: true,
            ..Default::default()
        },
        tid: 1,
        creds: Credentials::default(),
        rlimits: Rlimits::default(),
        signals: SignalState {
            actions: group.actions.clone(),
            ..Default::default()
        },
        clear_child_tid: 0,
        robust_list: (0, 0),
        kernel: Kernel::new(platform.clone(), &config.hostname, config.net.clone()),
        exit_status: None,
        thread_exit: None,
        group: group.clone(),
        pending: pending.clone(),
        blocked,
        restart: None,
        regs_replaced: false,
        fpu_restore: None,
        fpu_layout: (0, 0),
        waiter: waiter.clone(),
    };
    let mut ctx = platform.new_context()?;
    task.fpu_layout = (ctx.fpu_size(), ctx.fpu_features());
    task.kernel.register_process(&group);
    let _ = task.kernel.reserve_thread();
    execve(&mut task, &path, config.argv, config.envp).map_err(|e| match e {
        ExecError::Open(errno) => SandboxError::Exec {
            path: shown.clone(),
            errno,
        },
        ExecError::Load(source) => SandboxError::Load {
            path: shown.clone(),
            source,
        },
        ExecError::NoMemory => SandboxError::Exec {
            path: shown.clone(),
            errno: Errno::ENOMEM,
        },
    })?;
    task.regs_replaced = false;
    let ended = run_thread(&mut task, &mut ctx);
    // The process ends with its last thread, which may not be this one.
    let status = match ended? {
        Some(status) => status,
        None => group.wait_all_gone(),
    };
    // When init ends, the sandbox ends: stop every other process, as a container's
    // pid namespace does.
    for other in task.kernel.processes.all() {
        other.exit_group(ExitStatus::Signaled(signal::SIGKILL), 0);
    }
    if let ExitStatus::Signaled(sig) = status {
        tracing::warn!(
            "{} killed by signal {sig} ({}) at rip {:#x}",
            String::from_utf8_lossy(&task.process.exe),
            signal::name(sig),
            task.regs.rip
        );
    }
    Ok(status)
}

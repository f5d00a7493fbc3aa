//! A sandbox: one VM, one guest program, run until it exits. This is what `runsc do`
//! drives.

use std::path::PathBuf;
use std::sync::Arc;

use crate::kernel::exec::{execve, ExecError};
use crate::kernel::exit::ExitStatus;
use crate::kernel::signal::{self, Delivery, FaultInfo};
use crate::kernel::task::{Credentials, Kernel, ProcessInfo, Rlimits, Task};
use crate::loader::LoadError;
use crate::mm::{Access, AccessError, MemoryManager};
use crate::platform::kvm::KvmPlatform;
use crate::platform::{Context, Fault, Platform, PlatformError, Trap};
use crate::vfs::{FdTable, FsContext, Vfs, VfsError};
use crate::{abi::Errno, syscalls};

/// How a sandbox is set up.
pub struct SandboxConfig {
    pub rootfs: PathBuf,
    pub cwd: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub hostname: Vec<u8>,
    /// Bytes of guest physical memory.
    pub memory: u64,
}

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
    // The first program starts the way every later one does: through execve, from an
    // empty address space.
    let space = platform.new_address_space()?;
    let mm = Arc::new(MemoryManager::new(space, platform.memory().clone()));
    let mut task = Task {
        regs: Default::default(),
        mm,
        files: FdTable::with_stdio().map_err(SandboxError::Stdio)?,
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
        signals: Default::default(),
        clear_child_tid: 0,
        robust_list: (0, 0),
        kernel: Kernel::new(platform.clone(), &config.hostname),
        exit_status: None,
        regs_replaced: false,
        fpu_restore: None,
        fpu_layout: (0, 0),
        waiter: crate::waiter::Waiter::new(),
    };
    let mut ctx = platform.new_context()?;
    task.fpu_layout = (ctx.fpu_size(), ctx.fpu_features());
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
    let status = run_task(&mut task, &mut ctx)?;
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

/// Run `task` on `ctx` until its process ends.
pub fn run_task<C: Context>(task: &mut Task, ctx: &mut C) -> Result<ExitStatus, PlatformError> {
    loop {
        // The address space can change under a task (execve), so it is looked up each time.
        let mm = task.mm.clone();
        let trap = ctx.switch(mm.address_space().as_ref(), &mut task.regs)?;
        match trap {
            Trap::Syscall => syscalls::dispatch(task),
            Trap::Fault(fault) => {
                let mut fetch = || ctx.fpu_state().ok().map(|img| (img, ctx.fpu_features()));
                handle_fault(task, fault, &mut fetch)
            }
            Trap::Interrupted => {}
        }
        if let Some(image) = task.fpu_restore.take() {
            if ctx.set_fpu_state(&image).is_err() {
                // Linux kills a thread whose sigreturn frame holds an unloadable FPU state.
                task.exit_status = Some(ExitStatus::Signaled(signal::SIGSEGV));
            }
        }
        if let Some(status) = task.exit_status {
            return Ok(status);
        }
    }
}

const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;
const BUS_ADRERR: i32 = 2;
const ILL_ILLOPN: i32 = 2;
const FPE_INTDIV: i32 = 1;
const FPE_FLTINV: i32 = 7;
const TRAP_TRACE: i32 = 2;
const SI_KERNEL: i32 = 0x80;

/// Turn a CPU fault into demand paging or a signal.
fn handle_fault(task: &mut Task, fault: Fault, fpu: &mut dyn FnMut() -> Option<(Vec<u8>, u64)>) {
    let (signo, code, addr) = match fault.vector {
        Fault::PAGE_FAULT => {
            let access = if fault.pf_exec() {
                Access::Exec
            } else if fault.pf_write() {
                Access::Write
            } else {
                Access::Read
            };
            match task.mm.fault(fault.address, access) {
                Ok(()) => return,
                Err(AccessError::Unmapped) => (signal::SIGSEGV, SEGV_MAPERR, fault.address),
                Err(AccessError::Forbidden) => (signal::SIGSEGV, SEGV_ACCERR, fault.address),
                Err(AccessError::NoMemory) => (signal::SIGBUS, BUS_ADRERR, fault.address),
            }
        }
        Fault::DIVIDE => (signal::SIGFPE, FPE_INTDIV, task.regs.rip),
        Fault::X87 | Fault::SIMD => (signal::SIGFPE, FPE_FLTINV, task.regs.rip),
        Fault::INVALID_OPCODE => (signal::SIGILL, ILL_ILLOPN, task.regs.rip),
        // int3 and into: Linux's do_int3/do_trap send SIGTRAP/SIGSEGV with SI_KERNEL.
        Fault::BREAKPOINT => (signal::SIGTRAP, SI_KERNEL, 0),
        Fault::OVERFLOW => (signal::SIGSEGV, SI_KERNEL, 0),
        Fault::DEBUG => (signal::SIGTRAP, TRAP_TRACE, 0),
        Fault::ALIGNMENT_CHECK => (signal::SIGBUS, 1, task.regs.rip),
        // #GP (privileged instructions, non-canonical addresses, I/O) and the rest:
        // Linux sends SIGSEGV with SI_KERNEL and address 0.
        _ => (signal::SIGSEGV, SI_KERNEL, 0),
    };
    tracing::debug!(
        signo,
        code,
        addr = format_args!("{addr:#x}"),
        rip = format_args!("{:#x}", task.regs.rip),
        vector = fault.vector,
        "guest fault"
    );
    let info = FaultInfo {
        signo,
        code,
        addr,
        trapno: fault.vector as u64,
        error: fault.error_code,
        cr2: if fault.vector == Fault::PAGE_FAULT {
            fault.address
        } else {
            0
        },
    };
    let mm = task.mm.clone();
    match task.signals.deliver_fault(&mm, &mut task.regs, info, fpu) {
        Delivery::Handler => {}
        Delivery::Fatal(sig) => task.exit_status = Some(ExitStatus::Signaled(sig)),
    }
}

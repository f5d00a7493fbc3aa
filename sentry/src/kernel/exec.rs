//! execve: replace a process's program with a new one in a fresh address space.

use std::sync::Arc;

use super::signal::{SigAction, SIG_IGN};
use super::task::Task;
use crate::abi::Errno;
use crate::arch::fpu;
use crate::loader::{self, ExecArgs};
use crate::mm::MemoryManager;

/// Bound on argv + envp (Linux: a quarter of the 8 MiB stack limit).
pub const MAX_ARG_BYTES: usize = 2 << 20;

/// Why execve failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The file could not be found or opened for execution.
    #[error("{0}")]
    Open(Errno),
    /// No address space could be made for the new program.
    #[error("no memory for a new address space")]
    NoMemory,
    /// The file is not a program we can load (the message says why).
    #[error(transparent)]
    Load(#[from] loader::LoadError),
}

impl ExecError {
    /// The errno execve(2) returns.
    pub fn errno(&self) -> Errno {
        match self {
            ExecError::Open(e) => *e,
            ExecError::NoMemory => Errno::ENOMEM,
            ExecError::Load(e) => e.errno(),
        }
    }
}

/// Replace `task`'s program. On error nothing has changed; on success the registers,
/// address space, signal handlers and close-on-exec fds are those of the new program.
pub fn execve(
    task: &mut Task,
    path: &[u8],
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
) -> Result<(), ExecError> {
    // The lookup may pass through /proc/self (busybox re-executes /proc/self/exe).
    let file = {
        let t: &Task = task;
        t.fs.open_exec_with(path, &|| crate::syscalls::fs::proc_snapshot(t))
            .map_err(ExecError::Open)?
    };
    let resolved = file.path().into_bytes();
    let space = task
        .kernel
        .platform
        .new_address_space()
        .map_err(|_| ExecError::NoMemory)?;
    let mm = MemoryManager::new(space, task.kernel.platform.memory());
    let regs = loader::load(
        &mm,
        file,
        &|interp: &[u8]| {
            let t: &Task = task;
            t.fs.open_exec_with(interp, &|| crate::syscalls::fs::proc_snapshot(t))
        },
        &ExecArgs {
            path,
            argv: &argv,
            envp: &envp,
            uid: task.creds.uid,
            gid: task.creds.gid,
        },
    )
    .inspect_err(|e| tracing::debug!("execve {}: {e}", String::from_utf8_lossy(path)))?;

    // The point of no return. The new program starts with one thread: the others go.
    if task.group.count() > 1 {
        task.group
            .exec_alone(task.tid, std::time::Duration::from_secs(5));
    }
    task.mm = Arc::new(mm);
    task.regs = regs;
    task.regs_replaced = true;
    task.fpu_restore = Some(fpu::initial(task.fpu_layout.0));
    // Handlers are reset; ignored signals stay ignored (execve(2)). In place: the table is
    // the process's (its thread group's), which the rest of the kernel reads (a parent's
    // SIGCHLD disposition, a checkpoint); the threads execve ended share it only as they
    // go. A new table here once left the group's stale, and a restored process lost every
    // handler it had set since.
    let mut actions = task
        .signals
        .actions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for action in actions.iter_mut() {
        if action.handler != SIG_IGN {
            *action = SigAction::default();
        }
    }
    drop(actions);
    task.signals.altstack = Default::default();
    task.files.close_on_exec();
    task.clear_child_tid = 0;
    task.robust_list = (0, 0);
    // /proc/self/exe names the file actually run, after symlinks.
    let exe = resolved;
    task.process.comm = exe
        .rsplit(|b| *b == b'/')
        .next()
        .unwrap_or(&exe)
        .iter()
        .take(15)
        .copied()
        .collect();
    task.process.exe = exe;
    task.process.argv = argv;
    task.process.envp = envp;
    Ok(())
}

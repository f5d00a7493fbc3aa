//! execve: replace a process's program with a new one in a fresh address space.

use std::sync::Arc;

use super::signal::{SigAction, SIG_IGN};
use super::task::Task;
use crate::abi::Errno;
use crate::arch::fpu;
use crate::loader::{self, script, ExecArgs};
use crate::mm::MemoryManager;

/// Bound on argv + envp (Linux: a quarter of the 8 MiB stack limit).
pub const MAX_ARG_BYTES: usize = 2 << 20;
/// How many `#!` interpreters one execve may pass through (Linux: five, then ELOOP).
const MAX_SCRIPT_DEPTH: usize = 5;

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
    /// A `#!` line that names no interpreter, or one too long to read.
    #[error("malformed #! line")]
    BadScript,
    /// A script's interpreter could not be opened for execution.
    #[error("the script's interpreter {path}: {errno}")]
    Interpreter { path: String, errno: Errno },
    /// Scripts whose interpreters are scripts, too deep.
    #[error("more than {MAX_SCRIPT_DEPTH} levels of #! interpreters")]
    TooManyInterpreters,
}

impl ExecError {
    /// The errno execve(2) returns.
    pub fn errno(&self) -> Errno {
        match self {
            ExecError::Open(e) => *e,
            ExecError::NoMemory => Errno::ENOMEM,
            ExecError::Load(e) => e.errno(),
            ExecError::BadScript => Errno::ENOEXEC,
            ExecError::Interpreter { errno, .. } => *errno,
            ExecError::TooManyInterpreters => Errno::ELOOP,
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
    let open = |p: &[u8]| {
        let t: &Task = task;
        t.fs.open_exec_with(p, &|| crate::syscalls::fs::proc_snapshot(t))
    };
    let mut file = open(path).map_err(ExecError::Open)?;
    // A `#!` script runs its interpreter, which may be a script in turn.
    let mut argv = argv;
    let mut script = path.to_vec();
    for depth in 0.. {
        let mut head = [0u8; script::HEAD_LEN];
        let n = file
            .read(&mut head, Some(0))
            .map_err(|e| ExecError::Load(loader::LoadError::Read(e)))?;
        let Some(shebang) = script::parse(&head[..n]).map_err(|_| ExecError::BadScript)? else {
            break;
        };
        if depth == MAX_SCRIPT_DEPTH {
            return Err(ExecError::TooManyInterpreters);
        }
        argv = shebang.argv(&script, &argv);
        file = open(&shebang.interpreter).map_err(|errno| ExecError::Interpreter {
            path: String::from_utf8_lossy(&shebang.interpreter).into_owned(),
            errno,
        })?;
        script = shebang.interpreter;
    }
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
    // The old address space was this process's alone, or its parent's too (vfork): the
    // parent, waiting for this moment, goes on with it.
    task.mm.leave();
    task.mm = Arc::new(mm);
    task.group.vfork_done();
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
    // Before close-on-exec descriptors close: a parent that sees them close (the usual
    // way to learn that a child has run execve) then finds the change made.
    task.group
        .execed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    task.files.close_on_exec();
    task.group.posix_timers.clear();
    task.clear_child_tid = 0;
    task.robust_list = (0, 0);
    // /proc/self/exe names the file actually run (a script's interpreter), after
    // symlinks; the command name is the path execve was given, as on Linux.
    task.process.comm = path
        .rsplit(|b| *b == b'/')
        .next()
        .unwrap_or(path)
        .iter()
        .take(15)
        .copied()
        .collect();
    task.process.exe = resolved;
    task.process.argv = argv;
    task.process.envp = envp;
    super::process::publish_view(task);
    Ok(())
}

//! The syscall table: explicit numbers, a support level and a note per entry, as data.
//! Unknown numbers return ENOSYS, are counted, and are logged once per number.
//!
//! Each family file (`fs.rs`, `mm.rs`, …) exports `SYSCALLS`, its rows of the table; this
//! module merges them into one array indexed by number.

pub mod debug;
mod events;
pub mod fs;
mod fs_tree;
mod inotify;
mod locks;
mod misc;
mod mm;
mod net;
mod net_io;
mod process;
mod sched;
pub mod signal;
mod thread;
mod time;
mod timer;
mod xattr;

use std::sync::OnceLock;

use crate::abi::Errno;
use crate::kernel::task::Task;

/// What a handler returns: the value for `rax`, or an errno.
pub type SyscallResult = Result<u64, Errno>;
/// A handler gets the task and the six raw arguments.
pub type Handler = fn(&mut Task, &[u64; 6]) -> SyscallResult;

/// How much of a syscall's Linux behaviour the sentry provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Support {
    /// Implemented as Linux documents it.
    Full,
    /// Implemented; the note says which flags or cases are refused, and with what.
    Partial,
    /// Deliberately answers with an error (the note says which); callers fall back.
    Unsupported,
}

/// One row of the table.
pub struct SyscallDef {
    pub nr: u32,
    pub name: &'static str,
    pub support: Support,
    pub note: &'static str,
    pub handler: Handler,
}

/// Shorthand for table rows.
#[macro_export]
macro_rules! syscall {
    ($nr:expr, $name:ident, $support:ident, $note:expr, $handler:expr) => {
        $crate::syscalls::SyscallDef {
            nr: $nr,
            name: stringify!($name),
            support: $crate::syscalls::Support::$support,
            note: $note,
            handler: $handler,
        }
    };
}

/// Highest syscall number in the x86-64 table (plus one).
pub const MAX_SYSCALL: usize = 463;

/// Nanovisor's own syscall numbers (`debug.rs`) start here: far above Linux's x86-64
/// table, which grows a few numbers a year, above x32's 512..=547, and above the numbers
/// tests use as "unknown" (1000). The table stays dense: 4 K entries of 8 bytes.
pub const PRIVATE_BASE: u32 = 0x1000;

fn families() -> [&'static [SyscallDef]; 16] {
    [
        debug::SYSCALLS,
        net::SYSCALLS,
        net_io::SYSCALLS,
        sched::SYSCALLS,
        events::SYSCALLS,
        thread::SYSCALLS,
        fs::SYSCALLS,
        fs_tree::SYSCALLS,
        inotify::SYSCALLS,
        mm::SYSCALLS,
        process::SYSCALLS,
        signal::SYSCALLS,
        time::SYSCALLS,
        misc::SYSCALLS,
        xattr::SYSCALLS,
        timer::SYSCALLS,
    ]
}

/// The merged table, indexed by number.
pub fn table() -> &'static [Option<&'static SyscallDef>] {
    static TABLE: OnceLock<Vec<Option<&'static SyscallDef>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let len = families()
            .iter()
            .flat_map(|f| f.iter())
            .map(|d| d.nr as usize + 1)
            .max()
            .unwrap_or(0);
        let mut t: Vec<Option<&'static SyscallDef>> = vec![None; len.max(MAX_SYSCALL)];
        for fam in families() {
            for def in fam {
                let slot = &mut t[def.nr as usize];
                assert!(
                    slot.is_none(),
                    "syscall {} ({}) defined twice",
                    def.nr,
                    def.name
                );
                *slot = Some(def);
            }
        }
        t
    })
}

/// Every defined row, in number order.
pub fn all() -> Vec<&'static SyscallDef> {
    table().iter().flatten().copied().collect()
}

/// Run the syscall in `task.regs` and store its result in `rax` (unless the handler
/// replaced the registers).
pub fn dispatch(task: &mut Task) {
    let nr = task.regs.rax;
    let args = task.regs.syscall_args();
    let def = usize::try_from(nr)
        .ok()
        .and_then(|n| table().get(n).copied().flatten());
    let result = match def {
        Some(def) => {
            let r = (def.handler)(task, &args);
            tracing::debug!(
                target: "syscall",
                "{}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {}",
                def.name, args[0], args[1], args[2], args[3], args[4], args[5],
                match &r { Ok(v) => format!("{v:#x}"), Err(e) => format!("-{e:?}") }
            );
            r
        }
        None => unknown(task, nr),
    };
    if task.regs_replaced {
        task.regs_replaced = false;
        return;
    }
    task.regs.rax = match result {
        Ok(v) => v,
        // Interrupted by a signal: the run loop restarts the call or makes it EINTR,
        // depending on the handler (SA_RESTART). The guest never sees ERESTARTSYS.
        Err(Errno::ERESTARTSYS) => {
            task.restart = Some((nr, true));
            Errno::EINTR.to_return()
        }
        Err(Errno::ERESTARTNOHAND) => {
            task.restart = Some((nr, false));
            Errno::EINTR.to_return()
        }
        // An interrupted wait (poll, select, epoll_wait, …) fails with EINTR only if a
        // handler runs, as on Linux, where nothing else interrupts it; interrupted with no
        // signal to deliver (a checkpoint, a signal another thread took) it runs again.
        Err(Errno::EINTR) => {
            task.restart = Some((nr, false));
            Errno::EINTR.to_return()
        }
        Err(e) => e.to_return(),
    };
    // A write to a pipe nobody reads also raises SIGPIPE (pipe_write in Linux).
    if result == Err(Errno::EPIPE) && WRITES.contains(&nr) {
        signal::raise(task, crate::kernel::signal::SIGPIPE);
    }
}

/// What a number the table does not have gets: ENOSYS, counted, logged once.
pub(crate) fn unknown(task: &Task, nr: u64) -> SyscallResult {
    if task.kernel.note_unknown_syscall(nr) {
        tracing::warn!(
            nr,
            "unsupported syscall: returning ENOSYS (logged once per number)"
        );
    }
    Err(Errno::ENOSYS)
}

/// Syscalls whose EPIPE comes with SIGPIPE: write, pwrite64, writev, pwritev, sendfile,
/// pwritev2.
const WRITES: [u64; 6] = [1, 18, 20, 296, 40, 328];

/// A handler for syscalls that are deliberately not provided.
pub fn enosys(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Err(Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_numbers_fit() {
        let all = all();
        assert!(all.len() > 50);
        for d in &all {
            assert!(
                (d.nr as usize) < MAX_SYSCALL || d.nr >= PRIVATE_BASE,
                "{} ({}) is neither Linux's nor in the private range",
                d.name,
                d.nr
            );
            assert!(!d.name.is_empty());
            if d.support != Support::Full {
                assert!(
                    !d.note.is_empty(),
                    "{} needs a note saying what is missing",
                    d.name
                );
            }
        }
    }

    #[test]
    fn private_numbers_are_in_the_table() {
        let nr = debug::NR_FORBIDDEN_HOST_SYSCALL;
        assert!(nr >= PRIVATE_BASE);
        let def = table()
            .get(nr as usize)
            .copied()
            .flatten()
            .expect("the debug hook is in the table");
        assert_eq!(def.name, "nanovisor_forbidden_host_syscall");
        assert!(def.note.contains("NANOVISOR_DEBUG_HOOKS"));
    }
}

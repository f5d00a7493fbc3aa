//! Running a task: the trap loop, signal delivery between traps, and thread start/exit.

use std::sync::atomic::Ordering;

use super::exit::ExitStatus;
use super::signal::{self, sigbit, Delivery, FaultInfo, SIGKILL, UNBLOCKABLE};
use super::sigqueue::{PendingSignals, SigInfo};
use super::task::Task;
use crate::abi::Errno;
use crate::mm::{Access, AccessError};
use crate::platform::kick::{install_handler, Kicker};
use crate::platform::{Context, Fault, PlatformError, Trap};
use crate::syscalls;

/// Run `task` on `ctx` on the calling host thread until the thread ends, then take it
/// out of its group. Returns the group's status if this was its last thread.
pub fn run_thread(
    task: &mut Task,
    ctx: &mut dyn Context,
) -> Result<Option<ExitStatus>, PlatformError> {
    install_handler();
    // Kicks reach the vCPU before the thread first looks for what they announce.
    ctx.arm_kicks();
    task.group.set_kicker(task.tid, Kicker::current());
    // This host thread's CPU time is the guest thread's from now on.
    task.group.set_cpu_clock(task.tid);
    let result = run_loop_contained(task, ctx);
    crate::platform::kick::publish_immediate_exit(std::ptr::null());
    let own = task.thread_exit;
    if let Some(status) = task.exit_status {
        task.group.exit_group(status, task.tid);
    }
    clear_child_tid(task);
    let last = task.group.leave(task.tid, own);
    task.kernel.release_thread();
    if last.is_some() {
        // The process is gone: its files close now, before the parent hears of it (a
        // parent that polls a pipe right after waitpid sees the hang-up, as on Linux).
        task.files = std::sync::Arc::new(crate::vfs::FdTable::new());
        // Its record locks go with it; lockers waiting on a description it held look
        // again.
        let locks = &task.kernel.locks;
        locks.records.release_process(task.group.tgid);
        locks.records.poke();
        locks.flocks.poke();
        // So does its memory go back (Linux's exit_mm comes before exit_notify): a parent
        // woken by the exit, say of a child the OOM killer ended, must find the child's
        // frames free, or it is OOM-killed in turn. A vfork child's memory is its
        // parent's, which goes on with it.
        if task.mm.leave() {
            task.mm.release();
        }
        task.group.vfork_done();
    }
    if let Some(status) = last {
        charge_parent(task);
        super::process::group_ended(task, status);
    }
    result.map(|_| last)
}

/// The process has ended: its CPU time, with what its own ended children used, goes to
/// its parent's children's time (RUSAGE_CHILDREN, times' cutime/cstime). Linux adds it
/// when the parent reaps the child; here it is added as the child ends, before the
/// parent can hear of it (so it is there once wait returns), which differs only while
/// the child is an unreaped zombie, and for children a parent ignoring SIGCHLD reaps
/// automatically (Linux does not count those).
fn charge_parent(task: &Task) {
    let group = &task.group;
    let parent = group
        .parent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .upgrade();
    if let Some(parent) = parent {
        parent.add_child_cpu_times(group.cpu_times().plus(group.children_cpu_times()));
    }
}

/// [`run_loop`], with a panic (a sentry bug some guest call reached) contained to the
/// guest process that hit it: the panic hook has printed it, the process dies of SIGKILL
/// and the rest of the sandbox goes on. Without this the thread would vanish without
/// leaving its group, and everything waiting for the process would wait forever.
fn run_loop_contained(task: &mut Task, ctx: &mut dyn Context) -> Result<(), PlatformError> {
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_loop(&mut *task, ctx)));
    outcome.unwrap_or_else(|_| {
        tracing::error!(
            tid = task.tid,
            "sentry bug: a guest thread's trap handling panicked; killing its process"
        );
        task.thread_exit = None;
        task.exit_status = Some(ExitStatus::Signaled(SIGKILL));
        Ok(())
    })
}

/// CLONE_CHILD_CLEARTID: zero the word and wake one futex waiter (pthread_join).
fn clear_child_tid(task: &Task) {
    if task.clear_child_tid != 0 && task.mm.write_u32(task.clear_child_tid, 0).is_ok() {
        let _ = task.kernel.futexes.wake(
            super::futex::Word {
                mm: &task.mm,
                addr: task.clear_child_tid,
                shared: true,
            },
            1,
            u32::MAX,
        );
    }
}

fn run_loop(task: &mut Task, ctx: &mut dyn Context) -> Result<(), PlatformError> {
    loop {
        // The address space can change under a task (execve), so it is looked up each time.
        let mm = task.mm.clone();
        task.kernel
            .freezer
            .pass(task.tid, &mut || snapshot(task, &mut *ctx));
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
        if task.exit_status.is_none() && task.thread_exit.is_none() {
            // Publish the mask, then forget any interruption, and only then look at what
            // interrupts are for (the group's end, an execve, pending signals): whoever
            // ends the group, starts an execve or sends a signal records that first and
            // interrupts after, so either we see it below or the interruption stays set
            // and the next wait in the sentry returns at once. Clearing after the checks
            // would lose an exit_group that came in between: the thread would block in
            // its next syscall (epoll_wait, futex …) for good and its process never end.
            task.blocked.store(task.signals.mask, Ordering::SeqCst);
            task.waiter.clear_interrupt();
            if let Some(status) = task.group.exit_status() {
                // Another thread ended the group.
                task.exit_status = Some(status);
            } else if task.group.must_leave(task.tid) {
                // Another thread is replacing the program (execve).
                task.thread_exit = Some(0);
            } else {
                let mask = task.signals.mask;
                deliver_pending(task, ctx);
                // A handler's frame may have changed the mask.
                if task.signals.mask != mask {
                    task.blocked.store(task.signals.mask, Ordering::SeqCst);
                }
            }
        }
        if task.exit_status.is_some() || task.thread_exit.is_some() {
            return Ok(());
        }
    }
}

/// The thread as a checkpoint keeps it (at the gate: no syscall in flight).
fn snapshot(task: &Task, ctx: &mut dyn Context) -> super::freeze::ThreadSnapshot {
    super::freeze::ThreadSnapshot {
        tid: task.tid,
        regs: task.regs,
        fpu: ctx.fpu_state().ok(),
        mm: task.mm.clone(),
        files: task.files.clone(),
        vfs: task.fs.vfs.clone(),
        cwd: task.fs.cwd.clone(),
        umask: task.fs.umask,
        process: task.process.clone(),
        creds: task.creds.clone(),
        rlimits: task.rlimits,
        mask: task.signals.mask,
        altstack: task.signals.altstack,
        saved_mask: task.signals.saved_mask,
        clear_child_tid: task.clear_child_tid,
        robust_list: task.robust_list,
        group: task.group.clone(),
        pending: task.pending.queued(),
    }
}

/// Take the lowest-numbered pending signal this thread does not block, claiming it from
/// the thread's own set first, then from the group's.
fn take_signal(task: &Task) -> Option<SigInfo> {
    take_signal_of(task, !task.signals.mask | UNBLOCKABLE)
}

/// Take the lowest-numbered pending signal in `set`, the thread's own first, then its
/// group's (also how sigtimedwait and a signalfd take one).
pub fn take_signal_of(task: &Task, set: u64) -> Option<SigInfo> {
    take_from(&task.pending, &task.group.pending, set)
}

/// Take a signal in `set` from a thread's queue (`own`) or its process's (`group`),
/// the lower number first, the thread's own first at equal numbers.
pub fn take_from(own: &PendingSignals, group: &PendingSignals, set: u64) -> Option<SigInfo> {
    loop {
        let avail = (own.bits() | group.bits()) & set;
        if avail == 0 {
            return None;
        }
        let bit = sigbit(avail.trailing_zeros() as u8 + 1);
        let source = if own.bits() & bit != 0 { own } else { group };
        // Another thread may have taken it meanwhile: look again.
        if let Some(info) = source.take(bit) {
            return Some(info);
        }
    }
}

/// Deliver pending signals, and finish a syscall a signal interrupted (restart it, or
/// make it fail with EINTR).
/// The caller has published the thread's mask and cleared its interruption first: a
/// signal sent after that interrupts it again.
fn deliver_pending(task: &mut Task, ctx: &mut dyn Context) {
    let restart = task.restart.take();
    let Some(sent) = take_signal(task) else {
        if let Some((nr, _)) = restart {
            rewind_syscall(task, nr);
        }
        return;
    };
    let sig = sent.signo();
    if sig == SIGKILL {
        task.exit_status = Some(ExitStatus::Signaled(SIGKILL));
        return;
    }
    let action = task.signals.action(sig);
    if let Some((nr, with_sa_restart)) = restart {
        let has_handler = action.handler != signal::SIG_DFL && action.handler != signal::SIG_IGN;
        let ignored =
            !has_handler && (action.handler == signal::SIG_IGN || signal::ignored_by_default(sig));
        if ignored || (has_handler && with_sa_restart && action.flags & signal::SA_RESTART != 0) {
            rewind_syscall(task, nr);
        }
    }
    let info = FaultInfo::sent(sent);
    let mm = task.mm.clone();
    let mut fetch = || ctx.fpu_state().ok().map(|img| (img, ctx.fpu_features()));
    match task
        .signals
        .deliver(&mm, &mut task.regs, info, false, &mut fetch)
    {
        Delivery::Handler => {}
        Delivery::Ignored => {
            // rt_sigsuspend's mask ends when no handler runs for the signal that woke it.
            if let Some(saved) = task.signals.saved_mask.take() {
                task.signals.mask = saved;
            }
        }
        Delivery::Fatal(s) => task.exit_status = Some(ExitStatus::Signaled(s)),
    }
    // More may be pending: make the next entry return at once so they are seen.
    if take_pending_mask(task) != 0 {
        task.waiter.interrupt();
        Kicker::current().kick();
    }
}

fn take_pending_mask(task: &Task) -> u64 {
    (task.pending.bits() | task.group.pending.bits()) & (!task.signals.mask | UNBLOCKABLE)
}

/// Make the interrupted syscall run again when the thread resumes.
fn rewind_syscall(task: &mut Task, nr: u64) {
    task.regs.rax = nr;
    task.regs.rip = task.regs.rip.wrapping_sub(2);
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
pub fn handle_fault(
    task: &mut Task,
    fault: Fault,
    fpu: &mut dyn FnMut() -> Option<(Vec<u8>, u64)>,
) {
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
                Err(AccessError::BeyondFile) => (signal::SIGBUS, BUS_ADRERR, fault.address),
                Err(AccessError::NoMemory) => {
                    oom_kill(task, fault.address);
                    return;
                }
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
        sent: None,
    };
    let mm = task.mm.clone();
    match task.signals.deliver_fault(&mm, &mut task.regs, info, fpu) {
        Delivery::Handler | Delivery::Ignored => {}
        Delivery::Fatal(sig) => task.exit_status = Some(ExitStatus::Signaled(sig)),
    }
}

/// A page fault found no free guest frame: the guest has used all the memory its
/// container's limit gave it. Linux's memcg OOM killer would SIGKILL a process of the
/// cgroup; here it is the faulting one (see `kernel::oom`). SIGKILL cannot be caught,
/// so the whole process ends now and its frames go back when its address space does.
fn oom_kill(task: &mut Task, addr: u64) {
    let (pid, oom) = (task.group.tgid, &task.kernel.oom);
    if oom.record(pid, &task.group.container()) {
        let comm = String::from_utf8_lossy(&task.process.comm);
        let what = match oom.init_of(pid) {
            Some(id) => format!("container {id}: init"),
            None => format!("container {}: process", task.group.container()),
        };
        tracing::warn!(
            tid = task.tid,
            addr = format_args!("{addr:#x}"),
            "{what} {pid} ({comm}) killed by the out-of-memory killer: guest memory exhausted"
        );
    }
    task.exit_status = Some(ExitStatus::Signaled(SIGKILL));
}

/// Start `task` as a new thread on its own host thread and vCPU.
pub fn spawn_thread(mut task: Task, mut ctx: Box<dyn Context>) -> Result<(), Errno> {
    let name = format!("guest-{}", task.tid);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let kernel = task.kernel.clone();
            super::sigqueue::set_current(&task.pending, &task.group);
            if let Err(e) = run_thread(&mut task, ctx.as_mut()) {
                // The vCPU failed (a sentry or platform bug): end the whole sandbox.
                tracing::error!(tid = task.tid, "thread stopped: {e}");
                task.group
                    .exit_group(ExitStatus::Signaled(SIGKILL), task.tid);
            }
            kernel.retire_context(ctx);
        })
        .map(|_| ())
        .map_err(|_| Errno::EAGAIN)
}

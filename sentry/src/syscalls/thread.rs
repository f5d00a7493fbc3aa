//! Threads: clone for new threads, and futexes.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{enosys, SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::process::ForkMemory;
use crate::kernel::run::spawn_thread;
use crate::kernel::signal::SignalState;
use crate::kernel::task::{Task, MAX_THREADS};
use crate::kernel::thread_group::Member;
use crate::syscall;
use crate::waiter::Waiter;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(56, clone, Partial, "threads and processes (CLONE_VM and CLONE_VFORK as on Linux); CLONE_FS is not shared, and CLONE_SIGHAND without CLONE_THREAD copies the dispositions; namespaces → EPERM", sys_clone),
    syscall!(57, fork, Full, "", sys_fork),
    syscall!(58, vfork, Full, "", sys_vfork),
    syscall!(61, wait4, Partial, "exited and killed children only (no stop/continue reports); rusage is zeroed", sys_wait4),
    syscall!(247, waitid, Partial, "WEXITED only (WSTOPPED/WCONTINUED report nothing); P_PIDFD → EINVAL", sys_waitid),
    syscall!(202, futex, Partial, "WAIT, WAKE, WAIT_BITSET, WAKE_BITSET, REQUEUE, CMP_REQUEUE, PRIVATE, CLOCK_REALTIME; PI and WAKE_OP → ENOSYS", sys_futex),
    syscall!(435, clone3, Unsupported, "returns ENOSYS; glibc falls back to clone", enosys),
];

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_PTRACE: u64 = 0x2000;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PARENT: u64 = 0x8000;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_NEWNS: u64 = 0x2_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_UNTRACED: u64 = 0x80_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;
/// Namespace flags, cgroup, io: refused inside the sandbox.
const CLONE_NAMESPACES: u64 = 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x8000_0000
    | CLONE_NEWNS;

fn sys_clone(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (flags, newsp, ptid, ctid, tls) = (a[0], a[1], a[2], a[3], a[4]);
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_NAMESPACES != 0 {
        // Creating namespaces needs CAP_SYS_ADMIN, which the guest does not get.
        return Err(Errno::EPERM);
    }
    if flags & CLONE_THREAD == 0 {
        // A new process, with its own memory or (CLONE_VM) its parent's; with
        // CLONE_VFORK the parent waits until the child runs execve or ends.
        let memory = match (flags & CLONE_VM != 0, flags & CLONE_VFORK != 0) {
            (false, _) => ForkMemory::Copy,
            (true, false) => ForkMemory::Shared,
            (true, true) => ForkMemory::SharedVfork,
        };
        let child_settid = (flags & CLONE_CHILD_SETTID != 0).then_some(ctid);
        let cleartid = (flags & CLONE_CHILD_CLEARTID != 0).then_some(ctid);
        // CLONE_PARENT_SETTID is written before a vfork parent waits, as Linux does.
        let parent_settid = (flags & CLONE_PARENT_SETTID != 0).then_some(ptid);
        let pid =
            crate::kernel::process::fork(t, memory, newsp, child_settid, cleartid, parent_settid)?;
        return Ok(pid as u64);
    }
    if flags & CLONE_PIDFD != 0 {
        return Err(Errno::EINVAL); // not with CLONE_THREAD, as on Linux
    }
    let _ = (
        CLONE_FS,
        CLONE_PTRACE,
        CLONE_PARENT,
        CLONE_SYSVSEM,
        CLONE_DETACHED,
        CLONE_UNTRACED,
    );

    t.kernel.reserve_thread()?;
    let tid = t.kernel.alloc_tid();
    let waiter = Waiter::new();
    let pending = Arc::new(crate::kernel::sigqueue::PendingSignals::default());
    let blocked = Arc::new(AtomicU64::new(t.signals.mask));
    t.group
        .join(
            Member {
                tid,
                waiter: waiter.clone(),
                pending: pending.clone(),
                kicker: None,
                blocked: blocked.clone(),
                real_blocked: Default::default(),
            },
            MAX_THREADS,
        )
        .map_err(|_| {
            t.kernel.release_thread();
            Errno::EAGAIN
        })?;
    let fail = |t: &Task, e: Errno| {
        t.group.leave(tid, None);
        t.kernel.release_thread();
        Err(e)
    };
    let ctx = match t.kernel.take_context() {
        Ok(ctx) => ctx,
        Err(_) => return fail(t, Errno::EAGAIN),
    };
    if flags & CLONE_PARENT_SETTID != 0 {
        if let Err(e) = t.mm.write_u32(ptid, tid as u32) {
            t.kernel.retire_context(ctx);
            return fail(t, e);
        }
    }
    if flags & CLONE_CHILD_SETTID != 0 {
        if let Err(e) = t.mm.write_u32(ctid, tid as u32) {
            t.kernel.retire_context(ctx);
            return fail(t, e);
        }
    }
    let mut regs = t.regs;
    regs.rax = 0;
    if newsp != 0 {
        regs.rsp = newsp;
    }
    if flags & CLONE_SETTLS != 0 {
        if tls >= crate::arch::USER_ADDR_END {
            t.kernel.retire_context(ctx);
            return fail(t, Errno::EPERM);
        }
        regs.fs_base = tls;
    }
    let child = Task {
        regs,
        mm: t.mm.clone(),
        files: if flags & CLONE_FILES != 0 {
            t.files.clone()
        } else {
            Arc::new(t.files.fork())
        },
        fs: t.fs.fork(),
        process: t.process.clone(),
        tid,
        creds: t.creds.clone(),
        rlimits: t.rlimits,
        signals: SignalState {
            actions: t.signals.actions.clone(),
            mask: t.signals.mask,
            altstack: Default::default(),
            saved_mask: None,
        },
        clear_child_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
            ctid
        } else {
            0
        },
        robust_list: (0, 0),
        kernel: t.kernel.clone(),
        exit_status: None,
        thread_exit: None,
        group: t.group.clone(),
        pending,
        blocked,
        restart: None,
        regs_replaced: false,
        fpu_restore: None,
        fpu_layout: t.fpu_layout,
        waiter,
    };
    // The new thread starts with the FPU state Linux gives it: the parent's is not
    // copied (glibc saves nothing across clone), so begin from the initial state.
    let mut child = child;
    child.fpu_restore = Some(crate::arch::fpu::initial(t.fpu_layout.0));
    spawn_thread(child, ctx)
        .map(|_| tid as u64)
        .or_else(|e| fail(t, e))
}

/// vfork(2): the child runs in the caller's memory, on its stack, while the caller
/// waits for it to run execve or end.
fn sys_vfork(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    crate::kernel::process::fork(t, ForkMemory::SharedVfork, 0, None, None, None)
        .map(|pid| pid as u64)
}

fn sys_fork(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    crate::kernel::process::fork(t, ForkMemory::Copy, 0, None, None, None).map(|pid| pid as u64)
}

const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WEXITED: u64 = 4;
const WCONTINUED: u64 = 8;
const WNOWAIT: u64 = 0x0100_0000;
const WNOTHREAD: u64 = 0x2000_0000;
const WALL: u64 = 0x4000_0000;
const WCLONE: u64 = 0x8000_0000;

fn sys_wait4(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use crate::kernel::process::{wait_child, WaitFor};
    let (pid, wstatus, options, rusage) = (a[0] as i32, a[1], a[2], a[3]);
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    let which = match pid {
        // Its process group would be -INT_MIN, which does not exist (Linux: ESRCH).
        i32::MIN => return Err(Errno::ESRCH),
        -1 => WaitFor::Any,
        0 => WaitFor::Pgid(t.group.pgid.load(std::sync::atomic::Ordering::Relaxed)),
        p if p < -1 => WaitFor::Pgid(-p),
        p => WaitFor::Pid(p),
    };
    match wait_child(t, which, options & WNOHANG != 0, true)? {
        None => Ok(0),
        Some((pid, status)) => {
            if wstatus != 0 {
                t.mm.write_u32(wstatus, status.wait_status() as u32)?;
            }
            if rusage != 0 {
                t.mm.copy_out(rusage, &[0u8; 144])?;
            }
            Ok(pid as u64)
        }
    }
}

fn sys_waitid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use crate::kernel::exit::ExitStatus;
    use crate::kernel::process::{wait_child, WaitFor};
    let (idtype, id, infop, options) = (a[0], a[1] as i32, a[2], a[3]);
    if options & !(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE)
        != 0
        || options & (WEXITED | WUNTRACED | WCONTINUED) == 0
    {
        return Err(Errno::EINVAL);
    }
    let which = match idtype {
        0 => WaitFor::Any,
        1 if id > 0 => WaitFor::Pid(id),
        2 if id >= 0 => WaitFor::Pgid(if id == 0 {
            t.group.pgid.load(std::sync::atomic::Ordering::Relaxed)
        } else {
            id
        }),
        _ => return Err(Errno::EINVAL),
    };
    if options & WEXITED == 0 {
        // Only exits are reported; a wait for stops alone finds nothing.
        return if options & WNOHANG != 0 {
            Ok(0)
        } else {
            Err(Errno::ECHILD)
        };
    }
    let found = wait_child(t, which, options & WNOHANG != 0, options & WNOWAIT == 0)?;
    if infop != 0 {
        // siginfo_t: signo, errno, code, then pid, uid, status for SIGCHLD.
        let mut b = [0u8; 128];
        if let Some((pid, status)) = found {
            let (code, value) = match status {
                ExitStatus::Exited(c) => (1i32, c as i32), // CLD_EXITED
                ExitStatus::Signaled(s) => (2, s as i32),  // CLD_KILLED
            };
            b[0..4].copy_from_slice(&17i32.to_le_bytes());
            b[8..12].copy_from_slice(&code.to_le_bytes());
            b[16..20].copy_from_slice(&pid.to_le_bytes());
            b[20..24].copy_from_slice(&t.creds.uid.to_le_bytes());
            b[24..28].copy_from_slice(&value.to_le_bytes());
        }
        t.mm.copy_out(infop, &b)?;
    }
    Ok(0)
}

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// A futex timeout as a deadline: relative (FUTEX_WAIT) or absolute on the monotonic or
/// realtime clock (FUTEX_WAIT_BITSET).
fn deadline(t: &Task, addr: u64, absolute: bool, realtime: bool) -> Result<Option<Instant>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let sec = t.mm.read_u64(addr)? as i64;
    let nsec = t.mm.read_u64(addr + 8)? as i64;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    let want = Duration::new(sec as u64, nsec as u32);
    let now = Instant::now();
    if !absolute {
        return Ok(Some(now + want));
    }
    let clock = if realtime {
        libc::CLOCK_REALTIME
    } else {
        libc::CLOCK_MONOTONIC
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    let cur = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    Ok(Some(now + want.saturating_sub(cur)))
}

fn sys_futex(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (addr, op, val, timeout, addr2, val3) = (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    let word = crate::kernel::futex::Word {
        mm: &t.mm,
        addr,
        shared: op & FUTEX_PRIVATE_FLAG == 0,
    };
    if realtime && cmd != FUTEX_WAIT_BITSET && cmd != FUTEX_WAIT {
        return Err(Errno::ENOSYS);
    }
    let futexes = &t.kernel.futexes;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT { u32::MAX } else { val3 };
            let d = deadline(t, timeout, cmd == FUTEX_WAIT_BITSET, realtime)?;
            match futexes.wait(word, val, bitset, d, &t.waiter) {
                Ok(()) => Ok(0),
                // Interrupted futex waits restart (glibc re-checks the word anyway).
                Err(Errno::EINTR) => Err(Errno::ERESTARTSYS),
                Err(e) => Err(e),
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE { u32::MAX } else { val3 };
            futexes.wake(word, val, bitset)
        }
        // For the requeue ops the timeout argument carries the count to move.
        FUTEX_REQUEUE => futexes.requeue(word, addr2, val, timeout as u32, None),
        FUTEX_CMP_REQUEUE => futexes.requeue(word, addr2, val, timeout as u32, Some(val3)),
        FUTEX_WAKE_OP => Err(Errno::ENOSYS),
        _ => Err(Errno::ENOSYS),
    }
}

//! Signal dispositions, masks, the alternate stack, sigreturn, and signals a process
//! sends itself.

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::exit::ExitStatus;
use crate::kernel::signal::*;
use crate::kernel::sigqueue::{Queued, SigInfo, SIGINFO_SIZE, SI_TKILL, SI_USER};
use crate::kernel::task::Task;
use crate::kernel::thread_group::ThreadGroup;
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(13, rt_sigaction, Full, "", sys_rt_sigaction),
    syscall!(14, rt_sigprocmask, Full, "", sys_rt_sigprocmask),
    syscall!(15, rt_sigreturn, Full, "", sys_rt_sigreturn),
    syscall!(
        62,
        kill,
        Partial,
        "the siginfo a handler gets carries no sender pid or uid",
        sys_kill
    ),
    syscall!(34, pause, Full, "", sys_pause),
    syscall!(127, rt_sigpending, Full, "", sys_rt_sigpending),
    syscall!(129, rt_sigqueueinfo, Full, "", sys_rt_sigqueueinfo),
    syscall!(297, rt_tgsigqueueinfo, Full, "", sys_rt_tgsigqueueinfo),
    syscall!(
        128,
        rt_sigtimedwait,
        Partial,
        "the siginfo written has si_code SI_USER and no sender pid or uid",
        sys_rt_sigtimedwait
    ),
    syscall!(130, rt_sigsuspend, Full, "", sys_rt_sigsuspend),
    syscall!(131, sigaltstack, Full, "", sys_sigaltstack),
    syscall!(200, tkill, Full, "", sys_tkill),
    syscall!(234, tgkill, Full, "", sys_tgkill),
];

const SIG_BLOCK: u64 = 0;
const SIG_UNBLOCK: u64 = 1;
const SIG_SETMASK: u64 = 2;
const MINSIGSTKSZ: u64 = 2048;

fn valid_signal(sig: u64) -> Result<u8, Errno> {
    if (1..=NSIG as u64).contains(&sig) {
        Ok(sig as u8)
    } else {
        Err(Errno::EINVAL)
    }
}

fn sys_rt_sigaction(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (sig, new, old, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let sig = valid_signal(sig)?;
    let idx = (sig - 1) as usize;
    let prev = t.signals.action(sig);
    if new != 0 {
        if sig == SIGKILL || sig == SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 32];
        t.mm.copy_in(new, &mut b)?;
        let word =
            |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        set_action(
            t,
            idx,
            SigAction {
                handler: word(0),
                flags: word(1),
                restorer: word(2),
                mask: word(3) & !UNBLOCKABLE,
            },
        );
    }
    if old != 0 {
        let mut b = [0u8; 32];
        for (i, w) in [prev.handler, prev.flags, prev.restorer, prev.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        if let Err(e) = t.mm.copy_out(old, &b) {
            if new != 0 {
                set_action(t, idx, prev);
            }
            return Err(e);
        }
    }
    Ok(0)
}

fn sys_rt_sigprocmask(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (how, set, old, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let prev = t.signals.mask;
    if set != 0 {
        let s = t.mm.read_u64(set)? & !UNBLOCKABLE;
        t.signals.mask = match how {
            SIG_BLOCK => prev | s,
            SIG_UNBLOCK => prev & !s,
            SIG_SETMASK => s,
            _ => return Err(Errno::EINVAL),
        };
    }
    if old != 0 {
        t.mm.write_u64(old, prev)?;
    }
    Ok(0)
}

fn sys_rt_sigreturn(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let mm = t.mm.clone();
    let (size, xcr0) = t.fpu_layout;
    match t.signals.sigreturn(&mm, &mut t.regs, size, xcr0) {
        Ok(image) => {
            t.regs_replaced = true;
            t.fpu_restore = Some(image);
            Ok(0)
        }
        Err(_) => {
            // Linux: a bad frame on sigreturn is a SIGSEGV.
            t.exit_status = Some(ExitStatus::Signaled(SIGSEGV));
            Ok(0)
        }
    }
}

fn sys_sigaltstack(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (new, old) = (a[0], a[1]);
    let prev = t.signals.altstack;
    let sp = t.regs.rsp;
    if new != 0 {
        let mut b = [0u8; 24];
        t.mm.copy_in(new, &mut b)?;
        let ss_sp = u64::from_le_bytes(b[0..8].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
        let size = u64::from_le_bytes(b[16..24].try_into().unwrap_or_default());
        if t.signals.altstack_flags(sp) == SS_ONSTACK {
            return Err(Errno::EPERM);
        }
        // SS_AUTODISARM (1 << 31) is accepted and has no effect without nested delivery.
        let flags = flags & !(1 << 31);
        if flags != 0 && flags != SS_DISABLE && flags != SS_ONSTACK {
            return Err(Errno::EINVAL);
        }
        if flags == SS_DISABLE {
            t.signals.altstack = AltStack::default();
        } else {
            if size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            t.signals.altstack = AltStack {
                sp: ss_sp,
                flags: 0,
                size,
            };
        }
    }
    if old != 0 {
        let mut b = [0u8; 24];
        let flags = if new != 0 {
            prev.flags & SS_DISABLE
        } else {
            t.signals.altstack_flags(sp)
        };
        let flags =
            if flags & SS_DISABLE == 0 && prev.sp != 0 && sp > prev.sp && sp <= prev.sp + prev.size
            {
                SS_ONSTACK
            } else {
                flags
            };
        b[0..8].copy_from_slice(&prev.sp.to_le_bytes());
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&prev.size.to_le_bytes());
        t.mm.copy_out(old, &b)?;
    }
    Ok(0)
}

fn set_action(t: &Task, idx: usize, action: SigAction) {
    if let Ok(mut a) = t.signals.actions.lock() {
        a[idx] = action;
    }
}

/// Raise `sig` in the calling thread; the run loop delivers it before the thread
/// returns to user code (pipe_write's SIGPIPE, for example).
pub fn raise(t: &mut Task, sig: u8) {
    // Linux's send_sig(sig, current, 0): SI_USER from the thread's own process.
    t.pending
        .send(SigInfo::user(sig, SI_USER, t.group.tgid, t.creds.uid));
}

fn sys_kill(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = a[0] as i32;
    let sig = a[1];
    if pid == i32::MIN {
        // Process group -INT_MIN does not exist; Linux answers ESRCH before it looks at
        // the signal.
        return Err(Errno::ESRCH);
    }
    if sig != 0 {
        valid_signal(sig)?;
    }
    let targets: Vec<_> = match pid {
        // Every process but init (the sandbox's "everyone", as kill(-1) from init sees).
        -1 => t
            .kernel
            .processes
            .all()
            .into_iter()
            .filter(|g| g.tgid != 1 || t.process.pid == 1)
            .collect(),
        0 => {
            let pgid = t.group.pgid.load(std::sync::atomic::Ordering::Relaxed);
            t.kernel
                .processes
                .all()
                .into_iter()
                .filter(|g| g.pgid.load(std::sync::atomic::Ordering::Relaxed) == pgid)
                .collect()
        }
        p if p < 0 => t
            .kernel
            .processes
            .all()
            .into_iter()
            .filter(|g| g.pgid.load(std::sync::atomic::Ordering::Relaxed) == -p)
            .collect(),
        p => t.kernel.processes.get(p).into_iter().collect(),
    };
    // A process that has ended (a zombie) still exists for kill, and ignores signals.
    let live: Vec<_> = targets
        .into_iter()
        .filter(|g| g.exit_status().is_none() || sig == 0)
        .collect();
    if live.is_empty() {
        return if t.kernel.processes.get(pid).is_some() {
            Ok(0)
        } else {
            Err(Errno::ESRCH)
        };
    }
    // An unprivileged sender may signal only its own user's processes (SIGCONT: its
    // session's too). kill(-1) skips the others; a named target is refused.
    let allowed: Vec<_> = live.into_iter().filter(|g| may_signal(t, g, sig)).collect();
    if allowed.is_empty() {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        for g in allowed {
            g.signal_group(SigInfo::user(sig as u8, SI_USER, t.group.tgid, t.creds.uid));
        }
    }
    Ok(0)
}

/// Linux's kill_ok_by_cred: root (CAP_KILL), or a real or effective uid of the sender
/// that is the target's real or saved uid; SIGCONT also within the session.
fn may_signal(t: &Task, target: &ThreadGroup, sig: u64) -> bool {
    let c = &t.creds;
    if c.euid == 0 || target.tgid == t.group.tgid {
        return true;
    }
    if sig == SIGCONT as u64
        && target.sid.load(std::sync::atomic::Ordering::Relaxed)
            == t.group.sid.load(std::sync::atomic::Ordering::Relaxed)
    {
        return true;
    }
    let [uid, _, suid] = target.view.lock().unwrap_or_else(|e| e.into_inner()).uids;
    [c.uid, c.euid].iter().any(|s| *s == uid || *s == suid)
}

/// Send `sig` from `t` to thread `tid` of `group` (tkill, tgkill: SI_TKILL).
fn signal_thread(t: &Task, group: &ThreadGroup, tid: i32, sig: u64) -> SyscallResult {
    if sig != 0 {
        valid_signal(sig)?;
    }
    let present = if sig == 0 {
        group.tids().contains(&tid)
    } else {
        let info = SigInfo::user(sig as u8, SI_TKILL, t.group.tgid, t.creds.uid);
        group.signal_thread(tid, info).is_some()
    };
    if present {
        Ok(0)
    } else {
        Err(Errno::ESRCH)
    }
}

fn sys_tkill(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if (a[0] as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    // A tid names its thread in whichever process it belongs to.
    let tid = a[0] as i32;
    if t.group.tids().contains(&tid) {
        return signal_thread(t, &t.group, tid, a[1]);
    }
    let owner = t
        .kernel
        .processes
        .all()
        .into_iter()
        .find(|g| g.tids().contains(&tid))
        .ok_or(Errno::ESRCH)?;
    if !may_signal(t, &owner, a[1]) {
        return Err(Errno::EPERM);
    }
    signal_thread(t, &owner, tid, a[1])
}

fn sys_tgkill(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if (a[0] as i32) <= 0 || (a[1] as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    let tgid = a[0] as i32;
    if tgid == t.group.tgid {
        return signal_thread(t, &t.group, a[1] as i32, a[2]);
    }
    let group = t.kernel.processes.get(tgid).ok_or(Errno::ESRCH)?;
    if !may_signal(t, &group, a[2]) {
        return Err(Errno::EPERM);
    }
    signal_thread(t, &group, a[1] as i32, a[2])
}

/// The siginfo a sigqueue caller passes: its own, unless it claims to be the kernel or
/// kill/tgkill (si_code >= 0 or SI_TKILL), which only a process signalling itself may.
fn queued_info(t: &Task, target: i32, sig: u64, addr: u64) -> Result<Option<SigInfo>, Errno> {
    let mut bytes = [0u8; SIGINFO_SIZE];
    t.mm.copy_in(addr, &mut bytes)?;
    let code = i32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if (code >= 0 || code == SI_TKILL) && target != t.group.tgid {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        valid_signal(sig)?;
    }
    Ok((sig != 0).then(|| SigInfo::raw(sig as u8, bytes)))
}

fn queue_result(q: Queued) -> SyscallResult {
    match q {
        Queued::Full => Err(Errno::EAGAIN),
        Queued::Yes | Queued::Merged => Ok(0),
    }
}

/// sigqueue(3): a signal with the caller's siginfo (and its value) to a process.
fn sys_rt_sigqueueinfo(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let tgid = a[0] as i32;
    let info = queued_info(t, tgid, a[1], a[2])?;
    let group = if tgid == t.group.tgid {
        t.group.clone()
    } else {
        t.kernel.processes.get(tgid).ok_or(Errno::ESRCH)?
    };
    if !may_signal(t, &group, a[1]) {
        return Err(Errno::EPERM);
    }
    match info {
        Some(info) if group.exit_status().is_none() => queue_result(group.signal_group(info)),
        _ => Ok(0),
    }
}

/// pthread_sigqueue(3): the same to one thread of a process.
fn sys_rt_tgsigqueueinfo(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (tgid, tid) = (a[0] as i32, a[1] as i32);
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let info = queued_info(t, tgid, a[2], a[3])?;
    let group = if tgid == t.group.tgid {
        t.group.clone()
    } else {
        t.kernel.processes.get(tgid).ok_or(Errno::ESRCH)?
    };
    if !group.tids().contains(&tid) {
        return Err(Errno::ESRCH);
    }
    if !may_signal(t, &group, a[2]) {
        return Err(Errno::EPERM);
    }
    match info {
        Some(info) => queue_result(group.signal_thread(tid, info).ok_or(Errno::ESRCH)?),
        None => Ok(0),
    }
}

/// Sleep until a signal arrives (the run loop delivers it as the call returns).
fn sleep_for_signal(t: &Task) {
    while t.waiter.wait(None) != crate::waiter::Wake::Interrupted {}
}

fn sys_pause(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    sleep_for_signal(t);
    Err(Errno::ERESTARTNOHAND)
}

fn sys_rt_sigsuspend(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[1] != 8 {
        return Err(Errno::EINVAL);
    }
    let mask = t.mm.read_u64(a[0])? & !UNBLOCKABLE;
    // The handler's frame records the mask from before the call; sigreturn restores it.
    t.signals.saved_mask = Some(t.signals.mask);
    t.signals.mask = mask;
    t.blocked.store(mask, std::sync::atomic::Ordering::SeqCst);
    // A signal that was pending while blocked and that the new mask lets through woke
    // nobody when it was sent: it ends the wait at once (after publishing the mask, so a
    // signal sent from now on interrupts the wait).
    let pending = t.pending.bits() | t.group.pending.bits();
    if pending & (!mask | UNBLOCKABLE) == 0 {
        sleep_for_signal(t);
    }
    Err(Errno::ERESTARTNOHAND)
}

/// Signals pending for the calling thread (its own and its process's) that it blocks.
fn sys_rt_sigpending(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[1] > 8 {
        return Err(Errno::EINVAL);
    }
    let pending = t.pending.bits() | t.group.pending.bits();
    let shown = (pending & t.signals.mask).to_le_bytes();
    t.mm.copy_out(a[0], &shown[..a[1] as usize]).map(|_| 0)
}

/// sigwaitinfo/sigtimedwait (what tini and dumb-init, containers' usual init, wait in):
/// take a signal of `set` (pending now, or the first to come before the timeout) without
/// running its handler. The signals of `set` interrupt the wait while it lasts, blocked
/// or not; another signal ends it with EINTR (its handler runs as the call returns).
fn sys_rt_sigtimedwait(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use std::sync::atomic::Ordering::SeqCst;
    if a[3] != 8 {
        return Err(Errno::EINVAL);
    }
    let set = t.mm.read_u64(a[0])? & !UNBLOCKABLE;
    let deadline = if a[2] == 0 {
        None
    } else {
        let mut b = [0u8; 16];
        t.mm.copy_in(a[2], &mut b)?;
        let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let nsec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(Errno::EINVAL);
        }
        // Past what the host clock can hold: no deadline, as with no timeout.
        std::time::Instant::now().checked_add(std::time::Duration::new(sec as u64, nsec as u32))
    };
    // Senders interrupt a thread for the signals it does not block: for the wait, that
    // includes `set`.
    t.group.set_real_blocked(t.tid, t.signals.mask);
    t.blocked.store(t.signals.mask & !set, SeqCst);
    let result = loop {
        t.waiter.clear_interrupt();
        if let Some(sig) = crate::kernel::run::take_signal_of(t, set) {
            break Ok(sig);
        }
        let pending = t.pending.bits() | t.group.pending.bits();
        if pending & (!t.signals.mask | UNBLOCKABLE) != 0 || t.group.exit_status().is_some() {
            break Err(Errno::EINTR);
        }
        // Woken for any reason before the deadline: look again.
        if t.waiter.wait(deadline) == crate::waiter::Wake::TimedOut {
            break crate::kernel::run::take_signal_of(t, set).ok_or(Errno::EAGAIN);
        }
    };
    t.blocked.store(t.signals.mask, SeqCst);
    t.group.set_real_blocked(t.tid, 0);
    let info = result?;
    if a[1] != 0 {
        t.mm.copy_out(a[1], &info.0)?;
    }
    Ok(u64::from(info.signo()))
}

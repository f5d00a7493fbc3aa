//! Signal dispositions, masks, the alternate stack, sigreturn, and signals a process
//! sends itself.

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::exit::ExitStatus;
use crate::kernel::signal::*;
use crate::kernel::task::Task;
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(13, rt_sigaction, Full, "", sys_rt_sigaction),
    syscall!(14, rt_sigprocmask, Full, "", sys_rt_sigprocmask),
    syscall!(15, rt_sigreturn, Full, "", sys_rt_sigreturn),
    syscall!(
        62,
        kill,
        Partial,
        "only the calling process (or pid 0/-1 meaning it); handlers run at once",
        sys_kill
    ),
    syscall!(131, sigaltstack, Full, "", sys_sigaltstack),
    syscall!(200, tkill, Partial, "only the calling thread", sys_tkill),
    syscall!(234, tgkill, Partial, "only the calling thread", sys_tgkill),
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
    let prev = t.signals.actions[idx];
    if new != 0 {
        if sig == SIGKILL || sig == SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 32];
        t.mm.copy_in(new, &mut b)?;
        let word =
            |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        t.signals.actions[idx] = SigAction {
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: word(3) & !UNBLOCKABLE,
        };
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
                t.signals.actions[idx] = prev;
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

/// Raise `sig` in the calling thread after a syscall has stored its result.
pub fn raise(t: &mut Task, sig: u8) {
    let rax = t.regs.rax;
    let _ = signal_self(t, sig as u64, rax);
    t.regs_replaced = false;
}

/// Send `sig` to the calling thread itself, now.
fn signal_self(t: &mut Task, sig: u64, ret: u64) -> SyscallResult {
    if sig == 0 {
        return Ok(0);
    }
    let sig = valid_signal(sig)?;
    let action = t.signals.actions[(sig - 1) as usize];
    let blocked = t.signals.mask & sigbit(sig) != 0;
    if action.handler == SIG_IGN || blocked {
        // Blocked signals would stay pending; without other threads nothing unblocks
        // them except sigprocmask, which is not tracked yet, so they are dropped.
        return Ok(0);
    }
    if action.handler == SIG_DFL {
        // Default actions that ignore: SIGCHLD, SIGURG, SIGWINCH, SIGCONT.
        if matches!(sig, 17 | 23 | 28 | 18) {
            return Ok(0);
        }
        t.exit_status = Some(ExitStatus::Signaled(sig));
        return Ok(0);
    }
    // Run the handler when this syscall returns: the frame records its return value.
    t.regs.rax = ret;
    let mm = t.mm.clone();
    let info = FaultInfo {
        signo: sig,
        code: 0, // SI_USER
        addr: t.process.pid as u64 | ((t.creds.uid as u64) << 32),
        trapno: 0,
        error: 0,
        cr2: 0,
    };
    // No FPU image from inside a syscall: the frame's fpstate is NULL (see signal.rs).
    match t
        .signals
        .deliver_fault(&mm, &mut t.regs, info, &mut || None)
    {
        Delivery::Handler => t.regs_replaced = true,
        Delivery::Fatal(s) => t.exit_status = Some(ExitStatus::Signaled(s)),
    }
    Ok(0)
}

fn sys_kill(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = a[0] as i32;
    if pid == t.process.pid || pid == 0 || pid == -1 || pid == -t.process.pgid {
        signal_self(t, a[1], 0)
    } else {
        valid_signal(a[1]).or(if a[1] == 0 { Ok(0) } else { Err(Errno::EINVAL) })?;
        Err(Errno::ESRCH)
    }
}

fn sys_tkill(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] as i32 != t.tid {
        return Err(if (a[0] as i32) <= 0 {
            Errno::EINVAL
        } else {
            Errno::ESRCH
        });
    }
    signal_self(t, a[1], 0)
}

fn sys_tgkill(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if (a[0] as i32) <= 0 || (a[1] as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    if a[0] as i32 != t.process.pid || a[1] as i32 != t.tid {
        return Err(Errno::ESRCH);
    }
    signal_self(t, a[2], 0)
}

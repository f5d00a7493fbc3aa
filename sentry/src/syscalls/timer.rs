//! POSIX timers: timer_create and friends, decoded for `kernel::posix_timer`.

use super::events::{itimerspec_bytes, read_timespec};
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::posix_timer::{deadline_in, Notify, PosixTimers, Timer};
use crate::kernel::task::Task;
use crate::syscall;

const NOTE: &str = "CLOCK_REALTIME, MONOTONIC, BOOTTIME and their _ALARM forms; CPU-time clocks → EINVAL; timer_getoverrun reports the overrun of the last expiry signalled";

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(222, timer_create, Partial, NOTE, sys_timer_create),
    syscall!(223, timer_settime, Full, "", sys_timer_settime),
    syscall!(224, timer_gettime, Full, "", sys_timer_gettime),
    syscall!(225, timer_getoverrun, Partial, NOTE, sys_timer_getoverrun),
    syscall!(226, timer_delete, Full, "", sys_timer_delete),
];

const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_BOOTTIME: i32 = 7;
const CLOCK_REALTIME_ALARM: i32 = 8;
const CLOCK_BOOTTIME_ALARM: i32 = 9;
const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
const SIGALRM: u8 = 14;
const TIMER_ABSTIME: u64 = 1;
/// sizeof(struct sigevent).
const SIGEVENT_SIZE: usize = 64;

fn le_i32(b: &[u8]) -> i32 {
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn sys_timer_create(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (clock, sevp, idp) = (a[0] as i32, a[1], a[2]);
    match clock {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME => {}
        // Waking a suspended machine needs CAP_WAKE_ALARM: root's.
        CLOCK_REALTIME_ALARM | CLOCK_BOOTTIME_ALARM if t.creds.euid == 0 => {}
        CLOCK_REALTIME_ALARM | CLOCK_BOOTTIME_ALARM => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    }
    let (notify, value) = if sevp == 0 {
        (Notify::Process { signo: SIGALRM }, None)
    } else {
        let mut b = [0u8; SIGEVENT_SIZE];
        t.mm.copy_in(sevp, &mut b)?;
        let value = u64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let signo = le_i32(&b[8..12]);
        let how = le_i32(&b[12..16]);
        let tid = le_i32(&b[16..20]);
        let valid = (1..=crate::kernel::signal::NSIG as i32).contains(&signo);
        let notify = match how {
            SIGEV_NONE => Notify::None,
            SIGEV_SIGNAL | SIGEV_THREAD if valid => Notify::Process { signo: signo as u8 },
            SIGEV_THREAD_ID if valid && t.group.tids().contains(&tid) => Notify::Thread {
                signo: signo as u8,
                tid,
            },
            _ => return Err(Errno::EINVAL),
        };
        (notify, Some(value))
    };
    let timers = &t.group.posix_timers;
    // With no sigevent the value is the timer's id.
    let id = timers
        .create(|id| Timer::new(clock, notify, value.unwrap_or(id as u64)))
        .ok_or(Errno::EAGAIN)?;
    if let Err(e) = t.mm.write_u32(idp, id as u32) {
        timers.delete(id);
        return Err(e);
    }
    Ok(0)
}

fn timer_id(a: u64) -> Result<i32, Errno> {
    i32::try_from(a as i64)
        .ok()
        .filter(|id| *id >= 0)
        .ok_or(Errno::EINVAL)
}

fn sys_timer_settime(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (id, flags, new, old) = (timer_id(a[0])?, a[1], a[2], a[3]);
    let interval = read_timespec(t, new);
    let value = read_timespec(t, new.wrapping_add(16));
    for r in [&interval, &value] {
        if r == &Err(Errno::EFAULT) {
            return Err(Errno::EFAULT);
        }
    }
    let (interval, value) = (interval?, value?);
    let group = t.group.clone();
    let clock = group.posix_timers.clock(id).ok_or(Errno::EINVAL)?;
    let deadline = if value.is_zero() {
        None
    } else if flags & TIMER_ABSTIME != 0 {
        // A time already past expires at once.
        let clock_now = crate::vfs::timerfd::clock_now(clock);
        Some(deadline_in(value.saturating_sub(clock_now)))
    } else {
        Some(deadline_in(value))
    };
    let (old_value, old_interval) =
        PosixTimers::set(&group, id, deadline, interval).ok_or(Errno::EINVAL)?;
    if old != 0 {
        t.mm.copy_out(old, &itimerspec_bytes(old_value, old_interval))?;
    }
    Ok(0)
}

fn sys_timer_gettime(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (value, interval) = t
        .group
        .posix_timers
        .get(timer_id(a[0])?)
        .ok_or(Errno::EINVAL)?;
    t.mm.copy_out(a[1], &itimerspec_bytes(value, interval))
        .map(|_| 0)
}

fn sys_timer_getoverrun(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let n = t
        .group
        .posix_timers
        .overrun(timer_id(a[0])?)
        .ok_or(Errno::EINVAL)?;
    Ok(n as u64)
}

fn sys_timer_delete(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if t.group.posix_timers.delete(timer_id(a[0])?) {
        Ok(0)
    } else {
        Err(Errno::EINVAL)
    }
}

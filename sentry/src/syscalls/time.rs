//! Clocks and sleeping. Clocks are the host's (CLOCK_MONOTONIC continues across the
//! sandbox's life; checkpoint/restore will offset it); CPU clocks are the guest
//! process's and threads' (`kernel::cputime`).

use std::time::Duration;

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::cputime::{CpuClockId, CpuClockKind, CpuTimes};
use crate::kernel::posix_timer::PosixTimers;
use crate::kernel::task::Task;
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(35, nanosleep, Full, "", sys_nanosleep),
    syscall!(36, getitimer, Partial, "ITIMER_REAL; ITIMER_VIRTUAL/ITIMER_PROF → EINVAL", sys_getitimer),
    syscall!(37, alarm, Full, "", sys_alarm),
    syscall!(38, setitimer, Partial, "ITIMER_REAL; ITIMER_VIRTUAL/ITIMER_PROF → EINVAL", sys_setitimer),
    syscall!(96, gettimeofday, Full, "", sys_gettimeofday),
    syscall!(201, time, Full, "", sys_time),
    syscall!(228, clock_gettime, Full, "CPU clocks (CLOCK_PROCESS/THREAD_CPUTIME_ID, clock_getcpuclockid's) are the guest process's/thread's; another thread's counts its user and system time together", sys_clock_gettime),
    syscall!(229, clock_getres, Full, "", sys_clock_getres),
    syscall!(230, clock_nanosleep, Partial, "CLOCK_REALTIME/MONOTONIC/BOOTTIME, relative and TIMER_ABSTIME; an interrupted relative sleep restarted without a handler sleeps its whole duration again", sys_clock_nanosleep),
];

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;
const TIMER_ABSTIME: u64 = 1;

/// Read a host clock. Only the ids Linux defines for everyone are accepted.
fn host_clock(id: u64) -> Result<libc::timespec, Errno> {
    let host_id = match id {
        CLOCK_REALTIME => libc::CLOCK_REALTIME,
        CLOCK_MONOTONIC => libc::CLOCK_MONOTONIC,
        // The calling guest thread is the calling host thread.
        CLOCK_THREAD_CPUTIME_ID => libc::CLOCK_THREAD_CPUTIME_ID,
        CLOCK_MONOTONIC_RAW => libc::CLOCK_MONOTONIC_RAW,
        CLOCK_REALTIME_COARSE => libc::CLOCK_REALTIME_COARSE,
        CLOCK_MONOTONIC_COARSE => libc::CLOCK_MONOTONIC_COARSE,
        CLOCK_BOOTTIME => libc::CLOCK_BOOTTIME,
        _ => return Err(Errno::EINVAL),
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(host_id, &mut ts) } != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(ts)
}

fn write_timespec(task: &Task, addr: u64, sec: i64, nsec: i64) -> Result<(), Errno> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_le_bytes());
    b[8..].copy_from_slice(&nsec.to_le_bytes());
    task.mm.copy_out(addr, &b)
}

/// Read a guest timespec; EINVAL if the nanoseconds are out of range or seconds < 0.
fn read_timespec(task: &Task, addr: u64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    task.mm.copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let nsec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, nsec as u32))
}

/// What a process CPU clock id names: `CLOCK_PROCESS_CPUTIME_ID`, or one made by
/// clock_getcpuclockid/pthread_getcpuclockid. None if `id` is no such clock (a static
/// clock, or CLOCK_THREAD_CPUTIME_ID, which the host answers exactly).
fn cpu_clock_of(id: u64) -> Option<CpuClockId> {
    if id == CLOCK_PROCESS_CPUTIME_ID {
        return Some(CpuClockId {
            id: 0,
            per_thread: false,
            kind: CpuClockKind::Sched,
        });
    }
    // clockid_t is an int: Linux looks at the register's low 32 bits only.
    CpuClockId::decode(id as u32 as i32)
}

/// The CPU time `clock` measures now; EINVAL if it names no thread of the caller's
/// process (thread clocks, as Linux allows them) or no process of its container.
fn cpu_clock_time(task: &Task, clock: CpuClockId) -> Result<Duration, Errno> {
    let times = if clock.per_thread {
        if clock.id == 0 || clock.id == task.tid {
            CpuTimes::own_thread()
        } else {
            task.group.thread_cpu_times(clock.id).ok_or(Errno::EINVAL)?
        }
    } else if clock.id == 0 || clock.id == task.group.tgid {
        task.group.cpu_times()
    } else {
        let group = task
            .kernel
            .processes
            .get(clock.id)
            .filter(|g| g.container() == task.group.container())
            .ok_or(Errno::EINVAL)?;
        group.cpu_times()
    };
    Ok(clock.reading(times))
}

fn sys_clock_gettime(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (sec, nsec) = match cpu_clock_of(a[0]) {
        Some(clock) => {
            let d = cpu_clock_time(task, clock)?;
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        }
        None => {
            let ts = host_clock(a[0])?;
            (ts.tv_sec, ts.tv_nsec)
        }
    };
    write_timespec(task, a[1], sec, nsec).map(|_| 0)
}

fn sys_clock_getres(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if let Some(clock) = cpu_clock_of(a[0]) {
        cpu_clock_time(task, clock)?;
        // Linux (posix_cpu_clock_getres): 1 ns for the scheduler's clock, which the
        // fixed ids are, a tick for the PROF and VIRT ones.
        let res = if clock.kind == CpuClockKind::Sched {
            1
        } else {
            tick_ns()
        };
        if a[1] != 0 {
            write_timespec(task, a[1], 0, res)?;
        }
        return Ok(0);
    }
    let res = match a[0] {
        CLOCK_REALTIME_COARSE | CLOCK_MONOTONIC_COARSE => {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_getres writes one timespec into `ts`.
            unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
            ts.tv_nsec
        }
        _ => {
            host_clock(a[0])?;
            1
        }
    };
    if a[1] != 0 {
        write_timespec(task, a[1], 0, res)?;
    }
    Ok(0)
}

/// The host's tick in nanoseconds (its CPUCLOCK_VIRT resolution, 1 s / HZ rounded up).
fn tick_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // The sentry's own process CPUCLOCK_VIRT: MAKE_PROCESS_CPUCLOCK(0, CPUCLOCK_VIRT).
    const OWN_VIRT: libc::clockid_t = (!0 << 3) | 1;
    // SAFETY: clock_getres writes one timespec into `ts`.
    if unsafe { libc::clock_getres(OWN_VIRT, &mut ts) } != 0 || ts.tv_nsec <= 0 {
        return 4_000_000;
    }
    ts.tv_nsec
}

fn sys_gettimeofday(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != 0 {
        let ts = host_clock(CLOCK_REALTIME)?;
        write_timespec(task, a[0], ts.tv_sec, ts.tv_nsec / 1000)?;
    }
    if a[1] != 0 {
        // struct timezone: always zero, as on Linux without a configured tz.
        task.mm.copy_out(a[1], &[0u8; 8])?;
    }
    Ok(0)
}

fn sys_time(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let now = host_clock(CLOCK_REALTIME)?.tv_sec;
    if a[0] != 0 {
        task.mm.write_u64(a[0], now as u64)?;
    }
    Ok(now as u64)
}

/// Sleep for `d` on the task's waiter, so a signal (or the sandbox ending) cuts it
/// short. The time left, when interrupted.
fn sleep(task: &Task, d: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    // A duration past what the host clock can represent (the guest chose it) is
    // "forever": only a signal ends it.
    let deadline = start.checked_add(d);
    task.waiter.reset();
    loop {
        match task.waiter.wait(deadline) {
            crate::waiter::Wake::TimedOut => return None,
            crate::waiter::Wake::Interrupted => return Some(d.saturating_sub(start.elapsed())),
            // Someone notified this thread for another reason: keep sleeping.
            crate::waiter::Wake::Notified => {
                if deadline.is_some_and(|dl| std::time::Instant::now() >= dl) {
                    return None;
                }
            }
        }
    }
}

/// Write a remaining time to a `struct timespec` (nanosleep's `rem`).
fn write_remaining(task: &Task, addr: u64, left: Duration) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(left.as_secs() as i64).to_le_bytes());
    b[8..].copy_from_slice(&(left.subsec_nanos() as i64).to_le_bytes());
    task.mm.copy_out(addr, &b)
}

fn sys_nanosleep(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let d = read_timespec(task, a[0])?;
    match sleep(task, d) {
        None => Ok(0),
        Some(left) => {
            write_remaining(task, a[1], left)?;
            // Linux: EINTR when a handler ran; restarted otherwise (with the whole
            // duration here, not only what was left).
            Err(Errno::ERESTARTNOHAND)
        }
    }
}

fn sys_clock_nanosleep(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (clock, flags) = (a[0], a[1]);
    match clock {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME => {}
        CLOCK_THREAD_CPUTIME_ID => return Err(Errno::EINVAL),
        CLOCK_PROCESS_CPUTIME_ID => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EINVAL),
    }
    let want = read_timespec(task, a[2])?;
    let d = if flags & TIMER_ABSTIME != 0 {
        let now = host_clock(clock)?;
        let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        want.saturating_sub(now)
    } else {
        want
    };
    match sleep(task, d) {
        None => Ok(0),
        Some(left) => {
            if flags & TIMER_ABSTIME == 0 {
                write_remaining(task, a[3], left)?;
            }
            Err(Errno::ERESTARTNOHAND)
        }
    }
}

const ITIMER_REAL: u64 = 0;

/// A `struct timeval` from guest memory, checked as Linux checks it.
fn read_timeval(task: &Task, addr: u64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    task.mm.copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let usec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, usec as u32 * 1000))
}

/// `struct itimerval` { it_interval, it_value }.
fn write_itimerval(
    task: &Task,
    addr: u64,
    (value, interval): (Duration, Duration),
) -> Result<(), Errno> {
    let mut b = [0u8; 32];
    // Linux rounds a running timer's remaining time up to the next microsecond.
    let usec = |d: Duration| {
        (
            d.as_secs() as i64,
            d.subsec_micros() as i64 + i64::from(!d.subsec_nanos().is_multiple_of(1000)),
        )
    };
    let (is, iu) = usec(interval);
    let (vs, vu) = usec(value);
    b[..8].copy_from_slice(&is.to_le_bytes());
    b[8..16].copy_from_slice(&iu.to_le_bytes());
    b[16..24].copy_from_slice(&vs.to_le_bytes());
    b[24..].copy_from_slice(&vu.to_le_bytes());
    task.mm.copy_out(addr, &b)
}

fn sys_getitimer(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != ITIMER_REAL {
        return Err(Errno::EINVAL);
    }
    write_itimerval(task, a[1], task.group.posix_timers.real()).map(|_| 0)
}

fn sys_setitimer(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != ITIMER_REAL {
        return Err(Errno::EINVAL);
    }
    let (interval, value) = if a[1] == 0 {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            read_timeval(task, a[1])?,
            read_timeval(task, a[1].wrapping_add(16))?,
        )
    };
    let old = PosixTimers::set_real(&task.group, value, interval);
    if a[2] != 0 {
        write_itimerval(task, a[2], old)?;
    }
    Ok(0)
}

fn sys_alarm(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let secs = a[0] as u32;
    let (left, _) = PosixTimers::set_real(
        &task.group,
        Duration::from_secs(secs as u64),
        Duration::ZERO,
    );
    // Linux: the seconds left, rounded to nearest, and at least 1 if the alarm was set.
    let mut s = left.as_secs() + u64::from(left.subsec_millis() >= 500);
    if s == 0 && !left.is_zero() {
        s = 1;
    }
    Ok(s)
}

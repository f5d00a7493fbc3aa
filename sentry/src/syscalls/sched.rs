//! Scheduling, priorities, resource usage, capabilities and protection keys: the calls
//! runtimes make to learn about their environment.

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::cputime::{ticks, timeval, CpuTimes};
use crate::kernel::task::Task;
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(98, getrusage, Partial, "RUSAGE_SELF/THREAD/CHILDREN times are the guest process's, thread's and ended children's host CPU time (another live thread's counts as user time; children count when they end, not when reaped); ru_maxrss is the process's own (0 for children); other counters are 0", sys_getrusage),
    syscall!(100, times, Partial, "the process's and its ended children's CPU time, as getrusage; returns the host's tick count", sys_times),
    syscall!(125, capget, Full, "", sys_capget),
    syscall!(126, capset, Partial, "capabilities may be dropped or kept, never added; the sandbox enforces nothing by them yet", sys_capset),
    syscall!(140, getpriority, Partial, "only the calling process/thread (who = 0 or its own id)", sys_getpriority),
    syscall!(141, setpriority, Partial, "only the calling process/thread; the nice value is recorded, not enforced", sys_setpriority),
    syscall!(142, sched_setparam, Partial, SCHED_NOTE, sys_sched_setparam),
    syscall!(143, sched_getparam, Full, "", sys_sched_getparam),
    syscall!(144, sched_setscheduler, Partial, SCHED_NOTE, sys_sched_setscheduler),
    syscall!(145, sched_getscheduler, Full, "", sys_sched_getscheduler),
    syscall!(146, sched_get_priority_max, Full, "", sys_sched_get_priority_max),
    syscall!(147, sched_get_priority_min, Full, "", sys_sched_get_priority_min),
    syscall!(148, sched_rr_get_interval, Partial, "only the calling thread; SCHED_RR reports Linux's default 100 ms slice, others 0", sys_sched_rr_get_interval),
    syscall!(203, sched_setaffinity, Partial, "accepted when the mask names an existing CPU; threads are not pinned", sys_sched_setaffinity),
    syscall!(309, getcpu, Partial, "always CPU 0, node 0", sys_getcpu),
    syscall!(329, pkey_mprotect, Partial, "only pkey -1 (plain mprotect); protection keys are not available", sys_pkey_mprotect),
    syscall!(330, pkey_alloc, Unsupported, "returns ENOSPC: no protection keys (as on a CPU without PKU)", sys_pkey_alloc),
    syscall!(331, pkey_free, Unsupported, "returns EINVAL: no key was ever allocated", sys_pkey_free),
];

const SCHED_NOTE: &str = "only the calling thread; the policy and priority are checked and recorded (sched_getscheduler/getparam report them), not enforced: the host schedules every guest thread as SCHED_OTHER";

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;
/// sched_setscheduler's flag that children start with the default policy.
const SCHED_RESET_ON_FORK: u32 = 0x4000_0000;

/// The static priorities `policy` allows: 1..=99 for the real-time ones, 0 otherwise.
fn priority_range(policy: u32) -> Option<(u32, u32)> {
    match policy {
        SCHED_FIFO | SCHED_RR => Some((1, 99)),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE => Some((0, 0)),
        _ => None,
    }
}

fn is_self(t: &Task, who: u64) -> bool {
    who == 0 || who as i32 == t.process.pid || who as i32 == t.tid
}

fn sys_getrusage(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // `who` is an int: RUSAGE_CHILDREN (-1) arrives as 0xffffffff.
    let who = a[0] as i32;
    let times = match who {
        libc::RUSAGE_SELF => t.group.cpu_times(),
        libc::RUSAGE_CHILDREN => t.group.children_cpu_times(),
        libc::RUSAGE_THREAD => CpuTimes::own_thread(),
        _ => return Err(Errno::EINVAL),
    };
    let mut b = [0u8; 144];
    b[..16].copy_from_slice(&timeval(times.user));
    b[16..32].copy_from_slice(&timeval(times.system));
    if who != libc::RUSAGE_CHILDREN {
        // ru_maxrss, in KiB: the process's own high-water mark, not the sandbox's.
        let peak_kib = t.mm.resident().1 / 1024;
        b[32..40].copy_from_slice(&peak_kib.to_le_bytes());
    }
    t.mm.copy_out(a[1], &b).map(|_| 0)
}

fn sys_times(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // SAFETY: a zeroed tms is valid output space for times.
    let mut tms: libc::tms = unsafe { std::mem::zeroed() };
    // SAFETY: times writes one struct tms; only its return value (the host's ticks since
    // an arbitrary point, as Linux's is) is used.
    let now = unsafe { libc::times(&mut tms) };
    if a[0] != 0 {
        let (own, children) = (t.group.cpu_times(), t.group.children_cpu_times());
        let mut b = [0u8; 32];
        for (i, d) in [own.user, own.system, children.user, children.system]
            .into_iter()
            .enumerate()
        {
            b[8 * i..8 * i + 8].copy_from_slice(&ticks(d).to_le_bytes());
        }
        t.mm.copy_out(a[0], &b)?;
    }
    Ok(now as u64)
}

const CAP_VERSION_1: u32 = 0x1998_0330;
const CAP_VERSION_2: u32 = 0x2007_1026;
const CAP_VERSION_3: u32 = 0x2008_0522;
/// Capabilities 0..=40: what root holds on Linux 6.x.
const ALL_CAPS: u64 = (1 << 41) - 1;

fn sys_capget(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let version = t.mm.read_u32(a[0])?;
    let words = match version {
        CAP_VERSION_1 => 1,
        CAP_VERSION_2 | CAP_VERSION_3 => 2,
        _ => {
            t.mm.write_u32(a[0], CAP_VERSION_3)?;
            return if a[1] == 0 { Ok(0) } else { Err(Errno::EINVAL) };
        }
    };
    let pid = t.mm.read_u32(a[0] + 4)? as i32;
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    if pid != 0 && pid != t.process.pid && pid != t.tid {
        return Err(Errno::ESRCH);
    }
    if a[1] == 0 {
        return Ok(0);
    }
    let caps = if t.creds.euid == 0 { ALL_CAPS } else { 0 };
    let mut b = vec![0u8; 12 * words];
    for w in 0..words {
        let part = (caps >> (32 * w)) as u32;
        // effective, permitted, inheritable (empty)
        b[12 * w..12 * w + 4].copy_from_slice(&part.to_le_bytes());
        b[12 * w + 4..12 * w + 8].copy_from_slice(&part.to_le_bytes());
    }
    t.mm.copy_out(a[1], &b).map(|_| 0)
}

fn sys_capset(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let version = t.mm.read_u32(a[0])?;
    if version != CAP_VERSION_3 && version != CAP_VERSION_2 && version != CAP_VERSION_1 {
        t.mm.write_u32(a[0], CAP_VERSION_3)?;
        return Err(Errno::EINVAL);
    }
    let pid = t.mm.read_u32(a[0] + 4)? as i32;
    if pid != 0 && pid != t.process.pid && pid != t.tid {
        return Err(Errno::EPERM);
    }
    let mut b = [0u8; 24];
    let words = if version == CAP_VERSION_1 { 1 } else { 2 };
    t.mm.copy_in(a[1], &mut b[..12 * words])?;
    let held = if t.creds.euid == 0 { ALL_CAPS } else { 0 };
    for w in 0..words {
        for f in 0..2 {
            let v = u32::from_le_bytes([
                b[12 * w + 4 * f],
                b[12 * w + 4 * f + 1],
                b[12 * w + 4 * f + 2],
                b[12 * w + 4 * f + 3],
            ]);
            if (v as u64) << (32 * w) & !held != 0 {
                return Err(Errno::EPERM);
            }
        }
    }
    Ok(0)
}

fn sys_getpriority(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] > 2 {
        return Err(Errno::EINVAL);
    }
    if !is_self(t, a[1]) {
        return Err(Errno::ESRCH);
    }
    // The raw syscall returns 20 - nice.
    Ok((20 - t.process.nice) as u64)
}

fn sys_setpriority(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] > 2 {
        return Err(Errno::EINVAL);
    }
    if !is_self(t, a[1]) {
        return Err(Errno::ESRCH);
    }
    t.process.nice = (a[2] as i32).clamp(-20, 19);
    Ok(0)
}

fn sys_sched_getparam(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if (a[0] as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    if !is_self(t, a[0]) {
        return Err(Errno::ESRCH);
    }
    if a[1] == 0 {
        return Err(Errno::EINVAL);
    }
    t.mm.write_u32(a[1], t.process.sched_priority).map(|_| 0)
}

/// Check and record `policy` with the priority at `param`.
fn set_scheduler(t: &mut Task, pid: u64, policy: u32, param: u64) -> SyscallResult {
    if (pid as i32) < 0 || param == 0 {
        return Err(Errno::EINVAL);
    }
    if !is_self(t, pid) {
        return Err(Errno::ESRCH);
    }
    let priority = t.mm.read_u32(param)?;
    let (min, max) = priority_range(policy).ok_or(Errno::EINVAL)?;
    if priority < min || priority > max {
        return Err(Errno::EINVAL);
    }
    // Real-time policies need CAP_SYS_NICE (RLIMIT_RTPRIO is 0 by default).
    if min > 0 && t.creds.euid != 0 {
        return Err(Errno::EPERM);
    }
    t.process.sched_policy = policy;
    t.process.sched_priority = priority;
    Ok(0)
}

fn sys_sched_setscheduler(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let policy = (a[1] as u32) & !SCHED_RESET_ON_FORK;
    if (a[1] as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    set_scheduler(t, a[0], policy, a[2])
}

fn sys_sched_setparam(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let policy = t.process.sched_policy;
    set_scheduler(t, a[0], policy, a[1])
}

fn sys_sched_get_priority_max(_: &mut Task, a: &[u64; 6]) -> SyscallResult {
    priority_range(a[0] as u32)
        .filter(|_| a[0] <= u32::MAX as u64)
        .map(|(_, max)| max as u64)
        .ok_or(Errno::EINVAL)
}

fn sys_sched_get_priority_min(_: &mut Task, a: &[u64; 6]) -> SyscallResult {
    priority_range(a[0] as u32)
        .filter(|_| a[0] <= u32::MAX as u64)
        .map(|(min, _)| min as u64)
        .ok_or(Errno::EINVAL)
}

fn sys_sched_rr_get_interval(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if (a[0] as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    if !is_self(t, a[0]) {
        return Err(Errno::ESRCH);
    }
    let nanos: i64 = if t.process.sched_policy == SCHED_RR {
        100_000_000
    } else {
        0
    };
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&nanos.to_le_bytes());
    t.mm.copy_out(a[1], &b).map(|_| 0)
}

fn sys_sched_getscheduler(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if (a[0] as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    if !is_self(t, a[0]) {
        return Err(Errno::ESRCH);
    }
    Ok(t.process.sched_policy as u64)
}

fn sys_sched_setaffinity(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if !is_self(t, a[0]) {
        return Err(Errno::ESRCH);
    }
    let len = (a[1] as usize).min(128);
    let mut mask = vec![0u8; len];
    t.mm.copy_in(a[2], &mut mask)?;
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let any = (0..ncpu.min(len * 8)).any(|c| mask[c / 8] & (1 << (c % 8)) != 0);
    if any {
        Ok(0)
    } else {
        Err(Errno::EINVAL)
    }
}

fn sys_getcpu(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != 0 {
        t.mm.write_u32(a[0], 0)?;
    }
    if a[1] != 0 {
        t.mm.write_u32(a[1], 0)?;
    }
    Ok(0)
}

fn sys_pkey_mprotect(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[3] as i64 != -1 {
        return Err(Errno::EINVAL);
    }
    t.mm.mprotect(a[0], a[1], a[2]).map(|_| 0)
}

fn sys_pkey_alloc(_: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] != 0 || a[1] & !3 != 0 {
        return Err(Errno::EINVAL);
    }
    Err(Errno::ENOSPC)
}

fn sys_pkey_free(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Err(Errno::EINVAL)
}

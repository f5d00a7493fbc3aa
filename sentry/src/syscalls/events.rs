//! Readiness and event syscalls: poll/ppoll, select/pselect6, epoll, eventfd, timerfd and
//! signalfd. The objects live in `vfs` (`epoll`, `eventfd`, `timerfd`, `signalfd`); every
//! wait here goes through `vfs::wait::wait_until`, which parks the task's waiter on the
//! watched files' queues, ends at the earliest timer deadline, and returns EINTR when a
//! signal interrupts it.
//!
//! The signal-mask arguments of ppoll, pselect6 and epoll_pwait(2) are checked (size, a
//! readable pointer) but not applied yet: the mask in force during the wait is the
//! thread's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fs::{nofile, O_CLOEXEC, O_NONBLOCK};
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;
use crate::vfs::epoll::{CtlOp, Epoll, EPOLLWAKEUP};
use crate::vfs::eventfd::{EventFd, EFD_SEMAPHORE};
use crate::vfs::file::{
    FileDescription, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, POLLRDBAND, POLLRDNORM,
    POLLWRBAND, POLLWRNORM,
};
use crate::vfs::signalfd::SignalFd;
use crate::vfs::timerfd::{
    TimerFd, CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM, CLOCK_MONOTONIC, CLOCK_REALTIME,
    CLOCK_REALTIME_ALARM,
};
use crate::vfs::wait::wait_until;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(7, poll, Full, "", sys_poll),
    syscall!(23, select, Full, "", sys_select),
    syscall!(213, epoll_create, Full, "", sys_epoll_create),
    syscall!(232, epoll_wait, Full, "", sys_epoll_wait),
    syscall!(233, epoll_ctl, Partial, "EPOLLEXCLUSIVE is accepted but every waiter is woken; EPOLLWAKEUP is ignored; no max_user_watches limit", sys_epoll_ctl),
    syscall!(270, pselect6, Partial, "the signal mask is checked but not applied during the wait", sys_pselect6),
    syscall!(271, ppoll, Partial, "the signal mask is checked but not applied during the wait", sys_ppoll),
    syscall!(281, epoll_pwait, Partial, "the signal mask is checked but not applied during the wait", sys_epoll_pwait),
    syscall!(282, signalfd, Full, "", sys_signalfd),
    syscall!(283, timerfd_create, Partial, "the *_ALARM clocks act as their plain clocks", sys_timerfd_create),
    syscall!(284, eventfd, Full, "", sys_eventfd),
    syscall!(286, timerfd_settime, Partial, "an absolute CLOCK_REALTIME deadline does not follow later changes of the wall clock; TFD_TIMER_CANCEL_ON_SET never cancels", sys_timerfd_settime),
    syscall!(287, timerfd_gettime, Full, "", sys_timerfd_gettime),
    syscall!(289, signalfd4, Full, "", sys_signalfd4),
    syscall!(290, eventfd2, Full, "", sys_eventfd2),
    syscall!(291, epoll_create1, Full, "", sys_epoll_create1),
    syscall!(441, epoll_pwait2, Partial, "the signal mask is checked but not applied during the wait", sys_epoll_pwait2),
];

/// sizeof(sigset_t) in the kernel ABI.
const SIGSET_SIZE: u64 = 8;
/// sizeof(struct epoll_event): packed on x86-64 (u32 events, u64 data).
const EPOLL_EVENT_SIZE: usize = 12;
/// Linux EP_MAX_EVENTS.
const EP_MAX_EVENTS: u64 = (i32::MAX as u64) / EPOLL_EVENT_SIZE as u64;
/// What select reports as readable, writable and exceptional (Linux POLL*_SET).
const POLLIN_SET: i16 = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR;
const POLLOUT_SET: i16 = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR;
const POLLEX_SET: i16 = POLLPRI;

// ---- time arguments ----

/// A timespec from the guest: EFAULT if unreadable, EINVAL unless 0 ≤ nsec < 10⁹ and
/// sec ≥ 0 (Linux timespec64_valid).
pub(super) fn read_timespec(t: &Task, addr: u64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    t.mm.copy_in(addr, &mut b)?;
    let (sec, nsec) = split_i64(&b);
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, nsec as u32))
}

fn split_i64(b: &[u8; 16]) -> (i64, i64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    (i64::from_le_bytes(lo), i64::from_le_bytes(hi))
}

fn timespec_bytes(d: Duration) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
    b[8..].copy_from_slice(&i64::from(d.subsec_nanos()).to_le_bytes());
    b
}

/// A relative timeout as a deadline (None waits for ever).
fn deadline_after(d: Option<Duration>) -> Option<Instant> {
    d.map(|d| {
        let now = Instant::now();
        // A timeout too large for the clock waits for ever in practice.
        now.checked_add(d)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400))
    })
}

/// A millisecond timeout argument (negative waits for ever).
fn deadline_ms(ms: u64) -> Option<Instant> {
    let ms = ms as i32;
    deadline_after((ms >= 0).then(|| Duration::from_millis(ms as u64)))
}

/// The time left until `deadline`, for the calls that write it back.
fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A signal-mask argument: EINVAL unless its size is sizeof(sigset_t), EFAULT if
/// unreadable. The mask is not applied (see the module doc).
fn check_sigmask(t: &Task, addr: u64, size: u64) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    if size != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    t.mm.read_u64(addr).map(|_| ())
}

// ---- poll ----

/// One pollfd: the file (None for a negative or closed fd), the events it asks for (with
/// POLLERR and POLLHUP), and whether the fd was non-negative (a closed one is POLLNVAL).
type Polled = (Option<Arc<dyn FileDescription>>, i16, bool);

/// Wait for readiness on a pollfd array.
fn do_poll(t: &Task, addr: u64, nfds: u64, deadline: Option<Instant>) -> SyscallResult {
    if nfds > nofile(t) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; nfds as usize * 8];
    t.mm.copy_in(addr, &mut raw)?;
    let polled: Vec<Polled> = raw
        .chunks_exact(8)
        .map(|c| {
            let fd = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let events = i16::from_le_bytes([c[4], c[5]]);
            let file = if fd < 0 { None } else { t.files.get(fd).ok() };
            (file, events | POLLERR | POLLHUP, fd >= 0)
        })
        .collect();
    let watch: Vec<(&dyn FileDescription, i16)> = polled
        .iter()
        .filter_map(|(f, ev, _)| f.as_deref().map(|f| (f, *ev)))
        .collect();
    let scan = || {
        let revents: Vec<i16> = polled
            .iter()
            .map(|(f, ev, open)| match f {
                Some(f) => f.poll() & ev,
                None if *open => POLLNVAL,
                None => 0,
            })
            .collect();
        let ready = revents.iter().filter(|&&r| r != 0).count() as u64;
        (ready > 0).then_some((ready, revents))
    };
    let (ready, revents) = wait_until(&t.waiter, &watch, deadline, scan)?
        .unwrap_or_else(|| (0, vec![0; polled.len()]));
    for (c, r) in raw.chunks_exact_mut(8).zip(&revents) {
        c[6..8].copy_from_slice(&r.to_le_bytes());
    }
    t.mm.copy_out(addr, &raw)?;
    Ok(ready)
}

fn sys_poll(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_poll(t, a[0], a[1], deadline_ms(a[2]))
}

fn sys_ppoll(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = match a[2] {
        0 => None,
        addr => Some(read_timespec(t, addr)?),
    };
    check_sigmask(t, a[3], a[4])?;
    let deadline = deadline_after(timeout);
    let r = do_poll(t, a[0], a[1], deadline);
    write_back_timeout(t, a[2], timeout, deadline, TimeFormat::Timespec);
    r
}

#[derive(Clone, Copy)]
enum TimeFormat {
    Timespec,
    Timeval,
}

/// Linux poll_select_finish: a non-zero timeout is overwritten with the time left (a
/// failure to write it is ignored).
fn write_back_timeout(
    t: &Task,
    addr: u64,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    fmt: TimeFormat,
) {
    let (Some(timeout), Some(deadline)) = (timeout, deadline) else {
        return;
    };
    if timeout.is_zero() {
        return;
    }
    let left = time_left(deadline);
    let b = match fmt {
        TimeFormat::Timespec => timespec_bytes(left),
        TimeFormat::Timeval => {
            let mut b = timespec_bytes(left);
            b[8..].copy_from_slice(&i64::from(left.subsec_micros()).to_le_bytes());
            b
        }
    };
    let _ = t.mm.copy_out(addr, &b);
}

// ---- select ----

/// The fd sets of select: (address, bits) for readable, writable and exceptional.
struct FdSets {
    addr: [u64; 3],
    bits: [Vec<u64>; 3],
}

fn do_select(t: &Task, nfds: u64, sets: [u64; 3], deadline: Option<Instant>) -> SyscallResult {
    let n = nfds as i32;
    if n < 0 {
        return Err(Errno::EINVAL);
    }
    // Linux caps n at the fd table's size (64, doubling as it grows).
    let table = t.files.list().last().map_or(0, |(fd, _)| *fd as usize + 1);
    let n = (n as usize).min(table.next_power_of_two().max(64));
    let words = n.div_ceil(64);
    let mut fs = FdSets {
        addr: sets,
        bits: [vec![0; words], vec![0; words], vec![0; words]],
    };
    for (addr, bits) in fs.addr.iter().zip(fs.bits.iter_mut()) {
        if *addr == 0 {
            continue;
        }
        let mut raw = vec![0u8; words * 8];
        t.mm.copy_in(*addr, &mut raw)?;
        for (w, c) in bits.iter_mut().zip(raw.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        // Bits at and above n are not looked at.
        if !n.is_multiple_of(64) {
            if let Some(last) = bits.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
    }
    // Every fd in any set must be open (Linux max_select_fd → EBADF).
    let mut polled: Vec<(usize, Arc<dyn FileDescription>, i16)> = Vec::new();
    for fd in 0..n {
        let (w, bit) = (fd / 64, 1u64 << (fd % 64));
        let want: [bool; 3] = std::array::from_fn(|s| fs.bits[s][w] & bit != 0);
        if !want.iter().any(|&x| x) {
            continue;
        }
        let f = t.files.get(fd as i32)?;
        let events = [POLLIN, POLLOUT, POLLPRI]
            .iter()
            .zip(want)
            .filter(|(_, on)| *on)
            .fold(0, |acc, (ev, _)| acc | ev);
        polled.push((fd, f, events));
    }
    let watch: Vec<(&dyn FileDescription, i16)> =
        polled.iter().map(|(_, f, ev)| (&**f, *ev)).collect();
    let scan = || {
        let mut out: [Vec<u64>; 3] = [vec![0; words], vec![0; words], vec![0; words]];
        let mut count = 0u64;
        for (fd, f, _) in &polled {
            let (w, bit) = (fd / 64, 1u64 << (fd % 64));
            let mask = f.poll();
            for (s, set) in [POLLIN_SET, POLLOUT_SET, POLLEX_SET].iter().enumerate() {
                if fs.bits[s][w] & bit != 0 && mask & set != 0 {
                    out[s][w] |= bit;
                    count += 1;
                }
            }
        }
        (count > 0).then_some((count, out))
    };
    let (count, out) = wait_until(&t.waiter, &watch, deadline, scan)?
        .unwrap_or_else(|| (0, [vec![0; words], vec![0; words], vec![0; words]]));
    for (addr, bits) in fs.addr.iter().zip(out) {
        if *addr == 0 {
            continue;
        }
        let raw: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        t.mm.copy_out(*addr, &raw)?;
    }
    Ok(count)
}

fn sys_select(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = match a[4] {
        0 => None,
        addr => {
            let mut b = [0u8; 16];
            t.mm.copy_in(addr, &mut b)?;
            let (sec, usec) = split_i64(&b);
            // Linux normalises the microseconds before checking the result.
            let sec = sec.saturating_add(usec / 1_000_000);
            let nsec = (usec % 1_000_000) * 1000;
            if sec < 0 || nsec < 0 {
                return Err(Errno::EINVAL);
            }
            Some(Duration::new(sec as u64, nsec as u32))
        }
    };
    let deadline = deadline_after(timeout);
    let r = do_select(t, a[0], [a[1], a[2], a[3]], deadline);
    write_back_timeout(t, a[4], timeout, deadline, TimeFormat::Timeval);
    r
}

fn sys_pselect6(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = match a[4] {
        0 => None,
        addr => Some(read_timespec(t, addr)?),
    };
    if a[5] != 0 {
        // struct { const sigset_t *ss; size_t ss_len; }
        let mut b = [0u8; 16];
        t.mm.copy_in(a[5], &mut b)?;
        let (ss, len) = split_i64(&b);
        check_sigmask(t, ss as u64, len as u64)?;
    }
    let deadline = deadline_after(timeout);
    let r = do_select(t, a[0], [a[1], a[2], a[3]], deadline);
    write_back_timeout(t, a[4], timeout, deadline, TimeFormat::Timespec);
    r
}

// ---- epoll ----

fn new_epoll(t: &Task, cloexec: bool) -> SyscallResult {
    let ep: Arc<dyn FileDescription> = Arc::new(Epoll::new());
    t.files.install(ep, cloexec, nofile(t)).map(|fd| fd as u64)
}

fn sys_epoll_create(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if a[0] as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    new_epoll(t, false)
}

fn sys_epoll_create1(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = a[0] as u32;
    if flags & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    new_epoll(t, flags & O_CLOEXEC != 0)
}

fn sys_epoll_ctl(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (epfd, op, fd, event) = (a[0] as i32, a[1] as u32 as u64, a[2] as i32, a[3]);
    // Linux copies the event for every op but DEL, before looking at the fds.
    let (events, data) = if op == 2 {
        (0, 0)
    } else {
        let mut b = [0u8; EPOLL_EVENT_SIZE];
        t.mm.copy_in(event, &mut b)?;
        let mut ev = [0u8; 4];
        let mut data = [0u8; 8];
        ev.copy_from_slice(&b[..4]);
        data.copy_from_slice(&b[4..]);
        // EPOLLWAKEUP needs CAP_BLOCK_SUSPEND; without it Linux drops the flag quietly.
        (
            u32::from_le_bytes(ev) & !EPOLLWAKEUP,
            u64::from_le_bytes(data),
        )
    };
    let epf = t.files.get(epfd)?;
    let target = t.files.get(fd)?;
    if !target.pollable() {
        return Err(Errno::EPERM);
    }
    let ep = epf.as_any().downcast_ref::<Epoll>().ok_or(Errno::EINVAL)?;
    if Arc::ptr_eq(&epf, &target) {
        return Err(Errno::EINVAL);
    }
    let op = CtlOp::from_raw(op).ok_or(Errno::EINVAL)?;
    ep.ctl(op, fd, &target, events, data).map(|_| 0)
}

fn do_epoll_wait(
    t: &Task,
    epfd: i32,
    events: u64,
    max: u64,
    deadline: Option<Instant>,
) -> SyscallResult {
    let max = max as i32;
    if max <= 0 || max as u64 > EP_MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    // access_ok: the whole array must lie in the user half.
    let len = max as u64 * EPOLL_EVENT_SIZE as u64;
    if events
        .checked_add(len)
        .is_none_or(|end| end > crate::arch::USER_ADDR_END)
    {
        return Err(Errno::EFAULT);
    }
    let f = t.files.get(epfd)?;
    let ep = f.as_any().downcast_ref::<Epoll>().ok_or(Errno::EINVAL)?;
    let ready = wait_until(&t.waiter, &[(ep, POLLIN)], deadline, || {
        let v = ep.harvest(max as usize);
        (!v.is_empty()).then_some(v)
    })?
    .unwrap_or_default();
    let mut raw = Vec::with_capacity(ready.len() * EPOLL_EVENT_SIZE);
    for (ev, data) in &ready {
        raw.extend_from_slice(&ev.to_le_bytes());
        raw.extend_from_slice(&data.to_le_bytes());
    }
    t.mm.copy_out(events, &raw)?;
    Ok(ready.len() as u64)
}

fn sys_epoll_wait(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_epoll_wait(t, a[0] as i32, a[1], a[2], deadline_ms(a[3]))
}

fn sys_epoll_pwait(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    check_sigmask(t, a[4], a[5])?;
    do_epoll_wait(t, a[0] as i32, a[1], a[2], deadline_ms(a[3]))
}

fn sys_epoll_pwait2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = match a[3] {
        0 => None,
        addr => Some(read_timespec(t, addr)?),
    };
    check_sigmask(t, a[4], a[5])?;
    do_epoll_wait(t, a[0] as i32, a[1], a[2], deadline_after(timeout))
}

// ---- eventfd ----

fn do_eventfd(t: &Task, initval: u64, flags: u64) -> SyscallResult {
    let flags = flags as u32;
    if flags & !(O_CLOEXEC | O_NONBLOCK | EFD_SEMAPHORE) != 0 {
        return Err(Errno::EINVAL);
    }
    let f: Arc<dyn FileDescription> = EventFd::new(initval as u32, flags);
    t.files
        .install(f, flags & O_CLOEXEC != 0, nofile(t))
        .map(|fd| fd as u64)
}

fn sys_eventfd(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_eventfd(t, a[0], 0)
}

fn sys_eventfd2(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_eventfd(t, a[0], a[1])
}

// ---- timerfd ----

const TFD_TIMER_ABSTIME: u32 = 1;
const TFD_TIMER_CANCEL_ON_SET: u32 = 2;

fn sys_timerfd_create(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (clock, flags) = (a[0] as i32, a[1] as u32);
    let known = [
        CLOCK_REALTIME,
        CLOCK_MONOTONIC,
        CLOCK_BOOTTIME,
        CLOCK_REALTIME_ALARM,
        CLOCK_BOOTTIME_ALARM,
    ];
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 || !known.contains(&clock) {
        return Err(Errno::EINVAL);
    }
    let f: Arc<dyn FileDescription> = Arc::new(TimerFd::new(clock, flags));
    t.files
        .install(f, flags & O_CLOEXEC != 0, nofile(t))
        .map(|fd| fd as u64)
}

fn timer_of(f: &Arc<dyn FileDescription>) -> Result<&TimerFd, Errno> {
    // Linux: a descriptor that is not a timerfd is EINVAL.
    f.as_any().downcast_ref::<TimerFd>().ok_or(Errno::EINVAL)
}

/// struct itimerspec: it_interval, then it_value.
pub(super) fn itimerspec_bytes(value: Duration, interval: Duration) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&timespec_bytes(interval));
    b[16..].copy_from_slice(&timespec_bytes(value));
    b
}

fn sys_timerfd_settime(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd, flags, new, old) = (a[0] as i32, a[1] as u32, a[2], a[3]);
    let interval = read_timespec(t, new);
    let value = read_timespec(t, new.wrapping_add(16));
    // A bad pointer is EFAULT before a bad value is EINVAL.
    for r in [&interval, &value] {
        if r == &Err(Errno::EFAULT) {
            return Err(Errno::EFAULT);
        }
    }
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let (interval, value) = (interval?, value?);
    let f = t.files.get(fd)?;
    let timer = timer_of(&f)?;
    let (old_value, old_interval) = timer.set(value, interval, flags & TFD_TIMER_ABSTIME != 0);
    if old != 0 {
        t.mm.copy_out(old, &itimerspec_bytes(old_value, old_interval))?;
    }
    Ok(0)
}

fn sys_timerfd_gettime(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    let (value, interval) = timer_of(&f)?.get();
    t.mm.copy_out(a[1], &itimerspec_bytes(value, interval))
        .map(|_| 0)
}

// ---- signalfd ----

fn do_signalfd4(t: &Task, fd: i32, mask_addr: u64, size: u64, flags: u64) -> SyscallResult {
    if size != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let mask = t.mm.read_u64(mask_addr)?;
    let flags = flags as u32;
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if fd == -1 {
        let f: Arc<dyn FileDescription> = Arc::new(SignalFd::new(mask, flags));
        return t
            .files
            .install(f, flags & O_CLOEXEC != 0, nofile(t))
            .map(|fd| fd as u64);
    }
    let f = t.files.get(fd)?;
    let sfd = f.as_any().downcast_ref::<SignalFd>().ok_or(Errno::EINVAL)?;
    sfd.set_mask(mask);
    Ok(fd as u64)
}

fn sys_signalfd(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_signalfd4(t, a[0] as i32, a[1], a[2], 0)
}

fn sys_signalfd4(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_signalfd4(t, a[0] as i32, a[1], a[2], a[3])
}

//! timerfd: a timer whose expirations are read as a 64-bit count, as Linux fs/timerfd.c.
//!
//! No thread fires the timer. Expirations are computed from the deadline whenever the
//! timer is looked at (read, poll, `next_deadline`), and waits that include a timerfd end
//! at its deadline (`FileDescription::next_deadline`), so a blocked reader or epoll_wait
//! wakes on time. Looking at the timer after it expired notifies its queue, which is what
//! an edge-triggered epoll sees as the expiry.
//!
//! The guest's clocks are the host's (see `syscalls::time`); deadlines are kept as host
//! `Instant`s (CLOCK_MONOTONIC). An absolute CLOCK_REALTIME deadline is converted once when
//! it is set, so a later change of the wall clock does not move it (and
//! TFD_TIMER_CANCEL_ON_SET never cancels).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::file::{FileDescription, Stat, POLLIN};
use crate::abi::Errno;
use crate::state::files::{FileState, TimerFdState};
use crate::state::{SaveContext, StateError};
use crate::waiter::WaitQueue;

pub const CLOCK_REALTIME: i32 = 0;
pub const CLOCK_MONOTONIC: i32 = 1;
pub const CLOCK_BOOTTIME: i32 = 7;
pub const CLOCK_REALTIME_ALARM: i32 = 8;
pub const CLOCK_BOOTTIME_ALARM: i32 = 9;

#[derive(Default)]
struct State {
    /// The next expiry; None when disarmed.
    next: Option<Instant>,
    /// Zero for a one-shot timer.
    interval: Duration,
    /// Expirations not yet read.
    ticks: u64,
}

impl State {
    /// Account for expirations up to `now`; whether there were new ones.
    fn expire(&mut self, now: Instant) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        if now < next {
            return false;
        }
        let late = now.duration_since(next).as_nanos();
        let step = self.interval.as_nanos();
        let n = match late.checked_div(step) {
            None => {
                self.next = None;
                1
            }
            Some(periods) => {
                let n = 1 + periods;
                self.next = next.checked_add(nanos(step.saturating_mul(n)));
                n
            }
        };
        self.ticks = self
            .ticks
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        true
    }

    fn remaining(&self, now: Instant) -> Duration {
        self.next
            .map(|n| n.saturating_duration_since(now))
            .unwrap_or_default()
    }
}

/// A duration in nanoseconds, saturating (584 years).
fn nanos_u64(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (n % 1_000_000_000) as u32)
}

/// The host's reading of `clock` (the guest's clocks are the host's).
pub fn clock_now(clock: i32) -> Duration {
    let host = match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_ALARM => libc::CLOCK_REALTIME,
        CLOCK_BOOTTIME | CLOCK_BOOTTIME_ALARM => libc::CLOCK_BOOTTIME,
        _ => libc::CLOCK_MONOTONIC,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(host, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

pub struct TimerFd {
    clock: i32,
    state: Mutex<State>,
    queue: WaitQueue,
    flags: AtomicU32,
}

impl TimerFd {
    /// `clock` is one the caller has checked; `flags` may hold O_NONBLOCK.
    pub fn new(clock: i32, flags: u32) -> TimerFd {
        TimerFd {
            clock,
            state: Mutex::new(State::default()),
            queue: WaitQueue::new(),
            flags: AtomicU32::new(libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK as u32)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bring the expiration count up to date, waking watchers if it grew.
    fn refresh(&self) -> MutexGuard<'_, State> {
        let mut g = self.lock();
        if g.expire(Instant::now()) {
            drop(g);
            self.queue.notify_all();
            g = self.lock();
        }
        g
    }

    /// timerfd_settime: arm (a zero `value` disarms) and return the old setting as
    /// (time left, interval). `value` is relative, or a time of the timer's clock when
    /// `absolute`.
    pub fn set(&self, value: Duration, interval: Duration, absolute: bool) -> (Duration, Duration) {
        let now = Instant::now();
        let mut g = self.lock();
        g.expire(now);
        let old = (g.remaining(now), g.interval);
        g.ticks = 0;
        g.interval = interval;
        g.next = if value.is_zero() {
            None
        } else if absolute {
            let clock = clock_now(self.clock);
            if value >= clock {
                now.checked_add(value - clock)
            } else {
                Some(now.checked_sub(clock - value).unwrap_or(now))
            }
        } else {
            now.checked_add(value)
        };
        drop(g);
        self.queue.notify_all();
        old
    }

    /// A timer put back from a checkpoint: `remaining` until the next expiry (None:
    /// disarmed), counted from now, so time the sandbox spent checkpointed does not
    /// count; `ticks` expirations not yet read.
    pub fn restore(
        clock: i32,
        flags: u32,
        remaining: Option<Duration>,
        interval: Duration,
        ticks: u64,
    ) -> TimerFd {
        let t = TimerFd::new(clock, 0);
        t.flags.store(flags, Ordering::Relaxed);
        let mut g = t.lock();
        g.next = remaining.and_then(|r| Instant::now().checked_add(r));
        g.interval = interval;
        g.ticks = ticks;
        drop(g);
        t
    }

    /// For a checkpoint: the clock, the time to the next expiry (None: disarmed), the
    /// interval and the expirations not yet read, brought up to date now.
    pub fn saved(&self) -> (i32, Option<Duration>, Duration, u64) {
        let g = self.refresh();
        let now = Instant::now();
        (
            self.clock,
            g.next.map(|n| n.saturating_duration_since(now)),
            g.interval,
            g.ticks,
        )
    }

    /// timerfd_gettime: (time left, interval).
    pub fn get(&self) -> (Duration, Duration) {
        let g = self.refresh();
        (g.remaining(Instant::now()), g.interval)
    }
}

impl FileDescription for TimerFd {
    fn read(&self, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut g = self.refresh();
        if g.ticks == 0 {
            return Err(Errno::EAGAIN);
        }
        let n = std::mem::take(&mut g.ticks);
        buf[..8].copy_from_slice(&n.to_ne_bytes());
        Ok(8)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_stat())
    }

    fn poll(&self) -> i16 {
        if self.refresh().ticks > 0 {
            POLLIN
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.refresh().next
    }

    fn sync(&self) -> Result<(), Errno> {
        // Linux: anonymous inodes have no fsync → EINVAL.
        Err(Errno::EINVAL)
    }

    fn path(&self) -> String {
        "anon_inode:[timerfd]".to_string()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        let (clock, remaining, interval, ticks) = self.saved();
        Ok(FileState::TimerFd(TimerFdState {
            clock,
            remaining_ns: remaining.map(nanos_u64),
            interval_ns: nanos_u64(interval),
            ticks,
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_then_periodic() {
        let t = TimerFd::new(CLOCK_MONOTONIC, 0);
        let mut b = [0u8; 8];
        assert_eq!(t.read(&mut b, None), Err(Errno::EAGAIN));
        t.set(Duration::from_millis(5), Duration::ZERO, false);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(t.poll(), POLLIN);
        assert_eq!(t.read(&mut b, None), Ok(8));
        assert_eq!(u64::from_ne_bytes(b), 1);
        assert_eq!(t.next_deadline(), None);
        t.set(Duration::from_millis(2), Duration::from_millis(2), false);
        std::thread::sleep(Duration::from_millis(9));
        assert_eq!(t.read(&mut b, None), Ok(8));
        assert!(u64::from_ne_bytes(b) >= 3);
        assert_eq!(t.get().1, Duration::from_millis(2));
        t.set(Duration::ZERO, Duration::from_millis(2), false);
        // Linux keeps the interval of a disarmed timer.
        assert_eq!(t.get(), (Duration::ZERO, Duration::from_millis(2)));
    }

    #[test]
    fn absolute_deadline_in_the_past_expires_at_once() {
        let t = TimerFd::new(CLOCK_REALTIME, 0);
        t.set(Duration::from_secs(1), Duration::ZERO, true);
        assert_eq!(t.poll(), POLLIN);
    }
}

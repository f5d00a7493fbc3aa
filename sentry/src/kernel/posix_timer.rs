//! A process's timers: POSIX per-process timers (timer_create) and its ITIMER_REAL
//! (setitimer, alarm), which is one more timer here, under an id the guest cannot name.
//! A POSIX timer's expiry queues a signal carrying the timer's id and value (SI_TIMER),
//! to the process or to one of its threads (SIGEV_THREAD_ID, how glibc's SIGEV_THREAD
//! and Ruby's timer thread use them), or nothing (SIGEV_NONE); while that signal is still
//! queued, later expiries add to its overrun count instead, as on Linux. ITIMER_REAL
//! sends SIGALRM from the kernel (SI_KERNEL). One host thread per process with an armed
//! timer sleeps until the earliest deadline. Timers are not inherited by fork; execve
//! deletes the POSIX ones and keeps ITIMER_REAL.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::sigqueue::{PendingSignals, Queued, SigInfo};
use super::thread_group::ThreadGroup;

/// Timers one process may hold (Linux: bounded by RLIMIT_SIGPENDING).
pub const MAX_TIMERS: usize = 4096;
/// ITIMER_REAL's id: below every id timer_create hands out.
pub const ITIMER_REAL_ID: i32 = -1;
const SIGALRM: u8 = 14;

/// The deadline `after` from now; past what the clock can hold, a century away (never,
/// in practice: the guest chose it, and `Instant` arithmetic must not overflow).
pub fn deadline_in(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Where an expiry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Notify {
    /// SIGEV_NONE: nothing; the timer is only read.
    None,
    /// SIGEV_SIGNAL: `signo` to the process.
    Process { signo: u8 },
    /// SIGEV_THREAD_ID: `signo` to thread `tid` of the process.
    Thread { signo: u8, tid: i32 },
    /// ITIMER_REAL: SIGALRM to the process, from the kernel.
    Alarm,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timer {
    /// The clock it was made on (for absolute settings).
    pub clock: i32,
    pub notify: Notify,
    /// sigev_value.
    pub value: u64,
    #[serde(skip)]
    deadline: Option<Instant>,
    pub interval: Duration,
    /// timer_getoverrun: the overrun count of the last expiry signalled.
    pub overrun: i32,
}

impl Timer {
    pub fn new(clock: i32, notify: Notify, value: u64) -> Timer {
        Timer {
            clock,
            notify,
            value,
            deadline: None,
            interval: Duration::ZERO,
            overrun: 0,
        }
    }

    /// (time left, interval): timer_gettime's it_value and it_interval.
    pub fn get(&self) -> (Duration, Duration) {
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        (left, self.interval)
    }
}

#[derive(Default)]
struct Inner {
    timers: BTreeMap<i32, Timer>,
    thread: bool,
}

/// One process's timers.
#[derive(Default)]
pub struct PosixTimers {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl PosixTimers {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add the timer `make` builds for its id, the lowest free one. None past
    /// MAX_TIMERS.
    pub fn create(&self, make: impl FnOnce(i32) -> Timer) -> Option<i32> {
        let mut g = self.lock();
        if g.timers.len() >= MAX_TIMERS {
            return None;
        }
        let id = (0..).find(|i| !g.timers.contains_key(i))?;
        g.timers.insert(id, make(id));
        Some(id)
    }

    /// The clock timer `id` runs on.
    pub fn clock(&self, id: i32) -> Option<i32> {
        self.lock().timers.get(&id).map(|t| t.clock)
    }

    /// Put back a checkpoint's timer `id`, `left` from now (None: disarmed).
    pub fn restore(group: &Arc<ThreadGroup>, id: i32, mut timer: Timer, left: Option<Duration>) {
        timer.deadline = left.and_then(|l| Instant::now().checked_add(l));
        let armed = timer.deadline.is_some();
        group.posix_timers.lock().timers.insert(id, timer);
        if armed {
            Self::wake(group);
        }
    }

    pub fn get(&self, id: i32) -> Option<(Duration, Duration)> {
        self.lock().timers.get(&id).map(Timer::get)
    }

    pub fn overrun(&self, id: i32) -> Option<i32> {
        self.lock().timers.get(&id).map(|t| t.overrun)
    }

    /// Every timer with its time left, for a checkpoint.
    pub fn saved(&self) -> Vec<(i32, Timer, Option<Duration>)> {
        self.lock()
            .timers
            .iter()
            .map(|(id, t)| {
                let left = t
                    .deadline
                    .map(|d| d.saturating_duration_since(Instant::now()));
                (*id, t.clone(), left)
            })
            .collect()
    }

    pub fn delete(&self, id: i32) -> bool {
        let gone = self.lock().timers.remove(&id).is_some();
        self.changed.notify_all();
        gone
    }

    /// execve: every POSIX timer goes; ITIMER_REAL stays.
    pub fn clear(&self) {
        self.lock().timers.retain(|id, _| *id == ITIMER_REAL_ID);
        self.changed.notify_all();
    }

    /// ITIMER_REAL now: (time left, interval).
    pub fn real(&self) -> (Duration, Duration) {
        self.get(ITIMER_REAL_ID).unwrap_or_default()
    }

    /// setitimer(ITIMER_REAL) / alarm: arm (`value` > 0) or disarm; returns what `real`
    /// returned before.
    pub fn set_real(
        group: &Arc<ThreadGroup>,
        value: Duration,
        interval: Duration,
    ) -> (Duration, Duration) {
        group
            .posix_timers
            .lock()
            .timers
            .entry(ITIMER_REAL_ID)
            .or_insert_with(|| Timer::new(0, Notify::Alarm, 0));
        let deadline = (!value.is_zero()).then(|| deadline_in(value));
        Self::set(group, ITIMER_REAL_ID, deadline, interval).unwrap_or_default()
    }

    /// Arm timer `id` of `group` to expire at `deadline` (None: disarm), then every
    /// `interval`. Returns what `get` returned before; None if there is no such timer.
    pub fn set(
        group: &Arc<ThreadGroup>,
        id: i32,
        deadline: Option<Instant>,
        interval: Duration,
    ) -> Option<(Duration, Duration)> {
        let this = &group.posix_timers;
        let mut g = this.lock();
        let timer = g.timers.get_mut(&id)?;
        let old = timer.get();
        timer.deadline = deadline;
        timer.interval = interval;
        timer.overrun = 0;
        let notify = timer.notify;
        drop(g);
        // An expiry of the earlier setting still waiting is not delivered.
        match notify {
            Notify::None | Notify::Alarm => {}
            Notify::Process { signo } => group.pending.remove_timer(signo, id),
            Notify::Thread { signo, tid } => {
                group.with_member_pending(tid, |q| q.remove_timer(signo, id));
            }
        }
        if deadline.is_some() {
            Self::wake(group);
        } else {
            this.changed.notify_all();
        }
        Some(old)
    }

    /// Make sure the group's timer thread runs, and have it look at the deadlines again.
    fn wake(group: &Arc<ThreadGroup>) {
        let this = &group.posix_timers;
        let mut g = this.lock();
        if !g.thread {
            let weak = Arc::downgrade(group);
            let spawned = std::thread::Builder::new()
                .name(format!("timers-{}", group.tgid))
                .spawn(move || run(weak));
            g.thread = spawned.is_ok();
        }
        drop(g);
        this.changed.notify_all();
    }
}

/// The timer thread: fire what is due, sleep until the next deadline; leave when the
/// process is gone.
fn run(group: Weak<ThreadGroup>) {
    loop {
        let Some(g) = group.upgrade() else { return };
        if g.count() == 0 {
            g.posix_timers.lock().thread = false;
            return;
        }
        let this = &g.posix_timers;
        let mut inner = this.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, t) in inner.timers.iter_mut() {
            let Some(d) = t.deadline else { continue };
            if d > now {
                continue;
            }
            // Expiries since the deadline: one, and one per whole interval past it.
            let (count, next) = if t.interval.is_zero() {
                (1u64, None)
            } else {
                let late = now.duration_since(d).as_nanos() / t.interval.as_nanos().max(1);
                let count = u64::try_from(late).unwrap_or(u64::MAX).saturating_add(1);
                let step = t
                    .interval
                    .saturating_mul(u32::try_from(count).unwrap_or(u32::MAX));
                (count, d.checked_add(step))
            };
            t.deadline = next;
            due.push((*id, t.notify, t.value, count));
        }
        let next = inner.timers.values().filter_map(|t| t.deadline).min();
        drop(inner);
        for (id, notify, value, count) in due {
            let overrun = fire(&g, id, notify, value, count);
            if let Some(t) = this.lock().timers.get_mut(&id) {
                t.overrun = overrun;
            }
        }
        let inner = this.lock();
        // Disarmed, or far off: look again now and then (the process may end).
        let wait = next.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        });
        let _ = this.changed.wait_timeout(inner, wait);
    }
}

/// Signal `count` expiries of timer `id`: add them to its signal still queued, or queue
/// one carrying `count - 1` overruns. Returns the overrun count signalled.
fn fire(g: &ThreadGroup, id: i32, notify: Notify, value: u64, count: u64) -> i32 {
    let extra = i32::try_from(count.saturating_sub(1)).unwrap_or(i32::MAX);
    let (signo, queue_of): (u8, Option<i32>) = match notify {
        Notify::None => return 0,
        Notify::Alarm => {
            g.signal_group(SigInfo::kernel(SIGALRM));
            return 0;
        }
        Notify::Process { signo } => (signo, None),
        Notify::Thread { signo, tid } => (signo, Some(tid)),
    };
    let bump = |q: &PendingSignals| q.bump_timer(signo, id, count);
    let bumped = match queue_of {
        None => bump(&g.pending),
        Some(tid) => g.with_member_pending(tid, bump).flatten(),
    };
    if let Some(total) = bumped {
        return total;
    }
    let info = SigInfo::timer(signo, id, extra, value);
    let queued = match queue_of {
        None => g.signal_group(info),
        // A thread that has gone: the process gets it (Linux keeps it for the group).
        Some(tid) => g
            .signal_thread(tid, info.clone())
            .unwrap_or_else(|| g.signal_group(info)),
    };
    if queued == Queued::Full {
        return 0;
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_lowest_free() {
        let t = PosixTimers::default();
        let n = Notify::None;
        assert_eq!(t.create(|_| Timer::new(1, n, 0)), Some(0));
        assert_eq!(t.create(|_| Timer::new(1, n, 0)), Some(1));
        assert!(t.delete(0));
        assert_eq!(t.create(|_| Timer::new(1, n, 0)), Some(0));
        assert!(!t.delete(7));
    }
}

//! A process's ITIMER_REAL (setitimer, alarm): SIGALRM to the process when it expires,
//! again every interval if one is set. A small host thread per process that has armed it
//! waits for the deadline; it goes away with the process. Timers are not inherited by
//! fork (the child's group starts without one) and survive execve (the group stays).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// SIGALRM on x86-64.
const SIGALRM: u8 = 14;
use super::thread_group::ThreadGroup;

#[derive(Default)]
struct State {
    deadline: Option<Instant>,
    interval: Duration,
    thread: bool,
}

/// One process's real-time interval timer.
#[derive(Default)]
pub struct RealTimer {
    state: Mutex<State>,
    changed: Condvar,
}

impl RealTimer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (time left, interval) now.
    pub fn get(&self) -> (Duration, Duration) {
        let s = self.lock();
        let left = s
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        (left, s.interval)
    }

    /// Arm (`value` > 0) or disarm (`value` = 0) the timer of `group`; returns what
    /// `get` returned before.
    pub fn set(
        group: &Arc<ThreadGroup>,
        value: Duration,
        interval: Duration,
    ) -> (Duration, Duration) {
        let timer = &group.itimer;
        let old = timer.get();
        let mut s = timer.lock();
        // A value past what the host clock can hold (the guest chose it) never expires.
        s.deadline = (!value.is_zero())
            .then(|| Instant::now().checked_add(value))
            .flatten();
        s.interval = interval;
        if s.deadline.is_some() && !s.thread {
            let weak = Arc::downgrade(group);
            let spawned = std::thread::Builder::new()
                .name(format!("itimer-{}", group.tgid))
                .spawn(move || run(weak));
            s.thread = spawned.is_ok();
        }
        timer.changed.notify_all();
        old
    }
}

/// The timer thread: fire at each deadline; leave when the process is gone.
fn run(group: Weak<ThreadGroup>) {
    loop {
        let Some(g) = group.upgrade() else { return };
        if g.count() == 0 {
            g.itimer.lock().thread = false;
            return;
        }
        let timer = &g.itimer;
        let mut s = timer.lock();
        let now = Instant::now();
        match s.deadline {
            Some(d) if now >= d => {
                s.deadline = (!s.interval.is_zero())
                    .then(|| d.max(now).checked_add(s.interval))
                    .flatten();
                drop(s);
                g.signal_group(super::sigqueue::SigInfo::kernel(SIGALRM));
            }
            Some(d) => {
                let _ = timer
                    .changed
                    .wait_timeout(s, (d - now).min(Duration::from_secs(1)));
            }
            // Disarmed: look again now and then (the process may end, or re-arm).
            None => {
                let _ = timer.changed.wait_timeout(s, Duration::from_secs(1));
            }
        }
    }
}

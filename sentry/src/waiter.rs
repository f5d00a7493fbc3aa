//! Blocking without losing wake-ups: a per-thread [`Waiter`] that a blocking syscall parks
//! on, and a [`WaitQueue`] that objects (pipes, eventfds, futexes, epoll instances) use to
//! wake the waiters interested in them.
//!
//! The pattern for a blocking call is: register the thread's waiter on every queue it
//! cares about, re-check the condition, then `wait`; on wake-up check again. A
//! notification that arrives between the check and the wait is remembered, so nothing is
//! lost. `interrupt` ends any wait at once (a signal is pending, or the thread group is
//! exiting) and stays set until the thread clears it.
//!
//! Lock order: a queue's lock may be held while taking a waiter's lock, never the reverse.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

/// Why a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Something the thread watches changed: check again.
    Notified,
    /// The deadline passed.
    TimedOut,
    /// The thread must stop waiting (EINTR, or it is exiting).
    Interrupted,
}

#[derive(Default)]
struct State {
    notified: bool,
    interrupted: bool,
}

/// One thread's parking spot.
#[derive(Default)]
pub struct Waiter {
    state: Mutex<State>,
    cv: Condvar,
    /// Whether the thread is parked in `wait` now (/proc's S state).
    parked: std::sync::atomic::AtomicBool,
}

impl Waiter {
    pub fn new() -> Arc<Waiter> {
        Arc::new(Waiter::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wake the thread if it waits; otherwise its next wait returns at once.
    pub fn notify(&self) {
        self.lock().notified = true;
        self.cv.notify_all();
    }

    /// Make the current and every later wait return `Interrupted` until cleared.
    pub fn interrupt(&self) {
        self.lock().interrupted = true;
        self.cv.notify_all();
    }

    /// Forget an interruption (the thread has dealt with it).
    pub fn clear_interrupt(&self) {
        self.lock().interrupted = false;
    }

    pub fn is_interrupted(&self) -> bool {
        self.lock().interrupted
    }

    /// Forget a pending notification (before a fresh check of the condition).
    pub fn reset(&self) {
        self.lock().notified = false;
    }

    /// Whether the thread sleeps in `wait` right now.
    pub fn is_parked(&self) -> bool {
        self.parked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Park until notified, interrupted or `deadline`. Consumes the notification.
    pub fn wait(&self, deadline: Option<Instant>) -> Wake {
        self.parked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let woke = self.park(deadline);
        self.parked
            .store(false, std::sync::atomic::Ordering::Relaxed);
        woke
    }

    fn park(&self, deadline: Option<Instant>) -> Wake {
        let mut st = self.lock();
        loop {
            if st.interrupted {
                return Wake::Interrupted;
            }
            if st.notified {
                st.notified = false;
                return Wake::Notified;
            }
            match deadline {
                None => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Wake::TimedOut;
                    }
                    st = self
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// The waiters interested in one object.
#[derive(Default)]
pub struct WaitQueue {
    waiters: Mutex<Vec<Weak<Waiter>>>,
}

impl WaitQueue {
    pub fn new() -> WaitQueue {
        WaitQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Waiter>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a waiter (once; registering twice is harmless).
    pub fn register(&self, w: &Arc<Waiter>) {
        let mut ws = self.lock();
        ws.retain(|x| x.strong_count() > 0);
        if !ws.iter().any(|x| std::ptr::eq(x.as_ptr(), Arc::as_ptr(w))) {
            ws.push(Arc::downgrade(w));
        }
    }

    /// Remove a waiter.
    pub fn unregister(&self, w: &Arc<Waiter>) {
        self.lock()
            .retain(|x| x.strong_count() > 0 && !std::ptr::eq(x.as_ptr(), Arc::as_ptr(w)));
    }

    /// Wake every registered waiter.
    pub fn notify_all(&self) {
        for w in self.lock().iter().filter_map(Weak::upgrade) {
            w.notify();
        }
    }

    /// Wake at most `n` registered waiters (futex wake); returns how many.
    pub fn notify_some(&self, n: usize) -> usize {
        let mut woken = 0;
        for w in self.lock().iter().filter_map(Weak::upgrade) {
            if woken == n {
                break;
            }
            w.notify();
            woken += 1;
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let w = Waiter::new();
        let q = WaitQueue::new();
        q.register(&w);
        q.notify_all();
        assert_eq!(w.wait(Some(Instant::now())), Wake::Notified);
        assert_eq!(
            w.wait(Some(Instant::now() + Duration::from_millis(5))),
            Wake::TimedOut
        );
    }

    #[test]
    fn interrupt_wins_and_sticks_until_cleared() {
        let w = Waiter::new();
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wait(None));
        std::thread::sleep(Duration::from_millis(10));
        w.interrupt();
        assert_eq!(t.join().ok(), Some(Wake::Interrupted));
        assert_eq!(w.wait(None), Wake::Interrupted);
        w.clear_interrupt();
        assert_eq!(w.wait(Some(Instant::now())), Wake::TimedOut);
    }

    #[test]
    fn dropped_waiters_are_skipped() {
        let q = WaitQueue::new();
        let a = Waiter::new();
        q.register(&a);
        drop(a);
        let b = Waiter::new();
        q.register(&b);
        assert_eq!(q.notify_some(1), 1);
        assert_eq!(b.wait(Some(Instant::now())), Wake::Notified);
    }
}

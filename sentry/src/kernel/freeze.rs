//! Pausing a sandbox (`runsc pause`): guest code stops running until `resume`.
//!
//! Each guest thread passes the gate before every entry into the guest. Pausing closes
//! the gate and kicks every thread out of guest mode; threads busy in the sentry (a
//! blocking read, a futex wait) finish what they do and stop at the gate on their way
//! back. Nothing the guest can observe changes but time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct Freezer {
    /// Fast path: read on every guest entry.
    closed: AtomicBool,
    lock: Mutex<()>,
    opened: Condvar,
}

impl Freezer {
    /// Close the gate (the caller then kicks the threads).
    pub fn pause(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Open the gate and let every waiting thread go.
    pub fn resume(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(false, Ordering::SeqCst);
        self.opened.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Block while the gate is closed.
    pub fn pass(&self) {
        if !self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.closed.load(Ordering::SeqCst) {
            g = self.opened.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_closed_gate_holds_threads_until_resume() {
        let f = Arc::new(Freezer::default());
        f.pass();
        f.pause();
        let f2 = f.clone();
        let t = std::thread::spawn(move || f2.pass());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "a paused thread must wait");
        f.resume();
        t.join().expect("joined");
    }
}

//! Step timings of a long operation (building or restoring a sandbox), logged at debug
//! level (`RUST_LOG=sentry::steps=debug`), so that a slow start can be attributed.

use std::time::Instant;

/// The clock of one operation: each [`Steps::done`] logs the time since the previous one
/// and since the start.
pub struct Steps {
    what: &'static str,
    start: Instant,
    last: Instant,
}

impl Steps {
    /// Starts timing `what` (e.g. "boot", "restore").
    pub fn new(what: &'static str) -> Steps {
        let now = Instant::now();
        Steps {
            what,
            start: now,
            last: now,
        }
    }

    /// Logs that `step` is done.
    pub fn done(&mut self, step: &str) {
        let now = Instant::now();
        tracing::debug!(
            step_us = (now - self.last).as_micros() as u64,
            total_us = (now - self.start).as_micros() as u64,
            "{}: {step}",
            self.what
        );
        self.last = now;
    }
}

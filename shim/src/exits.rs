//! Exit statuses of the shim's children.
//!
//! The shim is a subreaper, and the shim library reaps every child on SIGCHLD
//! (`waitpid(-1)`), so `std::process::Child::wait` would race it and lose. Instead one
//! thread takes the library's exit notices and files them here, and whoever waits for a pid
//! takes its status from this table, whether the exit came before or after it asked. The
//! sandbox processes and waiters `runsc create` and `runsc exec --detach` leave behind are
//! reparented to the shim when runsc exits and end up here too.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Topic};

/// How many unclaimed exits are kept; older ones are dropped first. Exits of processes
/// nobody asks for (a runsc helper's grandchildren) must not grow the table forever.
const MAX_UNCLAIMED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that ended the process.
    pub status: i32,
    pub at: SystemTime,
}

#[derive(Default)]
pub struct Exits {
    table: Mutex<HashMap<i32, (Exit, Instant)>>,
    changed: Condvar,
}

impl Exits {
    /// Starts filing the shim library's exit notices. Call before spawning any child.
    pub fn start() -> Result<Arc<Exits>, containerd_shim::Error> {
        let exits = Arc::new(Exits::default());
        let subscription = monitor_subscribe(Topic::Pid)?;
        let filer = Arc::clone(&exits);
        std::thread::Builder::new()
            .name("exits".into())
            .spawn(move || {
                // The subscription lives as long as this thread: the shim's lifetime.
                while let Ok(ExitEvent { subject, exit_code }) = subscription.rx.recv() {
                    if let Subject::Pid(pid) = subject {
                        filer.record(pid, exit_code);
                    }
                }
            })
            .map_err(|e| containerd_shim::Error::Other(format!("starting the exit thread: {e}")))?;
        Ok(exits)
    }

    pub fn record(&self, pid: i32, status: i32) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= MAX_UNCLAIMED {
            if let Some(oldest) = table.iter().min_by_key(|(_, (_, t))| *t).map(|(p, _)| *p) {
                table.remove(&oldest);
            }
        }
        let exit = Exit {
            status,
            at: SystemTime::now(),
        };
        table.insert(pid, (exit, Instant::now()));
        self.changed.notify_all();
    }

    /// Waits for `pid` to exit and takes its status (`None` after `limit`).
    pub fn wait(&self, pid: i32, limit: Option<Duration>) -> Option<Exit> {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some((exit, _)) = table.remove(&pid) {
                return Some(exit);
            }
            table = match deadline {
                None => self
                    .changed
                    .wait(table)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.changed
                        .wait_timeout(table, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_filed_before_the_wait_is_found() {
        let exits = Exits::default();
        exits.record(42, 3);
        assert_eq!(exits.wait(42, None).map(|e| e.status), Some(3));
        // Taken: a second wait times out.
        assert_eq!(exits.wait(42, Some(Duration::from_millis(10))), None);
    }

    #[test]
    fn a_waiter_is_woken_by_a_later_exit() {
        let exits = Arc::new(Exits::default());
        let e = Arc::clone(&exits);
        let waiter = std::thread::spawn(move || e.wait(7, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        exits.record(8, 1);
        exits.record(7, 137);
        let got = waiter.join().expect("waiter thread");
        assert_eq!(got.map(|e| e.status), Some(137));
    }
}

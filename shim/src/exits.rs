//! Exit statuses of the shim's children.
//!
//! The shim is a subreaper, and the shim library reaps every child on SIGCHLD
//! (`waitpid(-1)`), so `std::process::Child::wait` would race it and lose. Instead one
//! thread takes the library's exit notices and files them here, and whoever waits for a pid
//! takes its status from this table, whether the exit came before or after it asked. The
//! sandbox processes and waiters `runsc create` and `runsc exec --detach` leave behind are
//! reparented to the shim when runsc exits and end up here too.
//!
//! Pids are reused. Exits nobody claims (a runsc helper's grandchildren) stay in the table,
//! so when pids wrap, a new child can get the pid of an exit still filed. Every exit
//! therefore gets a sequence number, and a waiter takes [`Exits::mark`] *before* it starts
//! the process (or the runsc command that makes it): [`Exits::wait_after`] only takes an
//! exit filed after that mark. That is exact: the process cannot have exited before it was
//! started, and an exit filed before the mark belongs to an earlier process with that pid.
//! Taking the mark costs nothing and needs no lock held across the spawn, and it works
//! for processes the shim does not spawn itself (a sandbox runsc makes), where no "forget
//! this pid after spawning" could tell the new process's early exit from a stale one.
//!
//! What is left: the library reaps a child and sends its notice on a channel a moment
//! later, so if the kernel gave that same pid to a new process in that moment (the pid
//! counter wrapping onto it within microseconds of its reap), the old exit is filed after
//! the new process's mark. Only reaping here could close that, and the library does it.
//!
//! Lock: `table` guards the map and `filed` together; `changed` goes with it.

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

/// A point in the table's history, taken before a process starts: exits filed after it
/// may be that process's, exits filed before it cannot be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(u64);

#[derive(Default)]
struct Table {
    /// Unclaimed exits by pid, with the sequence number each was filed under.
    exits: HashMap<i32, (Exit, u64)>,
    /// How many exits have been filed: the last sequence number given.
    filed: u64,
}

#[derive(Default)]
pub struct Exits {
    table: Mutex<Table>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Now, in the table's history. Take it before starting a process whose exit will be
    /// waited for (see the module doc).
    pub fn mark(&self) -> Mark {
        Mark(self.lock().filed)
    }

    pub fn record(&self, pid: i32, status: i32) {
        let mut table = self.lock();
        // An earlier exit of this pid is replaced below, so only a new pid needs room.
        if table.exits.len() >= MAX_UNCLAIMED && !table.exits.contains_key(&pid) {
            if let Some(oldest) = table
                .exits
                .iter()
                .min_by_key(|(_, (_, seq))| *seq)
                .map(|(p, _)| *p)
            {
                table.exits.remove(&oldest);
            }
        }
        table.filed += 1;
        let exit = Exit {
            status,
            at: SystemTime::now(),
        };
        let seq = table.filed;
        table.exits.insert(pid, (exit, seq));
        self.changed.notify_all();
    }

    /// Waits for `pid` to exit and takes its status (`None` after `limit`), whenever it was
    /// filed. Only for a pid that cannot have been an earlier child's (with the exit left
    /// unclaimed); otherwise [`Exits::wait_after`].
    pub fn wait(&self, pid: i32, limit: Option<Duration>) -> Option<Exit> {
        self.wait_after(pid, Mark(0), limit)
    }

    /// Waits for `pid` to exit and takes its status (`None` after `limit`). Only an exit
    /// filed after `since` counts: one filed before it is an earlier process's that had
    /// the same pid, and is left alone.
    pub fn wait_after(&self, pid: i32, since: Mark, limit: Option<Duration>) -> Option<Exit> {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut table = self.lock();
        loop {
            if let Some(&(exit, seq)) = table.exits.get(&pid) {
                if seq > since.0 {
                    table.exits.remove(&pid);
                    return Some(exit);
                }
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
        let since = exits.mark();
        exits.record(42, 3);
        assert_eq!(exits.wait_after(42, since, None).map(|e| e.status), Some(3));
        // Taken: a second wait times out.
        assert_eq!(
            exits.wait_after(42, since, Some(Duration::from_millis(10))),
            None
        );
    }

    #[test]
    fn a_waiter_is_woken_by_a_later_exit() {
        let exits = Arc::new(Exits::default());
        let since = exits.mark();
        let e = Arc::clone(&exits);
        let waiter =
            std::thread::spawn(move || e.wait_after(7, since, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        exits.record(8, 1);
        exits.record(7, 137);
        let got = waiter.join().expect("waiter thread");
        assert_eq!(got.map(|e| e.status), Some(137));
    }

    /// The flake: an unclaimed exit of an earlier process with pid 9 was handed to a new
    /// child that got pid 9 when pids wrapped ("exit status 1" before it had run).
    #[test]
    fn a_reused_pid_does_not_take_an_earlier_exit() {
        let exits = Arc::new(Exits::default());
        exits.record(9, 1);
        // A new process is started, and by chance gets pid 9.
        let since = exits.mark();
        assert_eq!(
            exits.wait_after(9, since, Some(Duration::from_millis(20))),
            None,
            "an exit filed before the process started"
        );
        let e = Arc::clone(&exits);
        let waiter =
            std::thread::spawn(move || e.wait_after(9, since, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        exits.record(9, 0);
        let got = waiter.join().expect("waiter thread");
        assert_eq!(got.map(|e| e.status), Some(0));
    }

    /// Without a mark, any exit filed counts (the behaviour for callers that know the pid
    /// is fresh).
    #[test]
    fn a_wait_without_a_mark_takes_any_exit() {
        let exits = Exits::default();
        exits.record(9, 1);
        assert_eq!(exits.wait(9, None).map(|e| e.status), Some(1));
    }

    /// A process that exits before anyone waits (a sandbox that dies during `runsc
    /// create`) still has its exit found: it was filed after the mark.
    #[test]
    fn an_early_exit_after_the_mark_is_kept() {
        let exits = Exits::default();
        exits.record(5, 2);
        let since = exits.mark();
        exits.record(5, 4);
        assert_eq!(exits.wait_after(5, since, None).map(|e| e.status), Some(4));
    }

    #[test]
    fn the_oldest_unclaimed_exit_goes_first() {
        let exits = Exits::default();
        let since = exits.mark();
        for pid in 0..MAX_UNCLAIMED as i32 {
            exits.record(pid, 0);
        }
        // Filing pid 0 again makes pid 1 the oldest.
        exits.record(0, 5);
        exits.record(MAX_UNCLAIMED as i32, 6);
        let none = Some(Duration::ZERO);
        assert_eq!(exits.wait_after(1, since, none), None);
        assert_eq!(exits.wait_after(0, since, none).map(|e| e.status), Some(5));
        assert_eq!(
            exits
                .wait_after(MAX_UNCLAIMED as i32, since, none)
                .map(|e| e.status),
            Some(6)
        );
        assert_eq!(exits.wait_after(2, since, none).map(|e| e.status), Some(0));
    }
}

//! Advisory file locks between the sandbox's processes: POSIX record locks (fcntl
//! F_SETLK/F_SETLKW/F_GETLK, owned by a process) and open-file-description locks
//! (F_OFD_*, owned by the open file), and flock(2) locks (whole-file, owned by the open
//! file, a namespace of their own as on Linux). SQLite's multi-process safety, its WAL
//! index above all, and tools that serialise with `flock` depend on them.
//!
//! A file is known by its (st_dev, st_ino). A process's POSIX locks on a file go when it
//! closes any descriptor of that file, and all of them when it ends; a lock owned by an
//! open file goes with the last reference to that description (held weakly here, and
//! purged when found dead). Waiters for a blocking lock sleep on one queue and look again
//! whenever a lock is released, and every so often in case a description went without
//! a word. Deadlocks between blocking POSIX lockers are not detected (Linux: EDEADLK).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::file::FileDescription;
use crate::abi::Errno;
use crate::waiter::{WaitQueue, Waiter, Wake};

/// Which file: its (st_dev, st_ino).
pub type FileKey = (u64, u64);

/// Who holds a lock.
#[derive(Clone)]
pub enum Owner {
    /// A process (POSIX record locks), by pid.
    Process(i32),
    /// An open file description (OFD and flock locks).
    File(Weak<dyn FileDescription>),
}

impl Owner {
    /// The description `f` as an owner.
    pub fn file(f: &Arc<dyn FileDescription>) -> Owner {
        Owner::File(Arc::downgrade(f))
    }

    fn same(&self, other: &Owner) -> bool {
        match (self, other) {
            (Owner::Process(a), Owner::Process(b)) => a == b,
            (Owner::File(a), Owner::File(b)) => Weak::ptr_eq(a, b),
            _ => false,
        }
    }

    fn alive(&self) -> bool {
        match self {
            Owner::Process(_) => true,
            Owner::File(w) => w.strong_count() > 0,
        }
    }

    /// F_GETLK's l_pid: the holder's pid, or -1 for an open file's lock.
    fn pid(&self) -> i32 {
        match self {
            Owner::Process(p) => *p,
            Owner::File(_) => -1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// One held lock over bytes `[start, end)` (`end` u64::MAX: to the end, however far).
#[derive(Clone)]
struct Held {
    owner: Owner,
    kind: LockKind,
    start: u64,
    end: u64,
}

/// What F_GETLK reports of a lock in the way.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict {
    pub kind: LockKind,
    pub start: u64,
    /// None: to the end of the file.
    pub end: Option<u64>,
    pub pid: i32,
}

/// One namespace of locks (the sandbox has two: record locks and flock locks).
#[derive(Default)]
pub struct LockTable {
    files: Mutex<HashMap<FileKey, Vec<Held>>>,
    released: WaitQueue,
}

/// How often a blocked locker looks again without being told (a description it waits
/// for may have gone without a release).
const RECHECK: Duration = Duration::from_millis(100);

impl LockTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<FileKey, Vec<Held>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conflict<'a>(
        held: &'a [Held],
        owner: &Owner,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<&'a Held> {
        held.iter().find(|h| {
            !h.owner.same(owner)
                && h.owner.alive()
                && h.start < end
                && start < h.end
                && (kind == LockKind::Write || h.kind == LockKind::Write)
        })
    }

    /// F_GETLK: the first lock of another owner that would stop `kind` over the range.
    pub fn test(
        &self,
        key: FileKey,
        owner: &Owner,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<Conflict> {
        let files = self.lock();
        let held = files.get(&key)?;
        Self::conflict(held, owner, kind, start, end).map(|h| Conflict {
            kind: h.kind,
            start: h.start,
            end: (h.end != u64::MAX).then_some(h.end),
            pid: h.owner.pid(),
        })
    }

    /// Take (`kind` Some) or release (None) `[start, end)` for `owner`, replacing what it
    /// held there. EAGAIN if another owner's lock is in the way.
    pub fn set(
        &self,
        key: FileKey,
        owner: &Owner,
        kind: Option<LockKind>,
        start: u64,
        end: u64,
    ) -> Result<(), Errno> {
        let mut files = self.lock();
        let held = files.entry(key).or_default();
        held.retain(|h| h.owner.alive());
        if let Some(kind) = kind {
            if Self::conflict(held, owner, kind, start, end).is_some() {
                return Err(Errno::EAGAIN);
            }
        }
        // Cut the owner's own locks out of the range, keeping what lies outside it.
        let mut kept = Vec::with_capacity(held.len() + 2);
        let mut released = false;
        for h in held.drain(..) {
            if !h.owner.same(owner) || h.end <= start || end <= h.start {
                kept.push(h);
                continue;
            }
            released = true;
            if h.start < start {
                kept.push(Held {
                    end: start,
                    ..h.clone()
                });
            }
            if end < h.end {
                kept.push(Held { start: end, ..h });
            }
        }
        if let Some(kind) = kind {
            kept.push(Held {
                owner: owner.clone(),
                kind,
                start,
                end,
            });
        }
        if kept.is_empty() {
            files.remove(&key);
        } else {
            *held = kept;
        }
        drop(files);
        if released {
            self.released.notify_all();
        }
        Ok(())
    }

    /// F_SETLKW / blocking flock: wait on `waiter` (the calling thread's) until the lock
    /// can be taken; ERESTARTSYS when a signal interrupts the wait.
    pub fn set_wait(
        &self,
        key: FileKey,
        owner: &Owner,
        kind: LockKind,
        start: u64,
        end: u64,
        waiter: &Arc<Waiter>,
    ) -> Result<(), Errno> {
        loop {
            waiter.reset();
            self.released.register(waiter);
            let tried = self.set(key, owner, Some(kind), start, end);
            if tried != Err(Errno::EAGAIN) {
                self.released.unregister(waiter);
                return tried;
            }
            let woke = waiter.wait(Some(Instant::now() + RECHECK));
            self.released.unregister(waiter);
            if woke == Wake::Interrupted {
                return Err(Errno::ERESTARTSYS);
            }
        }
    }

    /// Release every lock `owner` holds on `key` (a process closed a descriptor of it).
    pub fn release_file(&self, key: FileKey, owner: &Owner) {
        let _ = self.set(key, owner, None, 0, u64::MAX);
    }

    /// Whether any lock is held at all (most sandboxes never take one).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Release every lock of process `pid` (it ended).
    pub fn release_process(&self, pid: i32) {
        let owner = Owner::Process(pid);
        let mut files = self.lock();
        let mut released = false;
        files.retain(|_, held| {
            let before = held.len();
            held.retain(|h| !h.owner.same(&owner));
            released |= held.len() != before;
            !held.is_empty()
        });
        drop(files);
        if released {
            self.released.notify_all();
        }
    }

    /// Wake blocked lockers to look again (a description that may have held a lock
    /// has been closed).
    pub fn poke(&self) {
        self.released.notify_all();
    }
}

/// The sandbox's two lock namespaces.
#[derive(Default)]
pub struct Locks {
    /// fcntl record locks, POSIX and OFD.
    pub records: LockTable,
    /// flock(2).
    pub flocks: LockTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: FileKey = (1, 2);
    const A: Owner = Owner::Process(10);
    const B: Owner = Owner::Process(20);
    const MAX: u64 = u64::MAX;

    #[test]
    fn readers_share_and_a_writer_excludes() {
        let t = LockTable::default();
        t.set(K, &A, Some(LockKind::Read), 0, 100)
            .expect("a read lock");
        t.set(K, &B, Some(LockKind::Read), 50, 150)
            .expect("another reader");
        assert_eq!(
            t.set(K, &B, Some(LockKind::Write), 90, 95),
            Err(Errno::EAGAIN)
        );
        assert_eq!(
            t.test(K, &B, LockKind::Write, 0, MAX),
            Some(Conflict {
                kind: LockKind::Read,
                start: 0,
                end: Some(100),
                pid: 10
            })
        );
        // Beyond A's range B may write-lock what is its own alone.
        t.set(K, &B, Some(LockKind::Write), 100, 150)
            .expect("upgrading its own bytes");
    }

    #[test]
    fn unlocking_the_middle_splits_a_lock() {
        let t = LockTable::default();
        t.set(K, &A, Some(LockKind::Write), 0, MAX)
            .expect("whole file");
        t.set(K, &A, None, 10, 20).expect("unlock a hole");
        assert!(t.test(K, &B, LockKind::Write, 10, 20).is_none());
        assert!(t.test(K, &B, LockKind::Read, 5, 6).is_some());
        assert_eq!(
            t.test(K, &B, LockKind::Read, 25, 26)
                .map(|c| (c.start, c.end)),
            Some((20, None))
        );
    }

    #[test]
    fn a_process_loses_its_locks_and_dead_files_hold_none() {
        let t = LockTable::default();
        t.set(K, &A, Some(LockKind::Write), 0, MAX).expect("lock");
        t.release_process(10);
        t.set(K, &B, Some(LockKind::Write), 0, MAX)
            .expect("free after A ended");
        t.release_file(K, &B);
        let f: Arc<dyn FileDescription> = crate::vfs::eventfd::EventFd::new(0, 0);
        let of = Owner::file(&f);
        t.set(K, &of, Some(LockKind::Write), 0, MAX)
            .expect("an OFD lock");
        assert_eq!(t.set(K, &A, Some(LockKind::Read), 0, 1), Err(Errno::EAGAIN));
        drop(f);
        t.set(K, &A, Some(LockKind::Read), 0, 1)
            .expect("the description is gone");
    }

    #[test]
    fn a_blocked_locker_gets_the_lock_when_it_is_released() {
        let t = Arc::new(LockTable::default());
        t.set(K, &A, Some(LockKind::Write), 0, MAX).expect("lock");
        let t2 = t.clone();
        let h =
            std::thread::spawn(move || t2.set_wait(K, &B, LockKind::Write, 0, MAX, &Waiter::new()));
        std::thread::sleep(Duration::from_millis(30));
        t.set(K, &A, None, 0, MAX).expect("unlock");
        assert_eq!(h.join().expect("the waiter"), Ok(()));
    }
}

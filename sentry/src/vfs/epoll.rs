//! epoll instances: an interest list of (fd, file description) entries, with Linux's
//! level-triggered, edge-triggered (EPOLLET) and one-shot (EPOLLONESHOT) reporting.
//!
//! Readiness is computed on demand: a wait scans the interest list and asks each file's
//! `poll()`; between scans the waiting task is parked on every watched file's queue. For
//! EPOLLET each entry owns an "edge" [`Waiter`] registered on its file: a notification of
//! that waiter is a wake-up of the file since the last report, which is exactly when Linux
//! puts an edge-triggered item back on the ready list.
//!
//! Entries hold the file weakly: when the last fd of a description is closed, its entries
//! disappear, as Linux's eventpoll_release (and a description kept open by a dup'd fd stays
//! registered, as on Linux).
//!
//! Lock order: an epoll's entry lock is held while calling into watched files (their
//! `poll`, `register_waiter`), which may be epolls nested below it. Nesting is kept acyclic
//! by the ELOOP check, serialised by `NEST_LOCK`.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use super::file::{FileDescription, Stat, POLLIN, POLLRDNORM};
use crate::abi::Errno;
use crate::state::files::{EpollEntryState, EpollState, FileState};
use crate::state::{SaveContext, StateError};
use crate::waiter::{WaitQueue, Waiter, Wake};

pub const EPOLLIN: u32 = 0x1;
pub const EPOLLPRI: u32 = 0x2;
pub const EPOLLOUT: u32 = 0x4;
pub const EPOLLERR: u32 = 0x8;
pub const EPOLLHUP: u32 = 0x10;
pub const EPOLLRDHUP: u32 = 0x2000;
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
pub const EPOLLWAKEUP: u32 = 1 << 29;
pub const EPOLLONESHOT: u32 = 1 << 30;
pub const EPOLLET: u32 = 1 << 31;
/// Flags that are not readiness bits.
const EP_PRIVATE_BITS: u32 = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;
/// What EPOLLEXCLUSIVE may be combined with (Linux EPOLLEXCLUSIVE_OK_BITS).
const EXCLUSIVE_OK_BITS: u32 =
    EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE;
/// How deep epoll instances may nest (Linux EP_MAX_NESTS).
pub const EP_MAX_NESTS: usize = 4;

/// Serialises adding an epoll to another, so two threads cannot close a loop together.
static NEST_LOCK: Mutex<()> = Mutex::new(());

/// EPOLL_CTL_* operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlOp {
    Add,
    Del,
    Mod,
}

impl CtlOp {
    pub fn from_raw(op: u64) -> Option<CtlOp> {
        match op {
            1 => Some(CtlOp::Add),
            2 => Some(CtlOp::Del),
            3 => Some(CtlOp::Mod),
            _ => None,
        }
    }
}

struct Entry {
    fd: i32,
    /// Identity of the description (its address), with `fd` the key Linux uses.
    key: usize,
    file: Weak<dyn FileDescription>,
    events: u32,
    data: u64,
    /// Notified by every wake-up of the file (edge-triggered reporting).
    edge: Arc<Waiter>,
    /// Ready to report once more regardless of wake-ups (set by ADD and MOD).
    pending: bool,
}

impl Entry {
    fn readiness_bits(&self) -> i16 {
        (self.events & !EP_PRIVATE_BITS & 0xffff) as u16 as i16
    }

    /// Consume the edge (a wake-up since the last look).
    fn take_edge(&mut self) -> bool {
        std::mem::take(&mut self.pending) | (self.edge.wait(Some(Instant::now())) == Wake::Notified)
    }

    /// Whether the edge is set, leaving it set.
    fn peek_edge(&self) -> bool {
        if self.pending {
            return true;
        }
        let set = self.edge.wait(Some(Instant::now())) == Wake::Notified;
        if set {
            self.edge.notify();
        }
        set
    }
}

/// An interest-list entry as a checkpoint sees it.
pub struct SavedEntry {
    pub fd: i32,
    pub file: Arc<dyn FileDescription>,
    pub events: u32,
    pub data: u64,
    /// An edge-triggered wake-up not reported yet, or a report owed since ADD or MOD.
    pub edge: bool,
}

fn key_of(f: &Arc<dyn FileDescription>) -> usize {
    Arc::as_ptr(f) as *const () as usize
}

/// One epoll instance.
#[derive(Default)]
pub struct Epoll {
    entries: Mutex<Vec<Entry>>,
    /// Notified when the interest list changes.
    queue: WaitQueue,
}

impl Epoll {
    pub fn new() -> Epoll {
        Epoll::default()
    }

    /// The live entries (entries whose description was closed are dropped here).
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|e| e.file.strong_count() > 0);
        g
    }

    /// epoll_ctl for `fd`, which refers to `file`. The caller has checked that `file` can
    /// be polled and is not this instance; `events` is the guest's mask.
    pub fn ctl(
        &self,
        op: CtlOp,
        fd: i32,
        file: &Arc<dyn FileDescription>,
        mut events: u32,
        data: u64,
    ) -> Result<(), Errno> {
        let nested = file.as_any().downcast_ref::<Epoll>();
        if events & EPOLLEXCLUSIVE != 0 {
            if op == CtlOp::Mod {
                return Err(Errno::EINVAL);
            }
            if op == CtlOp::Add && (nested.is_some() || events & !EXCLUSIVE_OK_BITS != 0) {
                return Err(Errno::EINVAL);
            }
        }
        let _nest = match (op, nested) {
            (CtlOp::Add, Some(inner)) => {
                let g = NEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                inner.check_loop(self, 1)?;
                Some(g)
            }
            _ => None,
        };
        let key = key_of(file);
        let mut g = self.lock();
        let pos = g.iter().position(|e| e.fd == fd && e.key == key);
        match (op, pos) {
            (CtlOp::Add, Some(_)) => return Err(Errno::EEXIST),
            (CtlOp::Del | CtlOp::Mod, None) => return Err(Errno::ENOENT),
            (CtlOp::Add, None) => {
                // Linux: EPOLLERR and EPOLLHUP are always reported.
                events |= EPOLLERR | EPOLLHUP;
                let entry = Entry {
                    fd,
                    key,
                    file: Arc::downgrade(file),
                    events,
                    data,
                    edge: Waiter::new(),
                    pending: true,
                };
                file.register_waiter(&entry.edge, entry.readiness_bits());
                g.push(entry);
            }
            (CtlOp::Del, Some(i)) => {
                let e = g.remove(i);
                file.unregister_waiter(&e.edge);
            }
            (CtlOp::Mod, Some(i)) => {
                let e = &mut g[i];
                if e.events & EPOLLEXCLUSIVE != 0 {
                    return Err(Errno::EINVAL);
                }
                e.events = events | EPOLLERR | EPOLLHUP;
                e.data = data;
                e.pending = true;
                file.unregister_waiter(&e.edge);
                file.register_waiter(&e.edge, e.readiness_bits());
            }
        }
        drop(g);
        self.queue.notify_all();
        Ok(())
    }

    /// The interest list's live entries, for a checkpoint.
    pub fn saved_entries(&self) -> Vec<SavedEntry> {
        self.lock()
            .iter()
            .filter_map(|e| {
                Some(SavedEntry {
                    fd: e.fd,
                    file: e.file.upgrade()?,
                    events: e.events,
                    data: e.data,
                    edge: e.peek_edge(),
                })
            })
            .collect()
    }

    /// Put back an entry saved by [`Epoll::saved_entries`] (EEXIST if it is there
    /// already). Its `events` are as they were saved (EPOLLERR and EPOLLHUP included, a
    /// fired one-shot entry disarmed); `edge` says whether an edge-triggered entry
    /// reports its readiness once more.
    pub fn restore_entry(
        &self,
        fd: i32,
        file: &Arc<dyn FileDescription>,
        events: u32,
        data: u64,
        edge: bool,
    ) -> Result<(), Errno> {
        let key = key_of(file);
        let mut g = self.lock();
        if g.iter().any(|e| e.fd == fd && e.key == key) {
            return Err(Errno::EEXIST);
        }
        let entry = Entry {
            fd,
            key,
            file: Arc::downgrade(file),
            events,
            data,
            edge: Waiter::new(),
            pending: edge,
        };
        file.register_waiter(&entry.edge, entry.readiness_bits());
        g.push(entry);
        Ok(())
    }

    /// How deeply epoll instances nest below this one (0: it watches none).
    pub fn nesting(&self) -> usize {
        let files: Vec<_> = self
            .lock()
            .iter()
            .filter_map(|e| e.file.upgrade())
            .collect();
        files
            .iter()
            .filter_map(|f| f.as_any().downcast_ref::<Epoll>())
            .map(|inner| 1 + inner.nesting())
            .max()
            .unwrap_or(0)
    }

    /// ELOOP if `target` is reachable from this instance or nesting gets too deep.
    fn check_loop(&self, target: &Epoll, depth: usize) -> Result<(), Errno> {
        if std::ptr::eq(self, target) || depth > EP_MAX_NESTS {
            return Err(Errno::ELOOP);
        }
        let files: Vec<_> = self
            .lock()
            .iter()
            .filter_map(|e| e.file.upgrade())
            .collect();
        for f in files {
            if let Some(inner) = f.as_any().downcast_ref::<Epoll>() {
                inner.check_loop(target, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Report up to `max` ready entries as (events, data), consuming edges and disarming
    /// one-shot entries as Linux's ep_send_events does.
    pub fn harvest(&self, max: usize) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut g = self.lock();
        for e in g.iter_mut() {
            if out.len() >= max {
                break;
            }
            let want = e.events & !EP_PRIVATE_BITS;
            if want == 0 {
                continue; // a one-shot entry that fired: disabled until EPOLL_CTL_MOD
            }
            let Some(f) = e.file.upgrade() else {
                continue;
            };
            let revents;
            if e.events & EPOLLET != 0 {
                let before = e.take_edge();
                revents = (f.poll() as u16 as u32) & want;
                // A poll can itself announce a change (a timer found expired).
                if revents == 0 || !(before || e.take_edge()) {
                    continue;
                }
            } else {
                revents = (f.poll() as u16 as u32) & want;
                if revents == 0 {
                    continue;
                }
            }
            out.push((revents, e.data));
            if e.events & EPOLLONESHOT != 0 {
                e.events &= EP_PRIVATE_BITS;
            }
        }
        out
    }

    /// Whether a wait would report something now (nothing is consumed).
    fn any_ready(&self) -> bool {
        let g = self.lock();
        g.iter().any(|e| {
            let want = e.events & !EP_PRIVATE_BITS;
            if want == 0 {
                return false;
            }
            let Some(f) = e.file.upgrade() else {
                return false;
            };
            (f.poll() as u16 as u32) & want != 0 && (e.events & EPOLLET == 0 || e.peek_edge())
        })
    }
}

impl FileDescription for Epoll {
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_stat())
    }

    fn poll(&self) -> i16 {
        if self.any_ready() {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }

    fn register_waiter(&self, w: &Arc<Waiter>, _events: i16) {
        self.queue.register(w);
        for e in self.lock().iter() {
            let bits = e.readiness_bits();
            if bits != 0 {
                if let Some(f) = e.file.upgrade() {
                    f.register_waiter(w, bits);
                }
            }
        }
    }

    fn unregister_waiter(&self, w: &Arc<Waiter>) {
        self.queue.unregister(w);
        for e in self.lock().iter() {
            if let Some(f) = e.file.upgrade() {
                f.unregister_waiter(w);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let files: Vec<_> = self
            .lock()
            .iter()
            .filter(|e| e.readiness_bits() != 0)
            .filter_map(|e| e.file.upgrade())
            .collect();
        files.iter().filter_map(|f| f.next_deadline()).min()
    }

    fn path(&self) -> String {
        "anon_inode:[eventpoll]".to_string()
    }

    fn status_flags(&self) -> u32 {
        libc::O_RDWR as u32
    }

    fn save(&self, cx: &mut SaveContext) -> Result<FileState, StateError> {
        // The targets are saved without holding the interest list's lock.
        let mut entries = Vec::new();
        for e in self.saved_entries() {
            entries.push(EpollEntryState {
                file: cx.file_id(&e.file)?,
                fd: e.fd,
                events: e.events,
                data: e.data,
                edge: e.edge,
            });
        }
        Ok(FileState::Epoll(EpollState { entries }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::pipe::new_pipe;

    fn as_file<T: FileDescription>(a: Arc<T>) -> Arc<dyn FileDescription> {
        a
    }

    #[test]
    fn level_edge_and_oneshot() {
        let (r, w) = new_pipe(0);
        let r = as_file(r);
        let ep = Epoll::new();
        assert_eq!(ep.ctl(CtlOp::Add, 3, &r, EPOLLIN, 7), Ok(()));
        assert_eq!(ep.ctl(CtlOp::Add, 3, &r, EPOLLIN, 7), Err(Errno::EEXIST));
        assert_eq!(ep.ctl(CtlOp::Del, 4, &r, 0, 0), Err(Errno::ENOENT));
        assert!(ep.harvest(8).is_empty());
        assert_eq!(w.write(b"x", None), Ok(1));
        assert_eq!(ep.harvest(8), vec![(EPOLLIN, 7)]);
        assert_eq!(ep.harvest(8), vec![(EPOLLIN, 7)]);
        assert_eq!(ep.ctl(CtlOp::Mod, 3, &r, EPOLLIN | EPOLLET, 8), Ok(()));
        assert_eq!(ep.harvest(8), vec![(EPOLLIN, 8)]);
        assert!(ep.harvest(8).is_empty());
        assert_eq!(w.write(b"y", None), Ok(1));
        assert_eq!(ep.poll() & POLLIN, POLLIN);
        assert_eq!(ep.harvest(8), vec![(EPOLLIN, 8)]);
        assert_eq!(ep.ctl(CtlOp::Mod, 3, &r, EPOLLIN | EPOLLONESHOT, 9), Ok(()));
        assert_eq!(ep.harvest(8), vec![(EPOLLIN, 9)]);
        assert!(ep.harvest(8).is_empty());
        // Closing the last reference removes the entry.
        drop(r);
        assert!(ep.lock().is_empty());
    }

    #[test]
    fn loops_are_refused() {
        let a = Arc::new(Epoll::new());
        let b = Arc::new(Epoll::new());
        let (fa, fb) = (as_file(a.clone()), as_file(b.clone()));
        assert_eq!(a.ctl(CtlOp::Add, 5, &fb, EPOLLIN, 0), Ok(()));
        assert_eq!(b.ctl(CtlOp::Add, 4, &fa, EPOLLIN, 0), Err(Errno::ELOOP));
        assert_eq!(
            a.ctl(CtlOp::Mod, 5, &fb, EPOLLIN | EPOLLEXCLUSIVE, 0),
            Err(Errno::EINVAL)
        );
    }
}

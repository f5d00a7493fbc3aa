//! inotify(7): watches on files and directories of a container's file system, and the
//! file a guest reads their events from. Node's `fs.watch` (libuv), chokidar, nodemon and
//! every dev server's reload rest on it.
//!
//! A watch is on a node, named by its (st_dev, st_ino): it follows the node through
//! renames, and when the overlay copies a host directory or file up (on the first change
//! in or to it) the watch moves to the copy ([`Registry::rekey`]). Events are raised by
//! the namespace changes (`ops.rs`: create, delete, rename, attributes) and by writes and
//! truncations of open files; each goes to the watches on the node and, with the node's
//! name, to those on its directory, as Linux's fsnotify does. Changes made outside the
//! sandbox (to a bind-mounted host directory) are not seen, as in gVisor.
//!
//! Not raised: IN_ACCESS, IN_OPEN, IN_CLOSE_WRITE and IN_CLOSE_NOWRITE.
//!
//! Lock order: an instance's watch table, then a registry's lock, then an instance's event
//! queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::file::{FileDescription, Stat};
use crate::abi::Errno;
use crate::waiter::WaitQueue;

pub const IN_MODIFY: u32 = 0x2;
pub const IN_ATTRIB: u32 = 0x4;
pub const IN_MOVED_FROM: u32 = 0x40;
pub const IN_MOVED_TO: u32 = 0x80;
pub const IN_CREATE: u32 = 0x100;
pub const IN_DELETE: u32 = 0x200;
pub const IN_DELETE_SELF: u32 = 0x400;
pub const IN_MOVE_SELF: u32 = 0x800;
pub const IN_ALL_EVENTS: u32 = 0xfff;
pub const IN_Q_OVERFLOW: u32 = 0x4000;
pub const IN_IGNORED: u32 = 0x8000;
pub const IN_ONLYDIR: u32 = 0x0100_0000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
pub const IN_MASK_CREATE: u32 = 0x1000_0000;
pub const IN_MASK_ADD: u32 = 0x2000_0000;
pub const IN_ISDIR: u32 = 0x4000_0000;
pub const IN_ONESHOT: u32 = 0x8000_0000;

/// Events queued per instance before the rest is dropped for one IN_Q_OVERFLOW (Linux's
/// default `max_queued_events`).
pub const MAX_QUEUED_EVENTS: usize = 16384;
/// Watches per instance (Linux's `max_user_watches` is per user; one bound per instance
/// keeps a guest from growing the registry without end).
pub const MAX_WATCHES: usize = 65536;
/// sizeof(struct inotify_event) without its name.
const EVENT_HEADER: usize = 16;
const FIONREAD: u32 = 0x541b;

/// Which node a watch is on: (st_dev, st_ino).
pub type Key = (u64, u64);

pub fn key_of(st: &Stat) -> Key {
    (st.dev, st.ino)
}

/// One queued event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    wd: i32,
    mask: u32,
    cookie: u32,
    /// The child's name, for an event a directory watch reports about an entry.
    name: Vec<u8>,
}

impl Event {
    /// Its size as read(2) returns it: the name NUL-terminated and padded to 4 bytes.
    fn len(&self) -> usize {
        EVENT_HEADER + padded_name_len(&self.name)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let name_len = padded_name_len(&self.name);
        out.extend_from_slice(&self.wd.to_le_bytes());
        out.extend_from_slice(&self.mask.to_le_bytes());
        out.extend_from_slice(&self.cookie.to_le_bytes());
        out.extend_from_slice(&(name_len as u32).to_le_bytes());
        out.extend_from_slice(&self.name);
        out.resize(out.len() + name_len - self.name.len(), 0);
    }
}

fn padded_name_len(name: &[u8]) -> usize {
    if name.is_empty() {
        0
    } else {
        (name.len() + 1).div_ceil(4) * 4
    }
}

/// A watch as the registry keeps it.
struct Watch {
    instance: Weak<Inotify>,
    wd: i32,
    mask: u32,
}

/// The watches of one container's file system.
#[derive(Default)]
pub struct Registry {
    /// How many watches exist: with none, raising an event costs one atomic load.
    active: AtomicUsize,
    watches: Mutex<HashMap<Key, Vec<Watch>>>,
}

static NEXT_COOKIE: AtomicU32 = AtomicU32::new(1);

/// A cookie that ties an IN_MOVED_FROM to its IN_MOVED_TO.
pub fn next_cookie() -> u32 {
    NEXT_COOKIE.fetch_add(1, Ordering::Relaxed)
}

impl Registry {
    /// Whether any watch exists (else raising events may be skipped altogether).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Vec<Watch>>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raise `mask` (with `cookie` and the child's `name`, empty for the node itself) on
    /// the watches of `key` that asked for it.
    pub fn notify(&self, key: Key, mask: u32, cookie: u32, name: &[u8]) {
        if !self.active() {
            return;
        }
        let mut map = self.lock();
        let Some(list) = map.get_mut(&key) else {
            return;
        };
        let mut ended = Vec::new();
        list.retain(|w| {
            let Some(instance) = w.instance.upgrade() else {
                return false;
            };
            if w.mask & mask & IN_ALL_EVENTS == 0 {
                return true;
            }
            instance.queue(Event {
                wd: w.wd,
                mask,
                cookie,
                name: name.to_vec(),
            });
            if w.mask & IN_ONESHOT != 0 {
                instance.queue(ignored(w.wd));
                ended.push((instance, w.wd));
                return false;
            }
            true
        });
        if list.is_empty() {
            map.remove(&key);
        }
        drop(map);
        for (instance, wd) in ended {
            instance.forget(wd);
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The node `key` is gone (its last link removed): IN_DELETE_SELF to the watches that
    /// asked, then IN_IGNORED to all, which end.
    pub fn gone(&self, key: Key) {
        if !self.active() {
            return;
        }
        let Some(list) = self.lock().remove(&key) else {
            return;
        };
        for w in list {
            self.active.fetch_sub(1, Ordering::Relaxed);
            let Some(instance) = w.instance.upgrade() else {
                continue;
            };
            if w.mask & IN_DELETE_SELF != 0 {
                instance.queue(Event {
                    wd: w.wd,
                    mask: IN_DELETE_SELF,
                    cookie: 0,
                    name: Vec::new(),
                });
            }
            instance.queue(ignored(w.wd));
            instance.forget(w.wd);
        }
    }

    /// The node `from` is now `to` (the overlay copied it up): its watches follow.
    pub fn rekey(&self, from: Key, to: Key) {
        if !self.active() || from == to {
            return;
        }
        let moved: Vec<(Weak<Inotify>, i32)> = {
            let mut map = self.lock();
            let Some(list) = map.remove(&from) else {
                return;
            };
            let moved = list.iter().map(|w| (w.instance.clone(), w.wd)).collect();
            map.entry(to).or_default().extend(list);
            moved
        };
        // Not under the registry's lock: an instance takes its own lock, then the
        // registry's (add_watch).
        for (instance, wd) in moved {
            if let Some(instance) = instance.upgrade() {
                instance.moved(wd, to);
            }
        }
    }

    fn add(&self, key: Key, watch: Watch) {
        self.lock().entry(key).or_default().push(watch);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Change the mask of `wd` of `instance` on `key`.
    fn set_mask(&self, key: Key, instance: &Inotify, wd: i32, mask: u32) {
        if let Some(w) = self.lock().get_mut(&key).and_then(|l| {
            l.iter_mut()
                .find(|w| w.wd == wd && is(&w.instance, instance))
        }) {
            w.mask = mask;
        }
    }

    /// Take watch `wd` of `instance` off `key`.
    fn remove(&self, key: Key, instance: &Inotify, wd: i32) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(&key) {
            let before = list.len();
            list.retain(|w| !(w.wd == wd && is(&w.instance, instance)));
            if list.len() < before {
                self.active.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                map.remove(&key);
            }
        }
    }
}

fn is(weak: &Weak<Inotify>, instance: &Inotify) -> bool {
    std::ptr::eq(weak.as_ptr(), instance)
}

fn ignored(wd: i32) -> Event {
    Event {
        wd,
        mask: IN_IGNORED,
        cookie: 0,
        name: Vec::new(),
    }
}

/// What an instance knows of its watches.
struct Watches {
    /// wd → (registry, node, mask).
    by_wd: HashMap<i32, (Arc<Registry>, Key, u32)>,
}

struct Queue {
    events: VecDeque<Event>,
    bytes: usize,
    overflowed: bool,
}

/// An inotify instance: the file inotify_init returns.
pub struct Inotify {
    me: Weak<Inotify>,
    watches: Mutex<Watches>,
    queue: Mutex<Queue>,
    waiters: WaitQueue,
    next_wd: AtomicI32,
    flags: AtomicU32,
}

impl Inotify {
    pub fn new(status_flags: u32) -> Arc<Inotify> {
        Arc::new_cyclic(|me| Inotify {
            me: me.clone(),
            watches: Mutex::new(Watches {
                by_wd: HashMap::new(),
            }),
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                bytes: 0,
                overflowed: false,
            }),
            waiters: WaitQueue::new(),
            next_wd: AtomicI32::new(1),
            flags: AtomicU32::new(status_flags),
        })
    }

    fn lock_watches(&self) -> MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// inotify_add_watch on the node `key` (a directory if `is_dir`) of `registry`:
    /// the watch descriptor, the same one for a node already watched.
    pub fn add_watch(
        &self,
        registry: &Arc<Registry>,
        key: Key,
        is_dir: bool,
        mask: u32,
    ) -> Result<i32, Errno> {
        if mask & IN_ALL_EVENTS == 0 {
            return Err(Errno::EINVAL);
        }
        if mask & IN_MASK_ADD != 0 && mask & IN_MASK_CREATE != 0 {
            return Err(Errno::EINVAL);
        }
        if mask & IN_ONLYDIR != 0 && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        let kept = mask & (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK);
        let mut watches = self.lock_watches();
        let existing = watches
            .by_wd
            .iter_mut()
            .find(|(_, (r, k, _))| Arc::ptr_eq(r, registry) && *k == key);
        if let Some((wd, (_, _, old))) = existing {
            if mask & IN_MASK_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            let new = if mask & IN_MASK_ADD != 0 {
                *old | kept
            } else {
                kept
            };
            *old = new;
            registry.set_mask(key, self, *wd, new);
            return Ok(*wd);
        }
        if watches.by_wd.len() >= MAX_WATCHES {
            return Err(Errno::ENOSPC);
        }
        let wd = self.next_wd.fetch_add(1, Ordering::Relaxed);
        watches.by_wd.insert(wd, (registry.clone(), key, kept));
        registry.add(
            key,
            Watch {
                instance: self.me.clone(),
                wd,
                mask: kept,
            },
        );
        Ok(wd)
    }

    /// inotify_rm_watch: the watch ends with an IN_IGNORED event.
    pub fn rm_watch(&self, wd: i32) -> Result<(), Errno> {
        let Some((registry, key, _)) = self.lock_watches().by_wd.remove(&wd) else {
            return Err(Errno::EINVAL);
        };
        registry.remove(key, self, wd);
        self.queue(ignored(wd));
        Ok(())
    }

    /// The registry ended watch `wd` itself (the node went, or IN_ONESHOT fired).
    fn forget(&self, wd: i32) {
        self.lock_watches().by_wd.remove(&wd);
    }

    /// The registry moved watch `wd` to `key`.
    fn moved(&self, wd: i32, key: Key) {
        if let Some(w) = self.lock_watches().by_wd.get_mut(&wd) {
            w.1 = key;
        }
    }

    fn queue(&self, event: Event) {
        let mut q = self.lock_queue();
        if q.overflowed {
            return;
        }
        // Linux merges an event identical to the last one still unread.
        if q.events.back() == Some(&event) {
            return;
        }
        let event = if q.events.len() + 1 >= MAX_QUEUED_EVENTS {
            q.overflowed = true;
            Event {
                wd: -1,
                mask: IN_Q_OVERFLOW,
                cookie: 0,
                name: Vec::new(),
            }
        } else {
            event
        };
        q.bytes += event.len();
        q.events.push_back(event);
        drop(q);
        self.waiters.notify_all();
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        let watches = std::mem::take(&mut self.lock_watches().by_wd);
        for (wd, (registry, key, _)) in watches {
            registry.remove(key, self, wd);
        }
    }
}

impl FileDescription for Inotify {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        let mut q = self.lock_queue();
        let Some(first) = q.events.front() else {
            return Err(Errno::EAGAIN);
        };
        if first.len() > buf.len() {
            return Err(Errno::EINVAL);
        }
        let mut out = Vec::with_capacity(buf.len().min(q.bytes));
        while q
            .events
            .front()
            .is_some_and(|e| out.len() + e.len() <= buf.len())
        {
            let Some(e) = q.events.pop_front() else { break };
            e.encode(&mut out);
            q.bytes -= e.len();
            if e.mask == IN_Q_OVERFLOW {
                q.overflowed = false;
            }
        }
        buf[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_stat())
    }

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        match cmd {
            FIONREAD => {
                let n = self.lock_queue().bytes.min(i32::MAX as usize);
                mm.write_u32(arg, n as u32)?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn poll(&self) -> i16 {
        if self.lock_queue().events.is_empty() {
            0
        } else {
            libc::POLLIN
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.waiters)
    }

    fn path(&self) -> String {
        "anon_inode:inotify".into()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(i: &Inotify) -> Vec<(i32, u32, u32, Vec<u8>)> {
        let mut buf = vec![0u8; 4096];
        let n = match i.read(&mut buf, None) {
            Ok(n) => n,
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < n {
            let word =
                |o: usize| u32::from_le_bytes(buf[at + o..at + o + 4].try_into().expect("4"));
            let len = word(12) as usize;
            let name: Vec<u8> = buf[at + 16..at + 16 + len]
                .iter()
                .copied()
                .take_while(|b| *b != 0)
                .collect();
            out.push((word(0) as i32, word(4), word(8), name));
            at += 16 + len;
        }
        out
    }

    #[test]
    fn events_reach_the_watches_that_asked() {
        let r = Arc::new(Registry::default());
        let i = Inotify::new(0);
        assert!(!r.active());
        let dir = i
            .add_watch(&r, (1, 10), true, IN_CREATE | IN_DELETE)
            .expect("dir");
        let file = i.add_watch(&r, (1, 11), false, IN_MODIFY).expect("file");
        assert!(r.active());
        r.notify((1, 10), IN_CREATE, 0, b"new.txt");
        r.notify((1, 10), IN_MODIFY, 0, b"new.txt"); // not asked for
        r.notify((1, 11), IN_MODIFY, 0, b"");
        r.notify((1, 11), IN_MODIFY, 0, b""); // merged with the one before
        r.notify((1, 12), IN_CREATE, 0, b"x"); // nobody watches
        assert_eq!(
            read_all(&i),
            vec![
                (dir, IN_CREATE, 0, b"new.txt".to_vec()),
                (file, IN_MODIFY, 0, Vec::new()),
            ]
        );
        assert_eq!(i.read(&mut [0u8; 64], None), Err(Errno::EAGAIN));
    }

    #[test]
    fn the_same_node_gives_the_same_descriptor_and_masks_combine() {
        let r = Arc::new(Registry::default());
        let i = Inotify::new(0);
        let a = i.add_watch(&r, (1, 10), true, IN_CREATE).expect("add");
        let b = i
            .add_watch(&r, (1, 10), true, IN_DELETE | IN_MASK_ADD)
            .expect("add");
        assert_eq!(a, b);
        assert_eq!(
            i.add_watch(&r, (1, 10), true, IN_DELETE | IN_MASK_CREATE),
            Err(Errno::EEXIST)
        );
        r.notify((1, 10), IN_CREATE, 0, b"a");
        r.notify((1, 10), IN_DELETE, 0, b"a");
        assert_eq!(read_all(&i).len(), 2);
        assert_eq!(
            i.add_watch(&r, (1, 11), false, IN_CREATE | IN_ONLYDIR),
            Err(Errno::ENOTDIR)
        );
        assert_eq!(
            i.add_watch(&r, (1, 11), false, IN_ONLYDIR),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn removal_deletion_and_oneshot_end_watches_with_in_ignored() {
        let r = Arc::new(Registry::default());
        let i = Inotify::new(0);
        let a = i.add_watch(&r, (1, 10), true, IN_DELETE_SELF).expect("add");
        let b = i
            .add_watch(&r, (1, 11), false, IN_MODIFY | IN_ONESHOT)
            .expect("add");
        let c = i.add_watch(&r, (1, 12), false, IN_MODIFY).expect("add");
        r.gone((1, 10));
        r.notify((1, 11), IN_MODIFY, 0, b"");
        r.notify((1, 11), IN_MODIFY | IN_ISDIR, 0, b"");
        i.rm_watch(c).expect("rm");
        assert_eq!(i.rm_watch(c), Err(Errno::EINVAL));
        let got: Vec<(i32, u32)> = read_all(&i).into_iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(
            got,
            vec![
                (a, IN_DELETE_SELF),
                (a, IN_IGNORED),
                (b, IN_MODIFY),
                (b, IN_IGNORED),
                (c, IN_IGNORED)
            ]
        );
        assert!(!r.active());
    }

    #[test]
    fn a_copied_up_node_keeps_its_watch_and_a_closed_instance_its_none() {
        let r = Arc::new(Registry::default());
        let i = Inotify::new(0);
        let wd = i.add_watch(&r, (7, 100), true, IN_CREATE).expect("add");
        r.rekey((7, 100), (42, 5));
        r.notify((42, 5), IN_CREATE, 0, b"f");
        assert_eq!(read_all(&i), vec![(wd, IN_CREATE, 0, b"f".to_vec())]);
        // The watch moved for rm_watch too.
        i.rm_watch(wd).expect("rm");
        assert!(!r.active());
        i.add_watch(&r, (42, 5), true, IN_CREATE).expect("add");
        drop(i);
        assert!(!r.active());
    }

    #[test]
    fn a_small_buffer_is_einval_and_the_queue_is_bounded() {
        let r = Arc::new(Registry::default());
        let i = Inotify::new(0);
        let wd = i.add_watch(&r, (1, 1), true, IN_CREATE).expect("add");
        r.notify((1, 1), IN_CREATE, 0, b"name");
        // 16 bytes of header and 8 of padded name.
        assert_eq!(i.read(&mut [0u8; 23], None), Err(Errno::EINVAL));
        assert_eq!(read_all(&i), vec![(wd, IN_CREATE, 0, b"name".to_vec())]);
        for n in 0..MAX_QUEUED_EVENTS + 10 {
            r.notify((1, 1), IN_CREATE, 0, n.to_string().as_bytes());
        }
        let q = i.lock_queue();
        assert_eq!(q.events.len(), MAX_QUEUED_EVENTS);
        assert_eq!(q.events.back().map(|e| e.mask), Some(IN_Q_OVERFLOW));
    }
}

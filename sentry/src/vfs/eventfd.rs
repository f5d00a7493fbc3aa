//! eventfd: a 64-bit counter that writes add to and reads take (all of it, or one with
//! EFD_SEMAPHORE), as Linux fs/eventfd.c.
//!
//! Two queues, as Linux's keyed wake-ups: a write wakes those waiting to read (EPOLLIN),
//! a read wakes those waiting to write (EPOLLOUT). So an edge-triggered epoll watching
//! EPOLLIN sees every write and no read.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::file::{FileDescription, Stat, POLLERR, POLLIN, POLLOUT};
use crate::abi::Errno;
use crate::state::files::{EventFdState, FileState};
use crate::state::{SaveContext, StateError};
use crate::waiter::{WaitQueue, Waiter};

pub const EFD_SEMAPHORE: u32 = 1;
/// The largest value the counter holds (Linux ULLONG_MAX - 1).
const MAX_COUNT: u64 = u64::MAX - 1;

pub struct EventFd {
    count: Mutex<u64>,
    semaphore: bool,
    flags: AtomicU32,
    readers: WaitQueue,
    writers: WaitQueue,
}

impl EventFd {
    /// `flags` holds O_NONBLOCK and EFD_SEMAPHORE (the caller has checked the rest).
    pub fn new(initval: u32, flags: u32) -> Arc<EventFd> {
        Arc::new(EventFd {
            count: Mutex::new(u64::from(initval)),
            semaphore: flags & EFD_SEMAPHORE != 0,
            flags: AtomicU32::new(libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK as u32)),
            readers: WaitQueue::new(),
            writers: WaitQueue::new(),
        })
    }

    /// An eventfd put back from a checkpoint. None if `count` is more than a counter holds.
    pub fn restore(count: u64, semaphore: bool, flags: u32) -> Option<Arc<EventFd>> {
        if count > MAX_COUNT {
            return None;
        }
        Some(Arc::new(EventFd {
            count: Mutex::new(count),
            semaphore,
            flags: AtomicU32::new(flags),
            readers: WaitQueue::new(),
            writers: WaitQueue::new(),
        }))
    }

    fn count(&self) -> std::sync::MutexGuard<'_, u64> {
        self.count.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileDescription for EventFd {
    fn read(&self, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut c = self.count();
        if *c == 0 {
            return Err(Errno::EAGAIN);
        }
        let v = if self.semaphore { 1 } else { *c };
        *c -= v;
        drop(c);
        buf[..8].copy_from_slice(&v.to_ne_bytes());
        self.writers.notify_all();
        Ok(8)
    }

    fn write(&self, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let Some(b) = buf.get(..8) else {
            return Err(Errno::EINVAL);
        };
        let mut v = [0u8; 8];
        v.copy_from_slice(b);
        let v = u64::from_ne_bytes(v);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let mut c = self.count();
        if MAX_COUNT - *c < v {
            return Err(Errno::EAGAIN);
        }
        *c += v;
        drop(c);
        self.readers.notify_all();
        Ok(8)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_stat())
    }

    fn poll(&self) -> i16 {
        let c = *self.count();
        let mut r = 0;
        if c > 0 {
            r |= POLLIN;
        }
        if c == u64::MAX {
            r |= POLLERR;
        }
        if c < MAX_COUNT {
            r |= POLLOUT;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.readers)
    }

    fn register_waiter(&self, w: &Arc<Waiter>, events: i16) {
        if events & !POLLOUT != 0 {
            self.readers.register(w);
        }
        if events & POLLOUT != 0 {
            self.writers.register(w);
        }
    }

    fn unregister_waiter(&self, w: &Arc<Waiter>) {
        self.readers.unregister(w);
        self.writers.unregister(w);
    }

    fn sync(&self) -> Result<(), Errno> {
        // Linux: anonymous inodes have no fsync → EINVAL.
        Err(Errno::EINVAL)
    }

    fn path(&self) -> String {
        "anon_inode:[eventfd]".to_string()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        Ok(FileState::EventFd(EventFdState {
            count: *self.count(),
            semaphore: self.semaphore,
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(e: &EventFd) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        e.read(&mut b, None).map(|_| u64::from_ne_bytes(b))
    }

    #[test]
    fn counter_and_semaphore() {
        let e = EventFd::new(3, 0);
        assert_eq!(e.write(&5u64.to_ne_bytes(), None), Ok(8));
        assert_eq!(rd(&e), Ok(8));
        assert_eq!(rd(&e), Err(Errno::EAGAIN));
        let s = EventFd::new(2, EFD_SEMAPHORE);
        assert_eq!(rd(&s), Ok(1));
        assert_eq!(rd(&s), Ok(1));
        assert_eq!(rd(&s), Err(Errno::EAGAIN));
        assert_eq!(s.read(&mut [0u8; 4], None), Err(Errno::EINVAL));
    }

    #[test]
    fn overflow_rules() {
        let e = EventFd::new(0, 0);
        assert_eq!(e.write(&u64::MAX.to_ne_bytes(), None), Err(Errno::EINVAL));
        assert_eq!(e.write(&MAX_COUNT.to_ne_bytes(), None), Ok(8));
        assert_eq!(e.poll() & POLLOUT, 0);
        assert_eq!(e.write(&1u64.to_ne_bytes(), None), Err(Errno::EAGAIN));
        assert_eq!(e.write(&0u64.to_ne_bytes(), None), Ok(8));
    }
}

//! signalfd: a file that reads the caller's pending signals from a mask. As on Linux,
//! the signals are those of whichever thread reads or polls it (its own and its
//! process's), taken off their queues as a read returns them; every send wakes the
//! signalfds' waiters so they look again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::file::{FileDescription, Stat};
use crate::abi::Errno;
use crate::state::files::{FileState, SignalFdState};
use crate::state::{SaveContext, StateError};
use crate::waiter::WaitQueue;

/// sizeof(struct signalfd_siginfo): reads shorter than this are EINVAL.
pub const SIGINFO_SIZE: usize = 128;

pub struct SignalFd {
    mask: AtomicU64,
    queue: Arc<WaitQueue>,
    flags: AtomicU32,
}

impl SignalFd {
    /// `mask` is the guest's sigset (bit n-1 for signal n); SIGKILL and SIGSTOP are
    /// dropped as Linux does.
    pub fn new(mask: u64, flags: u32) -> SignalFd {
        let queue = Arc::new(WaitQueue::new());
        crate::kernel::sigqueue::watch_signals(&queue);
        let f = SignalFd {
            mask: AtomicU64::new(0),
            queue,
            flags: AtomicU32::new(libc::O_RDWR as u32 | (flags & libc::O_NONBLOCK as u32)),
        };
        f.set_mask(mask);
        f
    }

    pub fn set_mask(&self, mask: u64) {
        let never = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
        self.mask.store(mask & !never, Ordering::Relaxed);
        self.queue.notify_all();
    }

    pub fn mask(&self) -> u64 {
        self.mask.load(Ordering::Relaxed)
    }

    /// Wake readers and pollers (a signal in the mask became pending).
    pub fn notify(&self) {
        self.queue.notify_all();
    }
}

impl FileDescription for SignalFd {
    fn read(&self, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < SIGINFO_SIZE {
            return Err(Errno::EINVAL);
        }
        let mut n = 0;
        for slot in buf.chunks_exact_mut(SIGINFO_SIZE) {
            let Some(info) = crate::kernel::sigqueue::take_current(self.mask()) else {
                break;
            };
            slot.copy_from_slice(&info.to_signalfd());
            n += SIGINFO_SIZE;
        }
        if n == 0 {
            return Err(Errno::EAGAIN);
        }
        Ok(n)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_stat())
    }

    fn poll(&self) -> i16 {
        if crate::kernel::sigqueue::current_bits() & self.mask() != 0 {
            libc::POLLIN
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }

    fn sync(&self) -> Result<(), Errno> {
        // Linux: anonymous inodes have no fsync → EINVAL.
        Err(Errno::EINVAL)
    }

    fn path(&self) -> String {
        "anon_inode:[signalfd]".to_string()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        Ok(FileState::SignalFd(SignalFdState {
            mask: self.mask(),
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

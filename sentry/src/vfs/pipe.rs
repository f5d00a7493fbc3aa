//! Pipes: a 64 KiB buffer inside the sentry shared by a read end and a write end.
//!
//! Neither end blocks inside `read`/`write`: an empty or full pipe answers EAGAIN and the
//! syscall layer waits on the end's queue (see `super::wait`). As in Linux, readers wait
//! on one queue (woken by writes and by the last writer closing) and writers on another
//! (woken by reads and by the last reader closing), so an edge-triggered epoll on the
//! read end sees writes, not reads. With no writers left, a read of an empty pipe returns
//! 0; with no readers left, a write fails with EPIPE (the dispatcher raises SIGPIPE).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::file::{
    FileDescription, Stat, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM,
};
use crate::abi::Errno;
use crate::state::files::{FileState, PipeEndState};
use crate::state::{SaveContext, StateError};
use crate::waiter::WaitQueue;

/// Capacity of a pipe (Linux's default, 16 pages).
pub const PIPE_CAPACITY: usize = 64 * 1024;
/// Writes up to this size are atomic (Linux PIPE_BUF).
pub const PIPE_BUF: usize = 4096;
/// st_dev of pipes (pipefs is an anonymous device, 0:13 on a typical system).
const PIPEFS_DEV: u64 = 13;
const FIONREAD: u32 = 0x541b;

static NEXT_PIPE_INO: AtomicU64 = AtomicU64::new(1000);

struct State {
    data: VecDeque<u8>,
    readers: usize,
    writers: usize,
    /// Ends ever opened, readers' and writers': a FIFO's opener waits for the other
    /// side's count to move (Linux's r_counter/w_counter), so a peer that came and went
    /// meanwhile still counts.
    opened: [u64; 2],
}

/// The buffer both ends share.
pub struct PipeBuffer {
    ino: u64,
    state: Mutex<State>,
    /// Readers waiting for data or end of file.
    readable: WaitQueue,
    /// Writers waiting for room or for the last reader to go.
    writable: WaitQueue,
}

impl PipeBuffer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read up to `buf.len()` bytes; EAGAIN when empty with writers left.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut g = self.lock();
        if !g.data.is_empty() {
            let n = buf.len().min(g.data.len());
            for (i, b) in g.data.drain(..n).enumerate() {
                buf[i] = b;
            }
            drop(g);
            self.writable.notify_all();
            // A FIFO opened for both reading and writing waits on the readable queue
            // whichever it waits for.
            self.readable.notify_all();
            return Ok(n);
        }
        if g.writers == 0 {
            return Ok(0);
        }
        Err(Errno::EAGAIN)
    }

    /// Write what fits of `buf`; writes of at most PIPE_BUF bytes are all-or-nothing.
    /// EAGAIN when nothing fits, EPIPE with no readers.
    pub fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut g = self.lock();
        if g.readers == 0 {
            return Err(Errno::EPIPE);
        }
        let room = PIPE_CAPACITY - g.data.len();
        let fits = if buf.len() <= PIPE_BUF {
            room >= buf.len()
        } else {
            room > 0
        };
        if !fits {
            return Err(Errno::EAGAIN);
        }
        let n = buf.len().min(room);
        g.data.extend(&buf[..n]);
        drop(g);
        self.readable.notify_all();
        Ok(n)
    }

    pub fn available(&self) -> usize {
        self.lock().data.len()
    }

    /// A named pipe's buffer (mkfifo): no ends until the FIFO is opened.
    pub fn new_fifo() -> Arc<PipeBuffer> {
        Arc::new(PipeBuffer {
            ino: NEXT_PIPE_INO.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(State {
                data: VecDeque::new(),
                readers: 0,
                writers: 0,
                opened: [0; 2],
            }),
            readable: WaitQueue::new(),
            writable: WaitQueue::new(),
        })
    }

    /// (readers, writers) now.
    pub fn ends(&self) -> (usize, usize) {
        let g = self.lock();
        (g.readers, g.writers)
    }

    /// How many writing (or reading) ends were ever opened.
    pub fn opened(&self, write_end: bool) -> u64 {
        self.lock().opened[usize::from(write_end)]
    }

    /// The queues a FIFO's opener waits on for its other side.
    pub fn queue(&self, write_end: bool) -> &WaitQueue {
        if write_end {
            &self.writable
        } else {
            &self.readable
        }
    }

    /// Its inode number and buffered bytes, for a checkpoint.
    pub fn saved(&self) -> (u64, Vec<u8>) {
        (self.ino, self.lock().data.iter().copied().collect())
    }

    /// A buffer put back from a checkpoint, with no ends yet ([`PipeEnd::restore`] adds
    /// them). None if `data` is more than a pipe holds.
    pub fn restore(ino: u64, data: Vec<u8>) -> Option<Arc<PipeBuffer>> {
        if data.len() > PIPE_CAPACITY {
            return None;
        }
        // New pipes get numbers no restored one has.
        NEXT_PIPE_INO.fetch_max(ino.saturating_add(1), Ordering::Relaxed);
        Some(Arc::new(PipeBuffer {
            ino,
            state: Mutex::new(State {
                data: data.into(),
                readers: 0,
                writers: 0,
                opened: [0; 2],
            }),
            readable: WaitQueue::new(),
            writable: WaitQueue::new(),
        }))
    }
}

/// One end of a pipe.
pub struct PipeEnd {
    buf: Arc<PipeBuffer>,
    write_end: bool,
    flags: AtomicU32,
}

/// Make a pipe: (read end, write end). `flags` may hold O_NONBLOCK.
pub fn new_pipe(flags: u32) -> (Arc<PipeEnd>, Arc<PipeEnd>) {
    let buf = Arc::new(PipeBuffer {
        ino: NEXT_PIPE_INO.fetch_add(1, Ordering::Relaxed),
        state: Mutex::new(State {
            data: VecDeque::new(),
            readers: 1,
            writers: 1,
            opened: [1; 2],
        }),
        readable: WaitQueue::new(),
        writable: WaitQueue::new(),
    });
    let nb = flags & libc::O_NONBLOCK as u32;
    let r = Arc::new(PipeEnd {
        buf: buf.clone(),
        write_end: false,
        flags: AtomicU32::new(libc::O_RDONLY as u32 | nb),
    });
    let w = Arc::new(PipeEnd {
        buf,
        write_end: true,
        flags: AtomicU32::new(libc::O_WRONLY as u32 | nb),
    });
    (r, w)
}

impl PipeEnd {
    pub fn is_write_end(&self) -> bool {
        self.write_end
    }

    /// A new end of `buf`: one put back from a checkpoint, or a FIFO's opener's. Wakes
    /// the other side's waiters (a FIFO's opener waiting for it).
    pub fn restore(buf: Arc<PipeBuffer>, write_end: bool, flags: u32) -> Arc<PipeEnd> {
        {
            let mut g = buf.lock();
            if write_end {
                g.writers += 1;
            } else {
                g.readers += 1;
            }
            g.opened[usize::from(write_end)] += 1;
        }
        buf.readable.notify_all();
        buf.writable.notify_all();
        Arc::new(PipeEnd {
            buf,
            write_end,
            flags: AtomicU32::new(flags),
        })
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let mut g = self.buf.lock();
        if self.write_end {
            g.writers = g.writers.saturating_sub(1);
            drop(g);
            self.buf.readable.notify_all();
        } else {
            g.readers = g.readers.saturating_sub(1);
            drop(g);
            self.buf.writable.notify_all();
        }
    }
}

impl FileDescription for PipeEnd {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            // Linux: pread on a pipe is ESPIPE.
            return Err(Errno::ESPIPE);
        }
        if self.write_end {
            return Err(Errno::EBADF);
        }
        self.buf.read(buf)
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        if !self.write_end {
            return Err(Errno::EBADF);
        }
        self.buf.write(buf)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            dev: PIPEFS_DEV,
            ino: self.buf.ino,
            nlink: 1,
            mode: libc::S_IFIFO | 0o600,
            blksize: 4096,
            ..Stat::default()
        })
    }

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        match cmd {
            FIONREAD => {
                let n = self.buf.available() as u32;
                mm.write_u32(arg, n)?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn sync(&self) -> Result<(), Errno> {
        // Linux: a pipe has no fsync → EINVAL.
        Err(Errno::EINVAL)
    }

    fn poll(&self) -> i16 {
        let g = self.buf.lock();
        if self.write_end {
            if g.readers == 0 {
                POLLOUT | POLLWRNORM | POLLERR
            } else if PIPE_CAPACITY - g.data.len() >= PIPE_BUF {
                POLLOUT | POLLWRNORM
            } else {
                0
            }
        } else {
            let mut r = 0;
            if !g.data.is_empty() {
                r |= POLLIN | POLLRDNORM;
            }
            if g.writers == 0 {
                r |= POLLHUP;
            }
            r
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(if self.write_end {
            &self.buf.writable
        } else {
            &self.buf.readable
        })
    }

    fn path(&self) -> String {
        format!("pipe:[{}]", self.buf.ino)
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn save(&self, cx: &mut SaveContext) -> Result<FileState, StateError> {
        Ok(FileState::Pipe(PipeEndState {
            pipe: cx.vfs.pipe_id(&self.buf),
            write_end: self.write_end,
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

    #[test]
    fn data_flows_and_eof_after_writer_closes() {
        let (r, w) = new_pipe(libc::O_NONBLOCK as u32);
        let mut b = [0u8; 8];
        assert_eq!(r.read(&mut b, None), Err(Errno::EAGAIN));
        assert_eq!(w.write(b"hi", None), Ok(2));
        assert_eq!(r.poll() & POLLIN, POLLIN);
        assert_eq!(r.read(&mut b, None), Ok(2));
        assert_eq!(r.read(&mut b, Some(0)), Err(Errno::ESPIPE));
        drop(w);
        assert_eq!(r.read(&mut b, None), Ok(0));
        assert_eq!(r.poll() & POLLHUP, POLLHUP);
    }

    #[test]
    fn full_pipe_and_no_readers() {
        let (r, w) = new_pipe(libc::O_NONBLOCK as u32);
        let big = vec![7u8; PIPE_CAPACITY + 10];
        assert_eq!(w.write(&big, None), Ok(PIPE_CAPACITY));
        assert_eq!(w.write(b"x", None), Err(Errno::EAGAIN));
        assert_eq!(w.poll() & POLLOUT, 0);
        drop(r);
        assert_eq!(w.write(b"x", None), Err(Errno::EPIPE));
    }

    #[test]
    fn small_writes_are_atomic() {
        let (_r, w) = new_pipe(libc::O_NONBLOCK as u32);
        assert_eq!(
            w.write(&vec![0u8; PIPE_CAPACITY - 100], None),
            Ok(PIPE_CAPACITY - 100)
        );
        assert_eq!(w.write(&[0u8; 200], None), Err(Errno::EAGAIN));
        assert_eq!(w.write(&[0u8; 100], None), Ok(100));
    }
}

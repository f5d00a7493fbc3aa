//! The file-description trait every open file implements, with Linux's answers for the
//! operations a kind of file does not support.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use crate::abi::Errno;
use crate::state::files::FileState;
use crate::state::{SaveContext, StateError};
use crate::waiter::{WaitQueue, Waiter};

/// `struct stat` as Linux x86-64 lays it out (the fields the guest sees).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stat {
    /// The 144-byte `struct stat` of x86-64.
    pub fn to_bytes(&self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &self.nlink.to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(40, &self.rdev.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &self.blksize.to_le_bytes());
        put(64, &self.blocks.to_le_bytes());
        put(72, &self.atime.0.to_le_bytes());
        put(80, &self.atime.1.to_le_bytes());
        put(88, &self.mtime.0.to_le_bytes());
        put(96, &self.mtime.1.to_le_bytes());
        put(104, &self.ctime.0.to_le_bytes());
        put(112, &self.ctime.1.to_le_bytes());
        b
    }
}

/// One entry returned by `getdents64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// DT_* type.
    pub kind: u8,
    pub name: Vec<u8>,
}

/// Readiness bits for poll (POLLIN, POLLOUT, …).
pub const POLLIN: i16 = 0x1;
pub const POLLPRI: i16 = 0x2;
pub const POLLOUT: i16 = 0x4;
pub const POLLERR: i16 = 0x8;
pub const POLLHUP: i16 = 0x10;
pub const POLLNVAL: i16 = 0x20;
pub const POLLRDNORM: i16 = 0x40;
pub const POLLRDBAND: i16 = 0x80;
pub const POLLWRNORM: i16 = 0x100;
pub const POLLWRBAND: i16 = 0x200;
pub const POLLRDHUP: i16 = 0x2000;
/// What a file without a poll operation reports (Linux DEFAULT_POLLMASK).
pub const DEFAULT_POLLMASK: i16 = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;

/// An open file description (what an fd points to; shared by dup'd fds).
///
/// Offsets live inside the description (they are shared between dups, as on Linux).
/// Defaults are what Linux returns when a file type lacks the operation.
///
/// Blocking: `read` and `write` never block on a file that has a wait queue. Such a file
/// answers EAGAIN when it would block, whatever its O_NONBLOCK flag; the syscall layer
/// then parks the task on the file's queue (`super::wait::block_on`) unless the
/// description is non-blocking. Files without a queue (regular files, host stdio) may
/// block inside `read`/`write` (host stdin blocks in the host's read(2)).
pub trait FileDescription: Send + Sync + Any {
    /// read(2) at the current offset, or at `offset` for pread.
    fn read(&self, _buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        // Linux: a file without read_iter/read gives EINVAL.
        Err(Errno::EINVAL)
    }

    /// write(2) at the current offset, or at `offset` for pwrite.
    fn write(&self, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        // Linux: a file without write_iter/write gives EINVAL.
        Err(Errno::EINVAL)
    }

    /// lseek(2).
    fn seek(&self, _offset: i64, _whence: u32) -> Result<u64, Errno> {
        // Linux: no_llseek → ESPIPE.
        Err(Errno::ESPIPE)
    }

    /// fstat(2).
    fn stat(&self) -> Result<Stat, Errno>;

    /// getdents64(2): offer entries from the current position to `emit` (which gets the
    /// entry and the offset of the next one, and returns false when the caller's buffer is
    /// full); the position advances past each accepted entry.
    fn readdir(&self, _emit: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<(), Errno> {
        // Linux: iterate_dir on a non-directory → ENOTDIR.
        Err(Errno::ENOTDIR)
    }

    /// ioctl(2); `mm` is the caller's memory for commands that take a pointer.
    fn ioctl(&self, _cmd: u32, _arg: u64, _mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        // Linux: vfs_ioctl without unlocked_ioctl → ENOTTY.
        Err(Errno::ENOTTY)
    }

    /// Whether this is a terminal (TCGETS/TIOCGWINSZ succeed).
    fn is_tty(&self) -> bool {
        false
    }

    /// ftruncate(2).
    fn truncate(&self, _len: u64) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    /// fallocate(2), once the descriptor is known to be writable and the range valid.
    /// Linux: a file system without fallocate → EOPNOTSUPP; not a regular file → ENODEV.
    fn allocate(&self, _mode: u32, _offset: u64, _len: u64) -> Result<(), Errno> {
        Err(Errno::ENODEV)
    }

    /// fsync(2) / fdatasync(2).
    fn sync(&self) -> Result<(), Errno> {
        Ok(())
    }

    /// Current readiness for poll, without blocking.
    fn poll(&self) -> i16 {
        // Linux: vfs_poll on a file without f_op->poll → DEFAULT_POLLMASK.
        DEFAULT_POLLMASK
    }

    /// Whether the file has a poll operation (Linux `file_can_poll`); epoll_ctl refuses
    /// the others with EPERM.
    fn pollable(&self) -> bool {
        self.wait_queue().is_some()
    }

    /// The queue notified on every change of this file's readiness; None for files that
    /// are always ready (regular files) or whose readiness is only seen by polling.
    fn wait_queue(&self) -> Option<&WaitQueue> {
        None
    }

    /// Park `w` where changes of the readiness bits in `events` are announced. Files with
    /// more than one queue (eventfd, epoll) override this and `unregister_waiter`.
    fn register_waiter(&self, w: &Arc<Waiter>, _events: i16) {
        if let Some(q) = self.wait_queue() {
            q.register(w);
        }
    }

    /// Undo every `register_waiter` of `w`.
    fn unregister_waiter(&self, w: &Arc<Waiter>) {
        if let Some(q) = self.wait_queue() {
            q.unregister(w);
        }
    }

    /// When readiness may change without a notification (a timer expires, a host fd is
    /// re-polled): waits on this file end by then at the latest and check again.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// The path this description was opened by, as the guest sees it (/proc/self/fd).
    fn path(&self) -> String;

    /// Status flags (O_APPEND, O_NONBLOCK, access mode) for F_GETFL.
    fn status_flags(&self) -> u32;

    /// F_SETFL: only O_APPEND and O_NONBLOCK (and O_ASYNC, O_DIRECT, O_NOATIME) change.
    fn set_status_flags(&self, _flags: u32) {}

    /// For mmap: a handle that reads the file's pages.
    fn mappable(&self) -> Option<std::sync::Arc<dyn crate::mm::MappedFile>> {
        None
    }

    /// The file-system node behind this description (regular files, directories, devices),
    /// for *at calls relative to a directory fd and for reopening via /proc/self/fd.
    /// None for pipes, host stdio and other anonymous files.
    fn vfs_node(&self) -> Option<super::node::Node> {
        None
    }

    /// Whether this is an O_PATH description: only fstat, dirfd use, close and dup work
    /// (Linux: everything else gives EBADF).
    fn is_path_only(&self) -> bool {
        false
    }

    /// The socket operations, for sockets (None: the socket syscalls give ENOTSOCK).
    fn as_socket(&self) -> Option<&dyn super::socket::SocketOps> {
        None
    }

    /// Its saved form, for a checkpoint (`crate::state::files`): shared objects it refers
    /// to (a pipe's buffer, an inode, an epoll's targets) are saved through `cx` once.
    /// Kinds a checkpoint cannot carry keep this default, which names the file, so the
    /// checkpoint fails saying what stopped it.
    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        let what = if self.as_socket().is_some() {
            "socket"
        } else {
            "open file"
        };
        Err(StateError::unsupported(format!("{what} {}", self.path())))
    }

    /// Downcasting (directories for *at calls, pipes, …).
    fn as_any(&self) -> &dyn Any;
}

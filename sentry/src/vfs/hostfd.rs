//! The sandbox's standard streams: duplicates of the sentry's own fds 0, 1 and 2, with
//! reads and writes passed through. Terminal ioctls pass through only for a tty.
//!
//! A host fd has no wait queue: its readiness is a zero-timeout host poll(2), and waits
//! that include one re-check it every `REPOLL` (`next_deadline`). A blocking read of host
//! stdin blocks in the host's read(2) and is not interrupted by guest signals yet.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::file::{
    FileDescription, Stat, POLLIN, POLLNVAL, POLLOUT, POLLPRI, POLLRDHUP, POLLRDNORM, POLLWRNORM,
};
use super::host::fstat;
use crate::abi::Errno;
use crate::state::files::{FileState, StdioState};
use crate::state::{SaveContext, StateError};

const TCGETS: u32 = 0x5401;
/// tcsetattr: now, after output drains, after output drains and input is flushed.
const TCSETS: u32 = 0x5402;
const TCSETSW: u32 = 0x5403;
const TCSETSF: u32 = 0x5404;
const TIOCGWINSZ: u32 = 0x5413;
const TIOCGPGRP: u32 = 0x540f;
/// How often a wait that includes a host fd polls it again.
const REPOLL: Duration = Duration::from_millis(10);
/// sizeof(struct termios) for the TCGETS ioctl (the kernel's, not glibc's).
const TERMIOS_SIZE: usize = 36;

pub struct HostFd {
    fd: OwnedFd,
    tty: bool,
    stat: Stat,
    flags: AtomicU32,
    /// Which of a new process's standard streams (0, 1, 2) this was made for, if it was.
    slot: Option<u8>,
    /// The container whose init's stdio this is (set by the sandbox): a restore gives
    /// that container's new stdio in its place. Other host fds have no owner.
    owner: OnceLock<Arc<str>>,
}

impl HostFd {
    /// Duplicate the sentry's `fd` (F_DUPFD_CLOEXEC) and wrap it.
    pub fn dup_of(fd: RawFd) -> std::io::Result<HostFd> {
        // SAFETY: F_DUPFD_CLOEXEC on an fd number; the result is checked.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if new < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `new` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(new) };
        Self::from_owned(fd)
    }

    /// Wrap a host descriptor handed to the sandbox (a container's stdio, an exec's pty).
    pub fn from_owned(fd: OwnedFd) -> std::io::Result<HostFd> {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(fd.as_raw_fd()) } == 1;
        let stat = fstat(&fd).map_err(|e| std::io::Error::from_raw_os_error(e.0))?;
        // SAFETY: F_GETFL only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        let flags = if flags < 0 {
            libc::O_RDWR
        } else {
            flags & !libc::O_LARGEFILE
        };
        Ok(HostFd {
            fd,
            tty,
            stat,
            flags: AtomicU32::new(flags as u32),
            slot: None,
            owner: OnceLock::new(),
        })
    }

    /// Mark it as a new process's standard stream `slot` (0, 1 or 2).
    pub fn as_stdio(mut self, slot: u8) -> HostFd {
        self.slot = Some(slot);
        self
    }

    /// Say whose init's stdio this is (see `FdTable::set_stdio_owner`); the first owner
    /// stays.
    pub fn set_owner(&self, container: &str) {
        if self.slot.is_some() {
            let _ = self.owner.set(Arc::from(container));
        }
    }

    /// A stdio description put back from a checkpoint over the container's new host
    /// descriptor `fd`, keeping the guest's view of its status flags.
    pub fn restore(fd: OwnedFd, slot: u8, owner: &str, flags: u32) -> std::io::Result<HostFd> {
        let f = HostFd::from_owned(fd)?.as_stdio(slot);
        f.set_owner(owner);
        f.flags.store(flags, Ordering::Relaxed);
        Ok(f)
    }

    fn nonblock(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & libc::O_NONBLOCK as u32 != 0
    }

    /// Wait until the host fd is ready for `events` (the guest asked to block).
    fn wait_ready(&self, events: i16) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd.
        unsafe { libc::poll(&mut p, 1, -1) };
    }
}

fn last_errno() -> Errno {
    Errno::from_io(&std::io::Error::last_os_error())
}

impl FileDescription for HostFd {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
            let n = unsafe {
                match offset {
                    Some(off) => libc::pread(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        off as i64,
                    ),
                    None => libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()),
                }
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            match last_errno() {
                Errno::EINTR => continue,
                // The host fd may be non-blocking although the guest's view is not.
                Errno::EAGAIN if !self.nonblock() => self.wait_ready(libc::POLLIN),
                e => return Err(e),
            }
        }
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        loop {
            // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
            let n = unsafe {
                match offset {
                    Some(off) => libc::pwrite(
                        self.fd.as_raw_fd(),
                        buf.as_ptr().cast(),
                        buf.len(),
                        off as i64,
                    ),
                    None => libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()),
                }
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            match last_errno() {
                Errno::EINTR => continue,
                Errno::EAGAIN if !self.nonblock() => self.wait_ready(libc::POLLOUT),
                e => return Err(e),
            }
        }
    }

    fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        if whence > 4 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: lseek on our own descriptor.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), offset, whence as i32) };
        if r < 0 {
            return Err(last_errno());
        }
        Ok(r as u64)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        fstat(&self.fd)
    }

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        if !self.tty {
            return Err(Errno::ENOTTY);
        }
        let mut buf = [0u8; 64];
        if let TCSETS | TCSETSW | TCSETSF = cmd {
            // The guest sets its terminal's mode (raw mode, echo): the terminal is the
            // container's own pty, or the caller's terminal for `runsc do`, which a native
            // program would change the same way.
            mm.copy_in(arg, &mut buf[..TERMIOS_SIZE])?;
            // SAFETY: the set commands read one `struct termios` (TERMIOS_SIZE bytes, all
            // initialised in `buf`) from the pointer.
            if unsafe { libc::ioctl(self.fd.as_raw_fd(), cmd as _, buf.as_ptr()) } < 0 {
                return Err(last_errno());
            }
            return Ok(0);
        }
        let len = match cmd {
            TCGETS => TERMIOS_SIZE,
            TIOCGWINSZ => 8,
            // The sandbox's only process group is its own (pid 1).
            TIOCGPGRP => {
                mm.write_u32(arg, 1)?;
                return Ok(0);
            }
            _ => return Err(Errno::ENOTTY),
        };
        // SAFETY: both commands write at most `len` ≤ 64 bytes into `buf`.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), cmd as _, buf.as_mut_ptr()) } < 0 {
            return Err(last_errno());
        }
        mm.copy_out(arg, &buf[..len])?;
        Ok(0)
    }

    fn is_tty(&self) -> bool {
        self.tty
    }

    fn sync(&self) -> Result<(), Errno> {
        // Linux: fsync on a tty or pipe is EINVAL.
        if self.stat.mode & libc::S_IFMT == libc::S_IFREG {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    fn poll(&self) -> i16 {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: POLLIN | POLLOUT | POLLPRI | POLLRDNORM | POLLWRNORM | POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd; a zero timeout does not block.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r < 0 {
            return 0;
        }
        p.revents & !POLLNVAL
    }

    fn pollable(&self) -> bool {
        // Linux: regular files and directories have no poll operation, nor has /dev/null.
        match self.stat.mode & libc::S_IFMT {
            libc::S_IFREG | libc::S_IFDIR => false,
            libc::S_IFCHR => self.stat.rdev != 0x103,
            _ => true,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pollable().then(|| Instant::now() + REPOLL)
    }

    fn path(&self) -> String {
        match self.stat.mode & libc::S_IFMT {
            libc::S_IFIFO => format!("pipe:[{}]", self.stat.ino),
            libc::S_IFSOCK => format!("socket:[{}]", self.stat.ino),
            libc::S_IFCHR if self.tty => "/dev/pts/0".to_string(),
            libc::S_IFCHR if self.stat.rdev == 0x103 => "/dev/null".to_string(),
            _ => format!("anon_inode:[host:{}]", self.stat.ino),
        }
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        // Only the guest's view changes; the host fd is shared with the sentry itself.
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        // The descriptor itself cannot be saved: the restore gives the container new
        // stdio, and this says which of it to use.
        Ok(FileState::Stdio(StdioState {
            container: self.owner.get().map(|o| o.to_string()),
            slot: self.slot,
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

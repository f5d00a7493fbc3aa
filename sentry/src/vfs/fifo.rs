//! Named pipes (mkfifo): an overlay inode whose opens are ends of one pipe buffer. As on
//! Linux, opening for reading waits for a writer and opening for writing waits for a
//! reader (`wait_for_peer`, called by the syscall with the opener's waiter), unless
//! O_NONBLOCK: then a reader opens at once and a writer with no reader fails with ENXIO.
//! O_RDWR opens both ends and never waits.

use std::sync::Arc;

use super::file::{FileDescription, Stat};
use super::pipe::{PipeBuffer, PipeEnd};
use super::tmpfs::Inode;
use crate::abi::Errno;
use crate::state::files::FileState;
use crate::state::{SaveContext, StateError};
use crate::waiter::{WaitQueue, Waiter, Wake};

pub struct FifoFile {
    inode: Arc<Inode>,
    path: Vec<u8>,
    buf: Arc<PipeBuffer>,
    reader: Option<Arc<PipeEnd>>,
    writer: Option<Arc<PipeEnd>>,
    /// The reading end if there is one, else the writing end.
    main: Arc<PipeEnd>,
    /// The other side's opens before ours: a blocking open is done once it moves.
    peer_opens: u64,
}

impl FifoFile {
    /// Open the FIFO `inode` (whose pipe is `buf`) with `flags`.
    pub fn open(
        inode: Arc<Inode>,
        buf: Arc<PipeBuffer>,
        path: Vec<u8>,
        flags: u32,
    ) -> Result<FifoFile, Errno> {
        let access = flags & libc::O_ACCMODE as u32;
        let nonblock = flags & libc::O_NONBLOCK as u32 != 0;
        if access == libc::O_WRONLY as u32 && nonblock && buf.ends().0 == 0 {
            return Err(Errno::ENXIO);
        }
        let reads = access != libc::O_WRONLY as u32;
        // Counted before our end exists: a peer that opens after, even one gone again
        // by the time we look, lets a blocking open finish.
        let peer_opens = buf.opened(reads);
        let reader = reads.then(|| PipeEnd::restore(buf.clone(), false, flags));
        let writer =
            (access != libc::O_RDONLY as u32).then(|| PipeEnd::restore(buf.clone(), true, flags));
        let main = match (&reader, &writer) {
            (Some(end), _) | (None, Some(end)) => end.clone(),
            (None, None) => return Err(Errno::EINVAL),
        };
        Ok(FifoFile {
            reader,
            writer,
            main,
            peer_opens,
            inode,
            path,
            buf,
        })
    }

    /// A blocking open: wait until the other side has an end (ERESTARTSYS if a signal
    /// comes first).
    pub fn wait_for_peer(&self, waiter: &Arc<Waiter>) -> Result<(), Errno> {
        if self.status_flags() & libc::O_NONBLOCK as u32 != 0
            || (self.reader.is_some() && self.writer.is_some())
        {
            return Ok(());
        }
        let want_writer = self.reader.is_some();
        let queue = self.buf.queue(!want_writer);
        let met = || {
            let (readers, writers) = self.buf.ends();
            let now = if want_writer { writers } else { readers };
            now > 0 || self.buf.opened(want_writer) != self.peer_opens
        };
        loop {
            waiter.reset();
            queue.register(waiter);
            if met() {
                queue.unregister(waiter);
                return Ok(());
            }
            let woke = waiter.wait(None);
            queue.unregister(waiter);
            // A peer that came with the signal still counts: restarting would forget it.
            if woke == Wake::Interrupted && !met() {
                return Err(Errno::ERESTARTSYS);
            }
        }
    }
}

impl FileDescription for FifoFile {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        match &self.reader {
            Some(r) => r.read(buf, offset),
            None => Err(Errno::EBADF),
        }
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        match &self.writer {
            Some(w) => w.write(buf, offset),
            None => Err(Errno::EBADF),
        }
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.inode.stat())
    }

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        self.main.ioctl(cmd, arg, mm)
    }

    fn sync(&self) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    fn poll(&self) -> i16 {
        let r = self.reader.as_ref().map_or(0, |r| r.poll());
        let w = self.writer.as_ref().map_or(0, |w| w.poll());
        r | w
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        // Both ends: the readable queue, which reads wake too (see PipeBuffer::read).
        self.main.wait_queue()
    }

    fn path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    fn status_flags(&self) -> u32 {
        let access = match (&self.reader, &self.writer) {
            (Some(_), Some(_)) => libc::O_RDWR as u32,
            (None, Some(_)) => libc::O_WRONLY as u32,
            _ => libc::O_RDONLY as u32,
        };
        (self.main.status_flags() & !(libc::O_ACCMODE as u32)) | access
    }

    fn set_status_flags(&self, flags: u32) {
        for end in self.reader.iter().chain(self.writer.iter()) {
            end.set_status_flags(flags);
        }
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        Err(StateError::unsupported(format!(
            "the open FIFO {}",
            self.path()
        )))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

//! An open host regular file from the read-only lower layer (read, seek, stat, mmap).
//! Opening one for writing copies it up into the overlay instead.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::file::{FileDescription, Stat};
use super::host::{fstat, pread, HostNode};
use super::node::Node;
use super::tmpfs::{seek_regular, set_flags};
use crate::abi::Errno;

pub struct HostFile {
    fd: Arc<OwnedFd>,
    node: Arc<HostNode>,
    path: Vec<u8>,
    pos: Mutex<u64>,
    flags: AtomicU32,
}

impl HostFile {
    pub fn new(fd: OwnedFd, node: Arc<HostNode>, path: Vec<u8>, flags: u32) -> HostFile {
        HostFile {
            fd: Arc::new(fd),
            node,
            path,
            pos: Mutex::new(0),
            flags: AtomicU32::new(flags),
        }
    }
}

impl FileDescription for HostFile {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        match offset {
            Some(off) => pread(&self.fd, buf, off),
            None => {
                let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
                let n = pread(&self.fd, buf, *pos)?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }

    fn write(&self, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        // Host files are only ever open for reading (writes copy up at open time).
        Err(Errno::EBADF)
    }

    fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        let size = fstat(&self.fd)?.size.max(0) as u64;
        let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
        seek_regular(&mut pos, size, offset, whence)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        fstat(&self.fd)
    }

    fn truncate(&self, _len: u64) -> Result<(), Errno> {
        // Linux: ftruncate on a descriptor not open for writing is EINVAL.
        Err(Errno::EINVAL)
    }

    fn path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        set_flags(&self.flags, flags);
    }

    fn mappable(&self) -> Option<Arc<dyn crate::mm::MappedFile>> {
        let st = self.node.stat;
        Some(Arc::new(HostMapped {
            fd: self.fd.clone(),
            dev: st.dev,
            ino: st.ino,
            path: self.path(),
        }))
    }

    fn vfs_node(&self) -> Option<Node> {
        Some(Node::Host(self.node.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// mmap source for a host file: pages are read into private frames at fault time.
struct HostMapped {
    fd: Arc<OwnedFd>,
    dev: u64,
    ino: u64,
    path: String,
}

impl crate::mm::MappedFile for HostMapped {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut done = 0;
        while done < buf.len() {
            let n = pread(&self.fd, &mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf[done..].fill(0);
        Ok(done)
    }
    fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
    fn path(&self) -> String {
        self.path.clone()
    }
}

impl std::fmt::Debug for HostFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostFile({}, fd {})", self.path(), self.fd.as_raw_fd())
    }
}

//! An open host regular file: from the rootfs or a read-only bind (read, seek, stat,
//! mmap), or from a writable bind, where writes, ftruncate and fsync reach the host.
//! Opening a rootfs file for writing copies it up into the overlay instead.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::file::{FileDescription, Stat};
use super::host::{fstat, pread, pwrite, HostNode};
use super::host_cache::HostCache;
use super::node::Node;
use super::tmpfs::{seek_regular, set_flags};
use super::Vfs;
use crate::abi::Errno;
use crate::state::files::{FileState, HostFileState, MappedFileState};
use crate::state::{SaveContext, StateError};

pub struct HostFile {
    /// The file system it was opened in (a checkpoint names the file by its mount).
    vfs: Arc<Vfs>,
    fd: Arc<OwnedFd>,
    /// Whether `fd` is this description's own (opened for it, with the guest's O_APPEND),
    /// rather than a file bind's shared descriptor.
    own: bool,
    node: Arc<HostNode>,
    path: Vec<u8>,
    pos: Mutex<u64>,
    flags: AtomicU32,
}

impl HostFile {
    /// `flags` are the guest's; a description open for writing must have been given a
    /// descriptor open for writing.
    pub fn new(
        vfs: Arc<Vfs>,
        fd: Arc<OwnedFd>,
        node: Arc<HostNode>,
        path: Vec<u8>,
        flags: u32,
    ) -> HostFile {
        let own = node
            .fs
            .file_fd()
            .is_none_or(|shared| !Arc::ptr_eq(shared, &fd));
        HostFile {
            vfs,
            fd,
            own,
            node,
            path,
            pos: Mutex::new(0),
            flags: AtomicU32::new(flags),
        }
    }

    /// A description put back from a checkpoint: `fd` reopened by the restore (for
    /// writing if `flags` say so), at offset `pos`.
    pub fn restore(
        vfs: Arc<Vfs>,
        fd: Arc<OwnedFd>,
        node: Arc<HostNode>,
        path: Vec<u8>,
        flags: u32,
        pos: u64,
    ) -> HostFile {
        let f = HostFile::new(vfs, fd, node, path, flags);
        *f.pos.lock().unwrap_or_else(|e| e.into_inner()) = pos;
        f
    }

    fn writes(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
    }

    fn size(&self) -> Result<u64, Errno> {
        Ok(fstat(&self.fd)?.size.max(0) as u64)
    }

    /// The shared-mapping cache of this file, if it is a writable bind's and has one.
    fn cache(&self) -> Option<Arc<HostCache>> {
        if !self.node.fs.writable {
            return None;
        }
        HostCache::existing((self.node.stat.dev, self.node.stat.ino))
    }

    /// Stores through shared mappings not written back yet are part of what a read
    /// returns.
    fn overlay(&self, buf: &mut [u8], at: u64, n: usize) {
        if let Some(c) = self.cache() {
            c.read(at, &mut buf[..n]);
        }
    }

    fn wrote(&self, buf: &[u8], at: u64, n: usize) {
        if let Some(c) = self.cache() {
            c.wrote(at, &buf[..n]);
        }
    }
}

impl FileDescription for HostFile {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        match offset {
            Some(off) => {
                let n = pread(&self.fd, buf, off)?;
                self.overlay(buf, off, n);
                Ok(n)
            }
            None => {
                let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
                let n = pread(&self.fd, buf, *pos)?;
                self.overlay(buf, *pos, n);
                *pos += n as u64;
                Ok(n)
            }
        }
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        // Rootfs and read-only files are only ever open for reading (writes to rootfs
        // files copy up at open time); writable binds open the host file for writing.
        if !self.writes() {
            return Err(Errno::EBADF);
        }
        let append = self.flags.load(Ordering::Relaxed) & libc::O_APPEND as u32 != 0;
        // An own descriptor carries O_APPEND on the host, where pwrite appends atomically
        // (Linux: pwrite on an O_APPEND file appends); a shared one appends at its size.
        let at_end = |at: u64| -> Result<u64, Errno> {
            if append && !self.own {
                self.size()
            } else {
                Ok(at)
            }
        };
        match offset {
            Some(off) => {
                let at = at_end(off)?;
                let n = pwrite(&self.fd, buf, at)?;
                self.wrote(buf, at, n);
                Ok(n)
            }
            None => {
                let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
                let at = at_end(*pos)?;
                let n = pwrite(&self.fd, buf, at)?;
                self.wrote(buf, at, n);
                *pos = if append { self.size()? } else { at + n as u64 };
                Ok(n)
            }
        }
    }

    fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        let size = fstat(&self.fd)?.size.max(0) as u64;
        let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
        seek_regular(&mut pos, size, offset, whence)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        fstat(&self.fd)
    }

    fn truncate(&self, len: u64) -> Result<(), Errno> {
        if !self.writes() {
            // Linux: ftruncate on a descriptor not open for writing is EINVAL.
            return Err(Errno::EINVAL);
        }
        let len = i64::try_from(len).map_err(|_| Errno::EFBIG)?;
        // SAFETY: ftruncate on an open descriptor.
        if unsafe { libc::ftruncate(self.fd.as_raw_fd(), len) } != 0 {
            return Err(Errno::from_io(&std::io::Error::last_os_error()));
        }
        if let Some(c) = self.cache() {
            c.truncated(len as u64);
        }
        Ok(())
    }

    fn allocate(&self, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        let offset = i64::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let len = i64::try_from(len).map_err(|_| Errno::EFBIG)?;
        // SAFETY: fallocate on an open descriptor; the host file system decides.
        if unsafe { libc::fallocate(self.fd.as_raw_fd(), mode as i32, offset, len) } != 0 {
            return Err(Errno::from_io(&std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), Errno> {
        if !self.writes() {
            return Ok(());
        }
        if let Some(c) = self.cache() {
            c.sync();
        }
        // SAFETY: fdatasync on an open descriptor.
        if unsafe { libc::fdatasync(self.fd.as_raw_fd()) } != 0 {
            return Err(Errno::from_io(&std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        set_flags(&self.flags, flags);
        if self.own && self.writes() {
            // Keep the host descriptor's O_APPEND in step (see `write`).
            let append = flags & libc::O_APPEND as u32 != 0;
            let host = if append { libc::O_APPEND } else { 0 };
            // SAFETY: F_SETFL on an open descriptor.
            unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, host) };
        }
    }

    fn mappable(&self) -> Option<Arc<dyn crate::mm::MappedFile>> {
        let st = self.node.stat;
        // A writable bind's file is shared by its shared mappings through one cache.
        let cache = self.node.fs.writable.then(|| {
            let c = HostCache::of((st.dev, st.ino));
            if self.writes() {
                c.writer(&self.fd);
            }
            c
        });
        Some(Arc::new(HostMapped {
            vfs: self.vfs.clone(),
            node: self.node.clone(),
            fd: self.fd.clone(),
            dev: st.dev,
            ino: st.ino,
            path: self.path(),
            cache,
        }))
    }

    fn vfs_node(&self) -> Option<Node> {
        Some(Node::Host(self.node.clone()))
    }

    fn save(&self, cx: &mut SaveContext) -> Result<FileState, StateError> {
        let vfs = cx.vfs_id(&self.vfs)?;
        Ok(FileState::Host(HostFileState {
            vfs,
            root: cx.vfs.host_root_ref(vfs, &self.node.fs, &self.path)?,
            rel: self.node.rel.clone(),
            path: self.path.clone(),
            pos: *self.pos.lock().unwrap_or_else(|e| e.into_inner()),
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// mmap source for a host file: pages are read into private frames at fault time, or,
/// for a writable bind's file mapped MAP_SHARED, into its shared cache.
struct HostMapped {
    /// Where the file is, for a checkpoint.
    vfs: Arc<Vfs>,
    node: Arc<HostNode>,
    fd: Arc<OwnedFd>,
    dev: u64,
    ino: u64,
    path: String,
    cache: Option<Arc<HostCache>>,
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
        if let Some(c) = &self.cache {
            c.read(offset, &mut buf[..done]);
        }
        Ok(done)
    }
    fn shared_frame(
        &self,
        memory: &Arc<crate::platform::memory::GuestMemory>,
        offset: u64,
    ) -> Option<Result<crate::platform::memory::Gpa, crate::mm::AccessError>> {
        let cache = self.cache.as_ref()?;
        Some(cache.shared_frame(memory, &self.fd, offset))
    }
    fn sync(&self) {
        if let Some(c) = &self.cache {
            c.sync();
        }
    }
    fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
    fn path(&self) -> String {
        self.path.clone()
    }
    fn save(&self, cx: &mut SaveContext) -> Result<MappedFileState, StateError> {
        if self.cache.as_ref().is_some_and(|c| c.has_pages()) {
            return Err(StateError::unsupported(format!(
                "{}: a writable bind's file mapped MAP_SHARED",
                self.path
            )));
        }
        let vfs = cx.vfs_id(&self.vfs)?;
        Ok(MappedFileState::Host {
            vfs,
            root: cx
                .vfs
                .host_root_ref(vfs, &self.node.fs, self.path.as_bytes())?,
            rel: self.node.rel.clone(),
            path: self.path.clone(),
        })
    }
}

/// The mmap source of a host file, put back from a checkpoint over `fd` (reopened for
/// reading).
pub fn restored_mapping(
    vfs: Arc<Vfs>,
    fd: Arc<OwnedFd>,
    node: Arc<HostNode>,
    path: String,
) -> Arc<dyn crate::mm::MappedFile> {
    let st = node.stat;
    // A shared mapping of a writable bind's file is refused by a checkpoint, so what
    // comes back is a private one.
    Arc::new(HostMapped {
        vfs,
        node,
        fd,
        dev: st.dev,
        ino: st.ino,
        path,
        cache: None,
    })
}

impl std::fmt::Debug for HostFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostFile({}, fd {})", self.path(), self.fd.as_raw_fd())
    }
}

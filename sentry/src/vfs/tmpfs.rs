//! In-memory inodes: the overlay's upper layer (files, directories, symbolic links,
//! sockets and whiteouts), the tmpfs mounts of a container ([`TmpFs`]), and the file
//! description of an in-memory regular file.
//!
//! Lock order: the VFS namespace lock, then one inode's `data` at a time.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::file::{FileDescription, Stat};
use super::node::Node;
use super::page_cache::PageCache;
use crate::abi::Errno;
use crate::arch::PAGE_SIZE;
use crate::platform::memory::{Gpa, GuestMemory};
use crate::state::files::{FileState, MappedFileState, TmpFileState};
use crate::state::{SaveContext, StateError};

/// st_dev of every overlay inode (0:42, an anonymous device number).
pub const OVERLAY_DEV: u64 = 42;
/// Largest overlay file (Linux's MAX_LFS_FILESIZE is larger; beyond this, EFBIG).
pub const MAX_FILE_SIZE: u64 = 1 << 40;
/// Bytes all overlay files may hold together (tmpfs's size= option); beyond, ENOSPC.
pub const OVERLAY_BUDGET: u64 = 2 << 30;

static USED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The next st_dev handed to a mounted tmpfs (anonymous devices 0:N, after the overlay's).
static NEXT_DEV: AtomicU64 = AtomicU64::new(OVERLAY_DEV + 1);

/// A tmpfs mounted by the container (OCI `tmpfs` mounts, and the empty read-only
/// directories that stand in for sysfs and cgroup): its own st_dev and size limit. Inodes
/// of the root overlay have none.
#[derive(Debug)]
pub struct TmpFs {
    pub dev: u64,
    /// Writes and creations fail with EROFS.
    pub readonly: bool,
    /// Bytes its files may hold together (`size=`); beyond, ENOSPC.
    limit: u64,
    used: AtomicU64,
}

impl TmpFs {
    pub fn new(limit: Option<u64>, readonly: bool) -> Arc<TmpFs> {
        Arc::new(TmpFs {
            dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
            readonly,
            limit: limit.unwrap_or(OVERLAY_BUDGET).min(OVERLAY_BUDGET),
            used: AtomicU64::new(0),
        })
    }

    /// A tmpfs put back from a checkpoint, with its device number and size limit as they
    /// were (its bytes are charged again as its inodes are restored).
    pub fn restore(dev: u64, limit: u64, readonly: bool) -> Arc<TmpFs> {
        // Later mounts get numbers of their own.
        NEXT_DEV.fetch_max(dev.saturating_add(1), Ordering::Relaxed);
        Arc::new(TmpFs {
            dev,
            readonly,
            limit: limit.min(OVERLAY_BUDGET),
            used: AtomicU64::new(0),
        })
    }

    /// Bytes its files may hold together.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Take `n` bytes of this file system's budget (ENOSPC past `size=`).
    fn charge(&self, n: u64) -> Result<(), Errno> {
        if self.used.fetch_add(n, Ordering::Relaxed) + n > self.limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One directory slot in the upper layer.
#[derive(Clone)]
pub enum Entry {
    /// Hides the lower (host) entry of this name.
    Whiteout,
    Node(Arc<Inode>),
}

/// What an inode holds.
pub enum Kind {
    /// `bytes` holds the data up to its length; from there to `size` the file reads as zeros.
    File {
        bytes: Vec<u8>,
        size: u64,
    },
    /// `lower`: the host directory merged under this one (None: opaque, upper only).
    Dir {
        entries: BTreeMap<Vec<u8>, Entry>,
        lower: Option<Vec<u8>>,
    },
    Symlink(Vec<u8>),
    /// A bound AF_UNIX socket's name: the socket it leads to (opaque here; dead once the
    /// socket is gone).
    Socket(Weak<dyn Any + Send + Sync>),
    /// A named pipe (mkfifo): its buffer, shared by every open of it.
    Fifo(Arc<super::pipe::PipeBuffer>),
}

/// Metadata (the mode includes the S_IFMT bits).
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Meta {
    pub fn new(mode: u32, uid: u32, gid: u32) -> Meta {
        let t = now();
        Meta {
            mode,
            uid,
            gid,
            nlink: 1,
            atime: t,
            mtime: t,
            ctime: t,
        }
    }

    /// Metadata copied from a host file (copy-up keeps mode, owner and times).
    pub fn from_stat(st: &Stat) -> Meta {
        Meta {
            mode: st.mode,
            uid: st.uid,
            gid: st.gid,
            nlink: 1,
            atime: st.atime,
            mtime: st.mtime,
            ctime: st.ctime,
        }
    }
}

/// The current time as (seconds, nanoseconds).
pub fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i64)
}

pub struct InodeData {
    pub meta: Meta,
    pub kind: Kind,
}

/// An in-memory inode: of the root overlay, or of a mounted [`TmpFs`].
pub struct Inode {
    pub ino: u64,
    /// The mounted tmpfs this inode belongs to; unset for the root overlay. Set once,
    /// when the inode is first linked into a directory (before it holds data).
    fs: OnceLock<Arc<TmpFs>>,
    /// The host entry this is the overlay's copy of: (st_dev, st_ino) it keeps
    /// reporting, as Linux's overlayfs keeps the lower inode's number. Tools that walk a
    /// tree check a directory's identity as they come back up (rm -rf, find -delete):
    /// one that changed because a deeper removal copied the directory up failed them.
    origin: OnceLock<(u64, u64)>,
    data: Mutex<InodeData>,
    /// The file's pages in guest frames, once it is mapped MAP_SHARED. Taken after
    /// `data` when both are held.
    cache: Mutex<Option<PageCache>>,
}

static NEXT_INO: AtomicU64 = AtomicU64::new(2);

impl Inode {
    pub fn new(meta: Meta, kind: Kind) -> Arc<Inode> {
        if let Kind::File { bytes, .. } = &kind {
            USED_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Arc::new(Inode {
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
            fs: OnceLock::new(),
            origin: OnceLock::new(),
            data: Mutex::new(InodeData { meta, kind }),
            cache: Mutex::new(None),
        })
    }

    /// An inode put back from a checkpoint: its number, file system and contents as they
    /// were. Its bytes are charged to `fs` and to the overlay's budget; ENOSPC past either
    /// (a state no sandbox could have reached).
    pub fn restore(
        ino: u64,
        fs: Option<Arc<TmpFs>>,
        meta: Meta,
        kind: Kind,
    ) -> Result<Arc<Inode>, Errno> {
        let held = match &kind {
            Kind::File { bytes, .. } => bytes.len() as u64,
            _ => 0,
        };
        if let Some(fs) = &fs {
            fs.charge(held)?;
        }
        if USED_BYTES.fetch_add(held, Ordering::Relaxed) + held > OVERLAY_BUDGET {
            USED_BYTES.fetch_sub(held, Ordering::Relaxed);
            if let Some(fs) = &fs {
                fs.release(held);
            }
            return Err(Errno::ENOSPC);
        }
        // New inodes get numbers no restored one has.
        NEXT_INO.fetch_max(ino.saturating_add(1), Ordering::Relaxed);
        let cell = OnceLock::new();
        if let Some(fs) = fs {
            let _ = cell.set(fs);
        }
        Ok(Arc::new(Inode {
            ino,
            fs: cell,
            origin: OnceLock::new(),
            data: Mutex::new(InodeData { meta, kind }),
            cache: Mutex::new(None),
        }))
    }

    /// Record the host entry this inode copies (before anyone sees it).
    pub fn set_origin(&self, dev: u64, ino: u64) {
        let _ = self.origin.set((dev, ino));
    }

    /// The host entry's (st_dev, st_ino) this inode copies, if it is a copy.
    pub fn origin(&self) -> Option<(u64, u64)> {
        self.origin.get().copied()
    }

    /// The mounted tmpfs this inode is in (None: the root overlay).
    pub fn fs(&self) -> Option<&Arc<TmpFs>> {
        self.fs.get()
    }

    /// Put a new inode in `fs` (the file system of the directory it is linked into).
    /// An inode that already belongs somewhere, or holds data, keeps its accounting.
    pub fn join_fs(&self, fs: Option<&Arc<TmpFs>>) {
        if let Some(fs) = fs {
            let held = match &self.lock().kind {
                Kind::File { bytes, .. } => bytes.len() as u64,
                _ => 0,
            };
            if held == 0 {
                let _ = self.fs.set(fs.clone());
            }
        }
    }

    pub fn new_dir(meta: Meta, lower: Option<Vec<u8>>) -> Arc<Inode> {
        Inode::new(
            meta,
            Kind::Dir {
                entries: BTreeMap::new(),
                lower,
            },
        )
    }

    pub fn lock(&self) -> MutexGuard<'_, InodeData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.lock().kind, Kind::Dir { .. })
    }

    pub fn stat(&self) -> Stat {
        let d = self.lock();
        let (size, nlink) = match &d.kind {
            Kind::File { size, .. } => (*size as i64, d.meta.nlink),
            Kind::Symlink(t) => (t.len() as i64, d.meta.nlink),
            Kind::Socket(_) | Kind::Fifo(_) => (0, d.meta.nlink),
            Kind::Dir { entries, .. } => {
                let subdirs = entries
                    .values()
                    .filter(|e| matches!(e, Entry::Node(i) if i.try_is_dir()))
                    .count();
                (4096, 2 + subdirs as u64)
            }
        };
        let (dev, ino) = self
            .origin
            .get()
            .copied()
            .unwrap_or_else(|| (self.fs.get().map_or(OVERLAY_DEV, |f| f.dev), self.ino));
        Stat {
            dev,
            ino,
            nlink,
            mode: d.meta.mode,
            uid: d.meta.uid,
            gid: d.meta.gid,
            rdev: 0,
            size,
            blksize: 4096,
            blocks: (size + 511) / 512,
            atime: d.meta.atime,
            mtime: d.meta.mtime,
            ctime: d.meta.ctime,
        }
    }

    /// `is_dir` for a child while the parent is locked (a child is never its parent).
    fn try_is_dir(&self) -> bool {
        match self.data.try_lock() {
            Ok(d) => matches!(d.kind, Kind::Dir { .. }),
            Err(_) => false,
        }
    }

    /// Charge `grow` more bytes held to the inode's file system and to the overlay's
    /// budget; ENOSPC past either.
    fn charge(&self, grow: u64) -> Result<(), Errno> {
        if let Some(fs) = self.fs.get() {
            fs.charge(grow)?;
        }
        if USED_BYTES.fetch_add(grow, Ordering::Relaxed) + grow > OVERLAY_BUDGET {
            USED_BYTES.fetch_sub(grow, Ordering::Relaxed);
            if let Some(fs) = self.fs.get() {
                fs.release(grow);
            }
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    /// Read file data at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        let mut d = self.lock();
        let Kind::File { bytes, size } = &d.kind else {
            return Err(Errno::EISDIR);
        };
        if offset >= *size {
            return Ok(0);
        }
        let n = ((*size - offset) as usize).min(buf.len());
        let have = bytes.len() as u64;
        let held = (have.saturating_sub(offset) as usize).min(n);
        if held > 0 {
            buf[..held].copy_from_slice(&bytes[offset as usize..offset as usize + held]);
        }
        buf[held..n].fill(0);
        if let Some(cache) = self.cache().as_ref() {
            cache.read(offset, &mut buf[..n]);
        }
        d.meta.atime = now();
        Ok(n)
    }

    /// Write file data at `offset` (or at the end when `append`); returns (bytes, new end).
    pub fn write_at(&self, buf: &[u8], offset: u64, append: bool) -> Result<(usize, u64), Errno> {
        let mut d = self.lock();
        let Kind::File { bytes, size } = &mut d.kind else {
            return Err(Errno::EISDIR);
        };
        let at = if append { *size } else { offset };
        if buf.is_empty() {
            return Ok((0, at));
        }
        if at >= MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let n = buf.len().min((MAX_FILE_SIZE - at) as usize);
        let end = at + n as u64;
        let old_len = bytes.len() as u64;
        if end > old_len {
            self.charge(end - old_len)?;
            bytes.resize(end as usize, 0);
        }
        bytes[at as usize..end as usize].copy_from_slice(&buf[..n]);
        *size = (*size).max(end);
        if let Some(cache) = self.cache().as_ref() {
            cache.write(at, &buf[..n]);
        }
        let t = now();
        d.meta.mtime = t;
        d.meta.ctime = t;
        Ok((n, end))
    }

    /// fallocate(2) as Linux's tmpfs does it (shmem_fallocate): allocation, with or
    /// without FALLOC_FL_KEEP_SIZE, and FALLOC_FL_PUNCH_HOLE; other modes EOPNOTSUPP.
    /// Allocated bytes are charged to the file system as written ones are. Space kept
    /// past the end of a file (KEEP_SIZE) is not reserved here.
    pub fn allocate(&self, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        const KEEP_SIZE: u32 = 1;
        const PUNCH_HOLE: u32 = 2;
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let mut d = self.lock();
        let Kind::File { bytes, size } = &mut d.kind else {
            return Err(Errno::ENODEV);
        };
        match mode {
            0 | KEEP_SIZE => {
                let target = if mode == 0 { end } else { end.min(*size) };
                let old_len = bytes.len() as u64;
                if target > old_len {
                    self.charge(target - old_len)?;
                    bytes.resize(target as usize, 0);
                }
                if mode == 0 && end > *size {
                    *size = end;
                    d.meta.ctime = now();
                }
            }
            m if m == PUNCH_HOLE | KEEP_SIZE => {
                let held = bytes.len() as u64;
                if offset < held {
                    if end >= held {
                        // The hole reaches the held bytes' end: give them back.
                        let freed = held - offset;
                        USED_BYTES.fetch_sub(freed, Ordering::Relaxed);
                        if let Some(fs) = self.fs.get() {
                            fs.release(freed);
                        }
                        bytes.truncate(offset as usize);
                    } else {
                        bytes[offset as usize..end as usize].fill(0);
                    }
                }
                if let Some(cache) = self.cache().as_ref() {
                    cache.zero(offset, end.min(*size));
                }
                let t = now();
                d.meta.mtime = t;
                d.meta.ctime = t;
            }
            _ => return Err(Errno::EOPNOTSUPP),
        }
        Ok(())
    }

    /// Set a file's size (truncate or extend with zeros).
    pub fn truncate(&self, len: u64) -> Result<(), Errno> {
        let mut d = self.lock();
        let Kind::File { bytes, size } = &mut d.kind else {
            return Err(Errno::EISDIR);
        };
        if len > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if (len as usize) < bytes.len() {
            let freed = bytes.len() as u64 - len;
            USED_BYTES.fetch_sub(freed, Ordering::Relaxed);
            if let Some(fs) = self.fs.get() {
                fs.release(freed);
            }
            bytes.truncate(len as usize);
            bytes.shrink_to_fit();
        }
        if len < *size {
            if let Some(cache) = self.cache().as_ref() {
                // Linux drops the pages past the end from every mapping, and the file
                // reads as zeros there when it grows again. Mappings here keep their
                // frames (there is no reverse map to find them), so the frames stay the
                // file's and are zeroed: the same bytes, read after growing or through
                // an old mapping (where Linux would raise SIGBUS meanwhile).
                cache.zero_from(len);
            }
        }
        *size = len;
        let t = now();
        d.meta.mtime = t;
        d.meta.ctime = t;
        Ok(())
    }

    fn cache(&self) -> MutexGuard<'_, Option<PageCache>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For a MAP_SHARED mapping: the frame holding the page at `offset` (page-aligned),
    /// the same for every mapping of the file, with one more reference taken for the
    /// caller's page table. Beyond the end of the file: `BeyondFile` (SIGBUS).
    pub fn shared_frame(
        &self,
        memory: &Arc<GuestMemory>,
        offset: u64,
    ) -> Result<Gpa, crate::mm::AccessError> {
        use crate::mm::AccessError;
        let d = self.lock();
        let Kind::File { bytes, size } = &d.kind else {
            return Err(AccessError::BeyondFile);
        };
        if offset >= *size {
            return Err(AccessError::BeyondFile);
        }
        let index = offset / PAGE_SIZE;
        let mut cache = self.cache();
        let cache = cache.get_or_insert_with(|| PageCache::new(memory.clone()));
        let frame = match cache.get(index) {
            Some(frame) => frame,
            None => {
                let frame = cache
                    .memory()
                    .alloc_frame()
                    .map_err(|_| AccessError::NoMemory)?;
                let start = (index * PAGE_SIZE) as usize;
                if start < bytes.len() {
                    let end = bytes.len().min(start + PAGE_SIZE as usize);
                    cache.memory().write(frame, &bytes[start..end]);
                }
                cache.insert(index, frame);
                frame
            }
        };
        cache.memory().share_frame(frame);
        Ok(frame)
    }

    /// The cached pages, for a checkpoint: (page index, frame).
    pub fn cached_pages(&self) -> Vec<(u64, Gpa)> {
        self.cache()
            .as_ref()
            .map(|c| c.entries())
            .unwrap_or_default()
    }

    /// Put back a checkpoint's cached pages.
    pub fn restore_cache(&self, memory: Arc<GuestMemory>, pages: Vec<(u64, Gpa)>) {
        if !pages.is_empty() {
            *self.cache() = Some(PageCache::restored(memory, pages));
        }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        match &self.lock().kind {
            Kind::File { size, .. } => *size,
            _ => 0,
        }
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        let d = self.data.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Kind::File { bytes, .. } = &d.kind {
            USED_BYTES.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            if let Some(fs) = self.fs.get() {
                fs.release(bytes.len() as u64);
            }
        }
    }
}

/// An open overlay regular file.
pub struct TmpFile {
    pub inode: Arc<Inode>,
    pub path: Vec<u8>,
    pos: Mutex<u64>,
    flags: AtomicU32,
}

impl TmpFile {
    pub fn new(inode: Arc<Inode>, path: Vec<u8>, flags: u32) -> TmpFile {
        TmpFile {
            inode,
            path,
            pos: Mutex::new(0),
            flags: AtomicU32::new(flags),
        }
    }

    /// A description put back from a checkpoint, at offset `pos`.
    pub fn restore(inode: Arc<Inode>, path: Vec<u8>, flags: u32, pos: u64) -> TmpFile {
        let f = TmpFile::new(inode, path, flags);
        *f.pos() = pos;
        f
    }

    fn pos(&self) -> MutexGuard<'_, u64> {
        self.pos.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// lseek arithmetic shared by regular files: SEEK_SET/CUR/END/DATA/HOLE.
pub fn seek_regular(pos: &mut u64, size: u64, offset: i64, whence: u32) -> Result<u64, Errno> {
    const SEEK_SET: u32 = 0;
    const SEEK_CUR: u32 = 1;
    const SEEK_END: u32 = 2;
    const SEEK_DATA: u32 = 3;
    const SEEK_HOLE: u32 = 4;
    let base: i128 = match whence {
        SEEK_SET => 0,
        SEEK_CUR => *pos as i128,
        SEEK_END => size as i128,
        SEEK_DATA | SEEK_HOLE => {
            // The whole file is data; the only hole is at its end.
            if offset < 0 || offset as u64 >= size {
                return Err(Errno::ENXIO);
            }
            *pos = if whence == SEEK_DATA {
                offset as u64
            } else {
                size
            };
            return Ok(*pos);
        }
        _ => return Err(Errno::EINVAL),
    };
    let new = base + offset as i128;
    if new < 0 || new > i64::MAX as i128 {
        return Err(Errno::EINVAL);
    }
    *pos = new as u64;
    Ok(*pos)
}

impl FileDescription for TmpFile {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        match offset {
            Some(off) => self.inode.read_at(buf, off),
            None => {
                let mut pos = self.pos();
                let n = self.inode.read_at(buf, *pos)?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        let append = self.flags.load(Ordering::Relaxed) & libc::O_APPEND as u32 != 0;
        match offset {
            // Linux: pwrite on an O_APPEND file appends anyway.
            Some(off) => self.inode.write_at(buf, off, append).map(|(n, _)| n),
            None => {
                let mut pos = self.pos();
                let (n, end) = self.inode.write_at(buf, *pos, append)?;
                *pos = end;
                Ok(n)
            }
        }
    }

    fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        let size = self.inode.size();
        seek_regular(&mut self.pos(), size, offset, whence)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.inode.stat())
    }

    fn truncate(&self, len: u64) -> Result<(), Errno> {
        self.inode.truncate(len)
    }

    fn allocate(&self, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        self.inode.allocate(mode, offset, len)
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
        Some(Arc::new(TmpMapped {
            inode: self.inode.clone(),
            path: self.path(),
        }))
    }

    fn vfs_node(&self) -> Option<Node> {
        Some(Node::Tmp(self.inode.clone()))
    }

    fn save(&self, cx: &mut SaveContext) -> Result<FileState, StateError> {
        Ok(FileState::Tmp(TmpFileState {
            inode: cx.vfs.inode_id(&self.inode),
            path: self.path.clone(),
            pos: *self.pos(),
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// F_SETFL: only O_APPEND, O_NONBLOCK, O_ASYNC, O_DIRECT and O_NOATIME change.
pub fn set_flags(cell: &AtomicU32, flags: u32) {
    let settable =
        (libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME)
            as u32;
    let old = cell.load(Ordering::Relaxed);
    cell.store((old & !settable) | (flags & settable), Ordering::Relaxed);
}

/// mmap source for an overlay file: pages are copied at fault time.
struct TmpMapped {
    inode: Arc<Inode>,
    path: String,
}

/// The mmap source of an overlay file, put back from a checkpoint.
pub fn restored_mapping(inode: Arc<Inode>, path: String) -> Arc<dyn crate::mm::MappedFile> {
    Arc::new(TmpMapped { inode, path })
}

impl crate::mm::MappedFile for TmpMapped {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = self.inode.read_at(buf, offset)?;
        buf[n..].fill(0);
        Ok(n)
    }
    fn shared_frame(
        &self,
        memory: &Arc<GuestMemory>,
        offset: u64,
    ) -> Option<Result<Gpa, crate::mm::AccessError>> {
        Some(self.inode.shared_frame(memory, offset))
    }
    fn identity(&self) -> (u64, u64) {
        (self.inode.stat().dev, self.inode.ino)
    }
    fn path(&self) -> String {
        self.path.clone()
    }
    fn save(&self, cx: &mut SaveContext) -> Result<MappedFileState, StateError> {
        Ok(MappedFileState::Tmp {
            inode: cx.vfs.inode_id(&self.inode),
            path: self.path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<Inode> {
        Inode::new(
            Meta::new(libc::S_IFREG | 0o644, 0, 0),
            Kind::File {
                bytes: Vec::new(),
                size: 0,
            },
        )
    }

    #[test]
    fn write_read_truncate() {
        let f = TmpFile::new(file(), b"/tmp/x".to_vec(), libc::O_RDWR as u32);
        assert_eq!(f.write(b"hello", None), Ok(5));
        assert_eq!(f.seek(0, 0), Ok(0));
        let mut b = [0u8; 10];
        assert_eq!(f.read(&mut b, None), Ok(5));
        assert_eq!(&b[..5], b"hello");
        assert_eq!(f.truncate(2), Ok(()));
        assert_eq!(f.read(&mut b, Some(0)), Ok(2));
        // Extending reads back zeros.
        assert_eq!(f.truncate(8), Ok(()));
        assert_eq!(f.read(&mut b, Some(0)), Ok(8));
        assert_eq!(&b[..8], b"he\0\0\0\0\0\0");
        assert_eq!(f.stat().map(|s| s.size), Ok(8));
        assert_eq!(f.seek(-1, 0), Err(Errno::EINVAL));
        assert_eq!(f.seek(0, 9), Err(Errno::EINVAL));
        assert_eq!(f.seek(-2, 2), Ok(6));
    }

    #[test]
    fn append_writes_at_end() {
        let f = TmpFile::new(
            file(),
            b"/a".to_vec(),
            (libc::O_WRONLY | libc::O_APPEND) as u32,
        );
        assert_eq!(f.write(b"ab", None), Ok(2));
        assert_eq!(f.seek(0, 0), Ok(0));
        assert_eq!(f.write(b"cd", None), Ok(2));
        assert_eq!(f.inode.size(), 4);
    }

    #[test]
    fn directory_nlink_counts_subdirs() {
        let d = Inode::new_dir(Meta::new(libc::S_IFDIR | 0o755, 0, 0), None);
        let sub = Inode::new_dir(Meta::new(libc::S_IFDIR | 0o755, 0, 0), None);
        if let Kind::Dir { entries, .. } = &mut d.lock().kind {
            entries.insert(b"s".to_vec(), Entry::Node(sub));
            entries.insert(b"f".to_vec(), Entry::Node(file()));
            entries.insert(b"w".to_vec(), Entry::Whiteout);
        }
        assert_eq!(d.stat().nlink, 3);
    }
}

//! Open directories (getdents over the merged overlay/host listing) and O_PATH
//! descriptions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::file::{DirEntry, FileDescription, Stat};
use super::node::Node;
use super::tmpfs::set_flags;
use super::Vfs;
use crate::abi::Errno;
use crate::state::files::{DirEntryState, DirFileState, FileState, PathFileState};
use crate::state::{SaveContext, StateError};

struct Cursor {
    /// The listing, taken at the first getdents after open or rewind.
    entries: Option<Vec<DirEntry>>,
    pos: usize,
}

pub struct DirFile {
    vfs: Arc<Vfs>,
    node: Node,
    path: Vec<u8>,
    parent_ino: u64,
    cursor: Mutex<Cursor>,
    flags: AtomicU32,
}

impl DirFile {
    pub fn new(vfs: Arc<Vfs>, node: Node, path: Vec<u8>, parent_ino: u64, flags: u32) -> DirFile {
        DirFile {
            vfs,
            node,
            path,
            parent_ino,
            cursor: Mutex::new(Cursor {
                entries: None,
                pos: 0,
            }),
            flags: AtomicU32::new(flags),
        }
    }

    /// A directory description put back from a checkpoint, with the listing it had taken
    /// (None: none yet) and its position in it.
    pub fn restore(
        vfs: Arc<Vfs>,
        node: Node,
        path: Vec<u8>,
        parent_ino: u64,
        flags: u32,
        listing: Option<Vec<DirEntry>>,
        pos: usize,
    ) -> DirFile {
        let d = DirFile::new(vfs, node, path, parent_ino, flags);
        *d.cursor.lock().unwrap_or_else(|e| e.into_inner()) = Cursor {
            entries: listing,
            pos,
        };
        d
    }
}

impl FileDescription for DirFile {
    fn read(&self, _buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        // Linux: generic_read_dir → EISDIR.
        Err(Errno::EISDIR)
    }

    fn write(&self, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        // A directory is never open for writing.
        Err(Errno::EBADF)
    }

    fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let new = match whence {
            0 => offset,
            1 => (c.pos as i64).checked_add(offset).ok_or(Errno::EINVAL)?,
            _ => return Err(Errno::EINVAL),
        };
        if new < 0 {
            return Err(Errno::EINVAL);
        }
        if new == 0 {
            // rewinddir: see the directory as it is now.
            c.entries = None;
        }
        c.pos = new as usize;
        Ok(new as u64)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.node.stat())
    }

    fn readdir(&self, emit: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<(), Errno> {
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        if c.entries.is_none() {
            c.entries = Some(self.vfs.list(&self.node, &self.path, self.parent_ino)?);
        }
        let Cursor { entries, pos } = &mut *c;
        let entries = entries.as_deref().unwrap_or_default();
        while let Some(e) = entries.get(*pos) {
            if !emit(e, *pos as u64 + 1) {
                break;
            }
            *pos += 1;
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
    }

    fn vfs_node(&self) -> Option<Node> {
        Some(self.node.clone())
    }

    fn save(&self, cx: &mut SaveContext) -> Result<FileState, StateError> {
        let (listing, pos) = {
            let c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            (c.entries.clone(), c.pos)
        };
        let vfs = cx.vfs_id(&self.vfs)?;
        Ok(FileState::Dir(DirFileState {
            vfs,
            node: cx.node_state(vfs, &self.node, &self.path)?,
            path: self.path.clone(),
            parent_ino: self.parent_ino,
            listing: listing.map(|l| l.into_iter().map(DirEntryState::from).collect()),
            pos: pos as u64,
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// An O_PATH description: a place in the tree, usable as a dirfd and for fstat.
pub struct PathFile {
    /// The file system `node` is in (a checkpoint names host nodes by their mount).
    vfs: Arc<Vfs>,
    node: Node,
    path: Vec<u8>,
    flags: u32,
}

impl PathFile {
    pub fn new(vfs: Arc<Vfs>, node: Node, path: Vec<u8>, flags: u32) -> PathFile {
        PathFile {
            vfs,
            node,
            path,
            flags,
        }
    }
}

impl FileDescription for PathFile {
    fn read(&self, _buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }

    fn write(&self, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }

    fn seek(&self, _offset: i64, _whence: u32) -> Result<u64, Errno> {
        Err(Errno::EBADF)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.node.stat())
    }

    fn readdir(&self, _emit: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<(), Errno> {
        Err(Errno::EBADF)
    }

    fn ioctl(&self, _cmd: u32, _arg: u64, _mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        Err(Errno::EBADF)
    }

    fn truncate(&self, _len: u64) -> Result<(), Errno> {
        Err(Errno::EBADF)
    }

    fn sync(&self) -> Result<(), Errno> {
        Err(Errno::EBADF)
    }

    fn path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    fn status_flags(&self) -> u32 {
        self.flags
    }

    fn vfs_node(&self) -> Option<Node> {
        Some(self.node.clone())
    }

    fn is_path_only(&self) -> bool {
        true
    }

    fn save(&self, cx: &mut SaveContext) -> Result<FileState, StateError> {
        let vfs = cx.vfs_id(&self.vfs)?;
        Ok(FileState::Path(PathFileState {
            vfs,
            node: cx.node_state(vfs, &self.node, &self.path)?,
            path: self.path.clone(),
            flags: self.flags,
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

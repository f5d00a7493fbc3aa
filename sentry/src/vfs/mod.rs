//! The sandbox's file system: a read-only root from a host directory (reached only with
//! openat2(RESOLVE_IN_ROOT)) under a tmpfs overlay, /dev, /proc, and the fd table.
//!
//! (Skeleton: the root file system, overlay, devices and /proc arrive in the next step.)

pub mod file;

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::abi::Errno;
pub use file::{DirEntry, FileDescription, Stat};

/// Host-side failures building the file system.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("opening the root file system {path}: {source}")]
    OpenRoot { path: String, source: std::io::Error },
}

/// The mount table of one sandbox.
pub struct Vfs {
    _root: std::fs::File,
}

impl Vfs {
    pub fn new(rootfs: &Path) -> Result<Arc<Vfs>, VfsError> {
        let root = std::fs::File::open(rootfs).map_err(|source| VfsError::OpenRoot {
            path: rootfs.display().to_string(),
            source,
        })?;
        Ok(Arc::new(Vfs { _root: root }))
    }
}

/// A task's view of the file system: root, working directory, umask.
pub struct FsContext {
    pub vfs: Arc<Vfs>,
    pub cwd: Vec<u8>,
    pub umask: u32,
}

impl FsContext {
    pub fn new(vfs: Arc<Vfs>, cwd: &[u8]) -> Result<FsContext, Errno> {
        Ok(FsContext {
            vfs,
            cwd: cwd.to_vec(),
            umask: 0o022,
        })
    }

    /// Open an executable for execve/the loader.
    pub fn open_exec(&self, _path: &[u8]) -> Result<Arc<dyn FileDescription>, Errno> {
        Err(Errno::ENOENT)
    }
}

/// A task's file descriptors.
pub struct FdTable {
    files: Mutex<Vec<Option<(Arc<dyn FileDescription>, bool)>>>,
}

impl FdTable {
    pub fn with_stdio() -> Result<FdTable, std::io::Error> {
        Ok(FdTable {
            files: Mutex::new(Vec::new()),
        })
    }

    pub fn get(&self, fd: i32) -> Result<Arc<dyn FileDescription>, Errno> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        usize::try_from(fd)
            .ok()
            .and_then(|i| files.get(i).cloned().flatten())
            .map(|(f, _)| f)
            .ok_or(Errno::EBADF)
    }
}

//! The state directory of a container, `ROOT/ID/` (mode 0700): creating it atomically,
//! locking it, writing files in it so that a crash never leaves half a file, removing it.
//!
//! Lock order: a command takes `ROOT/ID/.lock` (flock, exclusive) for as long as it
//! changes the container; nothing takes two containers' locks. `create` builds the
//! directory under a temporary name with its lock already held and renames it into place
//! (`RENAME_NOREPLACE`), so no other command ever sees `ROOT/ID/` unlocked before its
//! creator is done with it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};

/// The longest container id we take (runc has no limit; the control socket's path does).
pub const MAX_ID_LEN: usize = 1024;

/// Where `sun_path` ends: a unix socket path is at most 107 bytes and a NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Errors about the state directory.
#[derive(Debug)]
pub enum DirError {
    /// The id has characters runc does not allow, or is `.`/`..`/empty.
    InvalidId(String),
    /// `ROOT/ID` exists already.
    Exists(String),
    /// No `ROOT/ID`.
    NotFound(String),
    /// A file system operation failed.
    Io { what: String, source: io::Error },
}

impl std::fmt::Display for DirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // runc: "invalid container ID format"; we name the id as well.
            DirError::InvalidId(id) => write!(f, "invalid container id format: {id:?}"),
            DirError::Exists(id) => write!(f, "container with id {id:?} already exists"),
            // containerd treats an error containing "does not exist" as "already deleted".
            DirError::NotFound(id) => write!(f, "container {id:?} does not exist"),
            DirError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for DirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DirError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DirError {
    let what = what.into();
    move |source| DirError::Io { what, source }
}

/// Checks a container id the way runc does: 1+ characters of `A-Z a-z 0-9 _ + - .`, not
/// `.` or `..`.
pub fn validate_id(id: &str) -> Result<(), DirError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id.len() > MAX_ID_LEN || id == "." || id == ".." || !id.chars().all(ok_char)
    {
        return Err(DirError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// The directory holding every container's state directory (`--root`).
#[derive(Clone, Debug)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// `path` made absolute against the current directory (nothing is created yet).
    pub fn new(path: &Path) -> Result<Root, DirError> {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(io_err("current directory"))?
                .join(path)
        };
        Ok(Root { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the root (and its parents) if needed, mode 0700 like runc's.
    pub fn ensure(&self) -> Result<(), DirError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(io_err(format!(
                "creating the state root {}",
                self.path.display()
            )))
    }

    /// The state directory of `id`, which must exist.
    pub fn open(&self, id: &str) -> Result<ContainerDir, DirError> {
        validate_id(id)?;
        let path = self.path.join(id);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Ok(ContainerDir {
                id: id.to_string(),
                path,
            }),
            Ok(_) => Err(DirError::NotFound(id.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(DirError::NotFound(id.to_string()))
            }
            Err(e) => Err(io_err(format!("{}", path.display()))(e)),
        }
    }

    /// Creates `ROOT/ID/` with its lock held; fails if the id is taken.
    pub fn create(&self, id: &str) -> Result<(ContainerDir, DirLock), DirError> {
        validate_id(id)?;
        self.ensure()?;
        // ':' is never in an id, so a leftover temporary directory is never listed.
        let tmp = self
            .path
            .join(format!("creating:{id}:{}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        let lock = match lock_file(&tmp.join(LOCK_FILE), true) {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let path = self.path.join(id);
        let renamed = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &tmp,
            nix::fcntl::AT_FDCWD,
            &path,
            RenameFlags::RENAME_NOREPLACE,
        );
        match renamed {
            Ok(()) => Ok((
                ContainerDir {
                    id: id.to_string(),
                    path,
                },
                lock,
            )),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                if e == Errno::EEXIST || e == Errno::ENOTEMPTY {
                    Err(DirError::Exists(id.to_string()))
                } else {
                    Err(DirError::Io {
                        what: format!("renaming {} to {}", tmp.display(), path.display()),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Ids of every container under the root, sorted. A missing root has none.
    pub fn ids(&self) -> Result<Vec<String>, DirError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("{}", self.path.display()))(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| validate_id(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

const LOCK_FILE: &str = ".lock";

/// A held lock on a state directory; released when dropped.
pub struct DirLock {
    _lock: Flock<File>,
}

fn lock_file(path: &Path, block: bool) -> Result<DirLock, DirError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    let arg = if block {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(DirLock { _lock: lock }),
        Err((_, e)) => Err(DirError::Io {
            what: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

/// One container's state directory.
#[derive(Clone, Debug)]
pub struct ContainerDir {
    id: String,
    path: PathBuf,
}

impl ContainerDir {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `ROOT/ID/NAME`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Waits for the directory's lock.
    pub fn lock(&self) -> Result<DirLock, DirError> {
        lock_file(&self.file(LOCK_FILE), true)
    }

    /// Whether another process holds the lock right now (a `create` in progress).
    pub fn is_locked(&self) -> bool {
        match lock_file(&self.file(LOCK_FILE), false) {
            Ok(_) => false,
            Err(DirError::Io { source, .. }) => source.raw_os_error() == Some(libc::EWOULDBLOCK),
            Err(_) => false,
        }
    }

    /// Reads `NAME`; `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, DirError> {
        let path = self.file(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// Replaces `NAME` with `data` atomically and durably (write, fsync, rename).
    pub fn write_atomic(&self, name: &str, data: &[u8]) -> Result<(), DirError> {
        write_atomic(&self.file(name), data)
    }

    /// Removes the whole directory (the caller holds its lock).
    pub fn remove(&self) -> Result<(), DirError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", self.path.display()))(e)),
        }
    }
}

/// Writes `path` through a temporary file in the same directory and a rename, so that a
/// reader sees the old content or the new, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DirError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        DirError::Io {
            what: format!("writing {}", path.display()),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> Root {
        let dir = std::env::temp_dir().join(format!("runsc-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Root::new(&dir).expect("absolute path")
    }

    #[test]
    fn ids_like_runc() {
        for ok in ["a", "abc-DEF_0.9+x", "0123456789abcdef", ".hidden", "a..b"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "ü", "a\n", "../x"] {
            let e = validate_id(bad).expect_err(bad);
            assert_eq!(
                e.to_string(),
                format!("invalid container id format: {bad:?}")
            );
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn create_is_exclusive_and_locked() {
        let root = temp_root("create");
        let (dir, lock) = root.create("c1").expect("created");
        assert!(root.path().join("c1").is_dir());
        assert!(dir.is_locked(), "create holds the lock");
        assert!(matches!(root.create("c1"), Err(DirError::Exists(_))));
        drop(lock);
        assert!(!dir.is_locked());
        assert_eq!(root.ids().expect("listed"), ["c1"]);
        // No temporary directory is left behind, and it would not be listed anyway.
        assert_eq!(fs::read_dir(root.path()).expect("listed").count(), 1);
        dir.write_atomic("state.json", b"{}").expect("written");
        assert_eq!(dir.read("state.json").expect("read"), Some(b"{}".to_vec()));
        assert_eq!(dir.read("missing").expect("read"), None);
        let _lock = dir.lock().expect("locked");
        dir.remove().expect("removed");
        assert!(matches!(root.open("c1"), Err(DirError::NotFound(_))));
        assert!(root.ids().expect("listed").is_empty());
        fs::remove_dir_all(root.path()).expect("cleanup");
    }

    #[test]
    fn missing_root_lists_nothing() {
        let root = temp_root("missing");
        assert!(root.ids().expect("listed").is_empty());
        assert!(matches!(root.open("x"), Err(DirError::NotFound(_))));
        assert!(matches!(root.open("a/b"), Err(DirError::InvalidId(_))));
    }
}

//! The sandbox's file system: a read-only root from a host directory (reached only with
//! openat2(RESOLVE_IN_ROOT)) under an in-memory overlay that takes every write, with a
//! synthesized /dev and /proc, the container's mounts (bind-mounted host directories and
//! files, tmpfs), pipes, the event files (eventfd, timerfd, signalfd, epoll) and the fd
//! table. `wait` is how a task blocks on files (reads, poll, select, epoll).
//!
//! Layout: `walk` resolves paths (the sentry follows symbolic links itself) and crosses
//! mount points (`mount`), `open` turns a resolved node into a file description, `ops`
//! changes the namespace (create, unlink, rename, …): in the overlay, in a mounted
//! tmpfs, or on the host for a writable bind (`hostrw`). The overlay root is an upper
//! directory merged with the host root; host directories are copied up (as merged
//! directories) when something is created inside them, host files when they are opened
//! for writing.
//!
//! Lock order: `Vfs::ns` (held by every namespace change) before any inode's lock;
//! at most one inode lock is held at a time. `Vfs::mounts` is only written while the
//! container is set up, and never held across another lock.

pub mod dev;
pub mod dir;
pub mod epoll;
pub mod eventfd;
pub mod fdtable;
pub mod fifo;
pub mod file;
pub mod host;
pub mod host_cache;
pub mod host_source;
pub mod hostfd;
pub mod hostfile;
mod hostrw;
pub mod inotify;
pub mod locks;
pub mod mount;
pub mod node;
mod notify;
mod open;
mod ops;
pub mod page_cache;
pub mod path;
pub mod persist;
pub mod pipe;
pub mod proc;
pub mod signalfd;
pub mod socket;
pub mod timerfd;
pub mod tmpfs;
pub mod wait;
mod walk;

use std::any::Any;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::abi::Errno;
pub use fdtable::FdTable;
pub use file::{DirEntry, FileDescription, Stat};
pub use mount::{Mount, MountError};
pub use node::Node;
pub use ops::{chmod_inode, chown_inode, set_times, TimeSpec};
pub use proc::ProcSnapshot;
pub use walk::{Found, Resolved};

/// Host-side failures building the file system.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("reading the root file system {path}: {errno}")]
    StatRoot { path: String, errno: Errno },
}

/// The file system of one container.
pub struct Vfs {
    /// The rootfs: the overlay's lower layer.
    host: Arc<host::HostRoot>,
    /// The overlay's root directory (merged with the host root).
    root: Arc<tmpfs::Inode>,
    /// Serialises namespace changes.
    ns: Mutex<()>,
    /// Mount points and what is mounted there (replaced whole on each mount).
    mounts: RwLock<Arc<mount::MountTable>>,
    /// AF_UNIX sockets bound in writable binds: the host socket inode (st_dev, st_ino)
    /// stands for the socket of ours it leads to.
    host_sockets: Mutex<HashMap<(u64, u64), Weak<dyn Any + Send + Sync>>>,
    /// inotify watches on this file system's nodes.
    pub watches: Arc<inotify::Registry>,
}

impl Vfs {
    /// A container's file system over the opened host directory `rootfs`: read-only,
    /// under an in-memory overlay that takes the guest's writes.
    pub fn new(rootfs: host_source::HostSource) -> Result<Arc<Vfs>, VfsError> {
        let path = rootfs.shown().display().to_string();
        if rootfs.kind() != host_source::SourceKind::Dir {
            return Err(VfsError::StatRoot {
                path,
                errno: Errno::ENOTDIR,
            });
        }
        let host = host::HostRoot::from_source(rootfs, false);
        let top = host
            .lookup(b"")
            .and_then(|n| n.ok_or(Errno::ENOENT))
            .map_err(|errno| VfsError::StatRoot { path, errno })?;
        let root = tmpfs::Inode::new_dir(tmpfs::Meta::from_stat(&top.stat), Some(Vec::new()));
        Ok(Arc::new(Vfs {
            host,
            root,
            ns: Mutex::new(()),
            mounts: RwLock::new(Arc::default()),
            host_sockets: Mutex::new(HashMap::new()),
            watches: Arc::default(),
        }))
    }

    fn ns(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Who is looking a path up, and from where.
pub struct Lookup<'a> {
    /// Absolute, symlink-free directory that relative paths start from.
    pub base: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
    /// Builds the /proc snapshot, called at most once per lookup (when /proc is entered).
    proc: &'a dyn Fn() -> ProcSnapshot,
    snapshot: OnceCell<Arc<ProcSnapshot>>,
}

impl<'a> Lookup<'a> {
    pub fn new(
        base: &'a [u8],
        uid: u32,
        gid: u32,
        umask: u32,
        proc: &'a dyn Fn() -> ProcSnapshot,
    ) -> Lookup<'a> {
        Lookup {
            base,
            uid,
            gid,
            umask,
            proc,
            snapshot: OnceCell::new(),
        }
    }

    fn snapshot(&self) -> Arc<ProcSnapshot> {
        self.snapshot
            .get_or_init(|| Arc::new((self.proc)()))
            .clone()
    }
}

fn no_proc() -> ProcSnapshot {
    ProcSnapshot::default()
}

/// Whether `uid`/`gid` may access a file with `st` for `want` (bits 4 = read, 2 = write,
/// 1 = execute). Root may do anything except execute a file with no execute bit.
pub fn permits(st: &Stat, uid: u32, gid: u32, want: u32) -> bool {
    if uid == 0 {
        return want & 1 == 0 || st.mode & 0o111 != 0 || st.mode & libc::S_IFMT == libc::S_IFDIR;
    }
    let bits = if st.uid == uid {
        (st.mode >> 6) & 7
    } else if st.gid == gid {
        (st.mode >> 3) & 7
    } else {
        st.mode & 7
    };
    bits & want == want
}

/// fstat of an anonymous-inode file (eventfd, epoll, timerfd, signalfd): Linux gives them
/// all the one inode of anon_inodefs, mode 0600 with no file type.
pub fn anon_stat() -> Stat {
    Stat {
        dev: ANON_INODE_DEV,
        ino: ANON_INODE_INO,
        nlink: 1,
        mode: 0o600,
        blksize: 4096,
        ..Stat::default()
    }
}

/// st_dev and st_ino of anon_inodefs' one inode (0:15 and 1 on a typical system).
const ANON_INODE_DEV: u64 = 15;
const ANON_INODE_INO: u64 = 1;

/// A task's view of the file system: root, working directory, umask.
pub struct FsContext {
    pub vfs: Arc<Vfs>,
    /// Absolute, symlink-free working directory.
    pub cwd: Vec<u8>,
    pub umask: u32,
}

impl FsContext {
    /// A context whose working directory is `cwd` (resolved; ENOTDIR/ENOENT if unusable).
    pub fn new(vfs: Arc<Vfs>, cwd: &[u8]) -> Result<FsContext, Errno> {
        let lk = Lookup::new(b"/", 0, 0, 0o022, &no_proc);
        let r = vfs.resolve(&lk, cwd, true)?;
        match &r.found {
            Found::Node(n) if n.is_dir() => {}
            Found::Node(_) | Found::Magic(_) => return Err(Errno::ENOTDIR),
            Found::Missing => return Err(Errno::ENOENT),
        }
        Ok(FsContext {
            vfs,
            cwd: r.path(),
            umask: 0o022,
        })
    }

    /// Write `data` to `path` as root, creating or replacing the file. The overlay keeps
    /// it; the host directory never sees it. This is how the sandbox provides files of
    /// its own, such as /etc/resolv.conf.
    pub fn write_file(&self, path: &[u8], data: &[u8]) -> Result<(), Errno> {
        let lk = Lookup::new(b"/", 0, 0, 0o022, &no_proc);
        let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32;
        let f = self.vfs.open(&lk, path, flags, 0o644)?;
        let mut done = 0;
        while done < data.len() {
            done += f.write(&data[done..], None)?;
        }
        Ok(())
    }

    /// A copy for a new process (fork).
    pub fn fork(&self) -> FsContext {
        FsContext {
            vfs: self.vfs.clone(),
            cwd: self.cwd.clone(),
            umask: self.umask,
        }
    }

    /// Open an executable for execve/the loader: a regular file with an execute bit
    /// (EACCES otherwise, as execve).
    ///
    /// Paths through /proc (busybox runs applets as /proc/self/exe) need the caller's
    /// snapshot: use `open_exec_with`; here /proc shows an empty process.
    pub fn open_exec(&self, path: &[u8]) -> Result<Arc<dyn FileDescription>, Errno> {
        self.open_exec_with(path, &no_proc)
    }

    /// `open_exec` with a /proc snapshot builder (`|| syscalls::fs::proc_snapshot(task)`).
    pub fn open_exec_with(
        &self,
        path: &[u8],
        proc: &dyn Fn() -> ProcSnapshot,
    ) -> Result<Arc<dyn FileDescription>, Errno> {
        let lk = Lookup::new(&self.cwd, 0, 0, self.umask, proc);
        self.vfs.open_exec(&lk, path)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mounts;

//! Open file descriptions, fd tables and mapped files across a checkpoint.
//!
//! Each kind of description saves itself (`FileDescription::save`, beside the type in
//! `vfs/`) into a [`FileState`]; what descriptions share is saved once by id: another
//! description (an epoll's targets), a pipe's buffer, an in-memory inode, a container
//! file system (`super::vfs`). Restoring is one `match` ([`restore`]) that rebuilds each
//! kind, checking every value first.
//!
//! What cannot be saved is rebuilt from what the restoring runtime gives:
//! - a host file of the rootfs or of a bind is reopened by its path under that root
//!   (the rootfs and bind sources arrive anew, opened), at the same offset;
//! - a container init's stdio (host fds 0-2) becomes the stdio the runtime gives that
//!   container ([`super::vfs::VfsRestore::give_stdio`]); other processes' host stdio (an
//!   exec's) has nobody at the other end any more and reads as /dev/null.
//!
//! Sockets are not saved yet: a checkpoint of a sandbox with one open fails naming it.

pub(crate) mod bytes;
pub(crate) mod check;
mod restore;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_invalid;

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::registry::key_of;
use super::vfs::HostRootRef;
use super::{RestoreContext, SaveContext, StateError};
use crate::mm::MappedFile;
use crate::vfs::dev::DevNode;
use crate::vfs::fdtable::MAX_FDS;
use crate::vfs::file::{DirEntry, FileDescription, Stat};
use crate::vfs::node::Node;
use crate::vfs::FdTable;

/// One open file description.
#[derive(Serialize, Deserialize)]
pub enum FileState {
    /// A device of the sandbox's /dev (null, zero, full, random, urandom).
    Dev {
        node: DevNode,
        flags: u32,
    },
    Dir(DirFileState),
    Path(PathFileState),
    Host(HostFileState),
    Stdio(StdioState),
    Tmp(TmpFileState),
    Pipe(PipeEndState),
    EventFd(EventFdState),
    Epoll(EpollState),
    TimerFd(TimerFdState),
    SignalFd(SignalFdState),
    Content(ContentFileState),
    /// An AF_INET/AF_INET6 socket (see `state::net`).
    Inet(super::net::InetSocketState),
}

/// An open directory: where it is, and how far getdents has got in the listing it took.
#[derive(Serialize, Deserialize)]
pub struct DirFileState {
    pub vfs: u32,
    pub node: NodeState,
    pub path: Vec<u8>,
    pub parent_ino: u64,
    /// The listing getdents is going through (None: not started, or rewound).
    pub listing: Option<Vec<DirEntryState>>,
    pub pos: u64,
    pub flags: u32,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DirEntryState {
    pub ino: u64,
    pub kind: u8,
    pub name: Vec<u8>,
}

impl From<DirEntry> for DirEntryState {
    fn from(e: DirEntry) -> Self {
        DirEntryState {
            ino: e.ino,
            kind: e.kind,
            name: e.name,
        }
    }
}

/// An O_PATH description.
#[derive(Serialize, Deserialize)]
pub struct PathFileState {
    pub vfs: u32,
    pub node: NodeState,
    pub path: Vec<u8>,
    pub flags: u32,
}

/// A regular file of the rootfs or of a bind: reopened by its path under that root.
#[derive(Serialize, Deserialize)]
pub struct HostFileState {
    pub vfs: u32,
    pub root: HostRootRef,
    /// Its path relative to `root` ("" for a bind-mounted file itself).
    pub rel: Vec<u8>,
    /// The path the guest opened it by.
    pub path: Vec<u8>,
    pub pos: u64,
    pub flags: u32,
}

/// A host descriptor handed to the sandbox as a process's stdio.
#[derive(Serialize, Deserialize)]
pub struct StdioState {
    /// The container whose init's stdio it is (None: another process's, an exec's).
    pub container: Option<String>,
    /// Which stream (0, 1, 2) it was made for.
    pub slot: Option<u8>,
    pub flags: u32,
}

/// An open in-memory file (overlay or tmpfs).
#[derive(Serialize, Deserialize)]
pub struct TmpFileState {
    pub inode: u32,
    pub path: Vec<u8>,
    pub pos: u64,
    pub flags: u32,
}

/// One end of a pipe; the buffer both share is saved once (`super::vfs::PipeState`).
#[derive(Serialize, Deserialize)]
pub struct PipeEndState {
    pub pipe: u32,
    pub write_end: bool,
    pub flags: u32,
}

#[derive(Serialize, Deserialize)]
pub struct EventFdState {
    pub count: u64,
    pub semaphore: bool,
    pub flags: u32,
}

/// An epoll instance: its interest list (which is ready is found again by polling).
#[derive(Serialize, Deserialize)]
pub struct EpollState {
    pub entries: Vec<EpollEntryState>,
}

#[derive(Serialize, Deserialize)]
pub struct EpollEntryState {
    /// The watched description.
    pub file: u32,
    /// The fd it was added by.
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// An edge not reported yet (EPOLLET), or a report owed since EPOLL_CTL_ADD/MOD.
    pub edge: bool,
}

#[derive(Serialize, Deserialize)]
pub struct TimerFdState {
    pub clock: i32,
    /// Time from the checkpoint to the next expiry (None: disarmed): a restored timer
    /// fires that long after the restore.
    pub remaining_ns: Option<u64>,
    pub interval_ns: u64,
    /// Expirations not read yet.
    pub ticks: u64,
    pub flags: u32,
}

#[derive(Serialize, Deserialize)]
pub struct SignalFdState {
    pub mask: u64,
    pub flags: u32,
}

/// A file whose content was generated at open (/proc): the content itself.
#[derive(Serialize, Deserialize)]
pub struct ContentFileState {
    #[serde(with = "bytes")]
    pub data: Vec<u8>,
    pub pos: u64,
    pub path: Vec<u8>,
    pub stat: StatState,
    pub flags: u32,
}

/// A `struct stat` as a description reports it.
#[derive(Serialize, Deserialize)]
pub struct StatState {
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

impl From<&Stat> for StatState {
    fn from(s: &Stat) -> Self {
        StatState {
            dev: s.dev,
            ino: s.ino,
            nlink: s.nlink,
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            rdev: s.rdev,
            size: s.size,
            blksize: s.blksize,
            blocks: s.blocks,
            atime: s.atime,
            mtime: s.mtime,
            ctime: s.ctime,
        }
    }
}

impl From<StatState> for Stat {
    fn from(s: StatState) -> Self {
        Stat {
            dev: s.dev,
            ino: s.ino,
            nlink: s.nlink,
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            rdev: s.rdev,
            size: s.size,
            blksize: s.blksize,
            blocks: s.blocks,
            atime: s.atime,
            mtime: s.mtime,
            ctime: s.ctime,
        }
    }
}

/// A node a directory or O_PATH description stands on, in the description's file
/// system.
#[derive(Serialize, Deserialize)]
pub enum NodeState {
    /// An in-memory inode.
    Tmp(u32),
    /// A host entry, found again by its path under its root.
    Host {
        root: HostRootRef,
        rel: Vec<u8>,
    },
    Dev(DevNode),
    Proc(ProcNodeState),
}

/// A /proc entry. The process it showed is not saved: a restored one shows a process
/// with only the pid and owner it had (lookups below it see no open files, no maps).
#[derive(Serialize, Deserialize)]
pub struct ProcNodeState {
    pub rel: Vec<u8>,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// The container's mounts, as /proc/self/mounts lines.
    pub mounts: Vec<u8>,
}

/// One fd table: (fd, file id, close-on-exec) for each open fd.
#[derive(Serialize, Deserialize)]
pub struct FdTableState {
    pub slots: Vec<(u32, u32, bool)>,
}

/// The file behind a file-backed memory area.
#[derive(Serialize, Deserialize)]
pub enum MappedFileState {
    /// A regular file of the rootfs or of a bind, reopened for reading.
    Host {
        vfs: u32,
        root: HostRootRef,
        rel: Vec<u8>,
        path: String,
    },
    /// An in-memory file.
    Tmp { inode: u32, path: String },
    /// /dev/zero.
    Zero,
    /// An executable or interpreter the loader mapped: read through its open file.
    Image { file: u32 },
}

/// How deeply restoring one description may restore others it refers to (an epoll's
/// targets): Linux nests epolls at most `EP_MAX_NESTS` deep, and deeper recursion of a
/// forged state would only use up the stack.
const MAX_FILE_NESTING: usize = crate::vfs::epoll::EP_MAX_NESTS + 2;

impl SaveContext {
    /// The id of description `f`, saved the first time it is met.
    pub fn file_id(&mut self, f: &Arc<dyn FileDescription>) -> Result<u32, StateError> {
        let key = key_of(f);
        if let Some(id) = self.files.get(key) {
            return Ok(id);
        }
        let id = self.files.reserve(key);
        let state = f.save(self)?;
        self.files.fill(id, state);
        Ok(id)
    }

    /// The id of fd table `t`, saved (with the descriptions it holds) the first time.
    pub fn fd_table_id(&mut self, t: &Arc<FdTable>) -> Result<u32, StateError> {
        let key = key_of(t);
        if let Some(id) = self.fd_tables.get(key) {
            return Ok(id);
        }
        let id = self.fd_tables.reserve(key);
        let mut slots = Vec::new();
        for (fd, file, cloexec) in t.slots() {
            slots.push((fd as u32, self.file_id(&file)?, cloexec));
        }
        self.fd_tables.fill(id, FdTableState { slots });
        Ok(id)
    }

    /// Which file backs a memory area.
    pub fn mapped_file(&mut self, f: &Arc<dyn MappedFile>) -> Result<MappedFileState, StateError> {
        f.save(self)
    }

    /// The saved form of `node`, a node of file system `vfs` (saved already) that the
    /// guest reached by `path` (named in errors).
    pub fn node_state(
        &mut self,
        vfs: u32,
        node: &Node,
        path: &[u8],
    ) -> Result<NodeState, StateError> {
        Ok(match node {
            Node::Tmp(i) => NodeState::Tmp(self.vfs.inode_id(i)),
            Node::Host(h) => NodeState::Host {
                root: self.vfs.host_root_ref(vfs, &h.fs, path)?,
                rel: h.rel.clone(),
            },
            Node::Dev(d) => NodeState::Dev(*d),
            Node::Proc(p) => NodeState::Proc(ProcNodeState {
                rel: p.rel.clone(),
                pid: p.snap.pid,
                uid: p.snap.uid,
                gid: p.snap.gid,
                mounts: p.mounts.to_vec(),
            }),
        })
    }
}

impl RestoreContext {
    /// Description `id`, built the first time it is asked for.
    pub fn file(&mut self, id: u32) -> Result<Arc<dyn FileDescription>, StateError> {
        if let Some(f) = self.files.built(id) {
            return Ok(f);
        }
        let state = self.files.take(id)?;
        if self.vfs.file_nesting >= MAX_FILE_NESTING {
            return Err(StateError::invalid(format!(
                "open file {id}: descriptions refer to each other too deeply"
            )));
        }
        self.vfs.file_nesting += 1;
        let built = restore::file(self, id, state);
        self.vfs.file_nesting -= 1;
        let f = built?;
        self.files.put(id, f.clone());
        Ok(f)
    }

    /// Fd table `id`, built (with its descriptions, at the same fd numbers) the first
    /// time it is asked for.
    pub fn fd_table(&mut self, id: u32) -> Result<Arc<FdTable>, StateError> {
        if let Some(t) = self.fd_tables.built(id) {
            return Ok(t);
        }
        let state = self.fd_tables.take(id)?;
        let table = FdTable::new();
        let mut seen = HashSet::new();
        for (fd, file, cloexec) in state.slots {
            if fd as usize >= MAX_FDS {
                return Err(StateError::invalid(format!(
                    "fd table {id}: fd {fd} is not below the limit of {MAX_FDS}"
                )));
            }
            if !seen.insert(fd) {
                return Err(StateError::invalid(format!(
                    "fd table {id}: fd {fd} is open twice"
                )));
            }
            let f = self.file(file)?;
            table
                .install_at(fd as i32, f, cloexec, MAX_FDS as u64)
                .map_err(|errno| StateError::Restore {
                    what: format!("fd {fd} of fd table {id}"),
                    errno,
                })?;
        }
        let table = Arc::new(table);
        self.fd_tables.put(id, table.clone());
        Ok(table)
    }

    /// The file behind a restored memory area.
    pub fn mapped_file(
        &mut self,
        state: MappedFileState,
    ) -> Result<Arc<dyn MappedFile>, StateError> {
        restore::mapped(self, state)
    }
}

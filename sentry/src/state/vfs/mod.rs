//! Containers' file systems across a checkpoint: the overlay's in-memory tree, mounted
//! tmpfs contents, the mount table, each task's working directory and umask, and the
//! other objects descriptions share (pipes' buffers).
//!
//! A container's rootfs and bind sources are host directories: not saved, but given
//! anew (opened) by the restoring runtime, as `sources` of [`VfsRestore::new`]. The
//! overlay is rebuilt over the new rootfs; each saved bind is rebound from the new
//! spec's bind mount of the same destination (a saved bind with none is an error naming
//! it); tmpfs mounts come back with their contents and limits. The restored tree
//! assumes the new rootfs has the same content (the image names its digest).

mod inodes;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use inodes::{InodeKindState, InodeState, MetaState, SlotState, TmpFsState};

use super::files::check;
use super::registry::{key_of, RestoreTable, SaveTable};
use super::{RestoreContext, SaveContext, StateError};
use crate::abi::Errno;
use crate::sandbox::{HostSource, MountKind, MountSpec, SourceKind};
use crate::vfs::host::HostRoot;
use crate::vfs::persist::MountView;
use crate::vfs::pipe::{PipeBuffer, PIPE_CAPACITY};
use crate::vfs::tmpfs::Inode;
use crate::vfs::{path, FsContext, Vfs};

/// The file-system objects of the sandbox, each by id: container file systems, the
/// in-memory inodes and tmpfs instances they (and open files) hold, and pipes.
#[derive(Default, Serialize, Deserialize)]
pub struct VfsObjects {
    pub file_systems: Vec<VfsState>,
    pub inodes: Vec<InodeState>,
    pub tmpfs: Vec<TmpFsState>,
    pub pipes: Vec<PipeState>,
}

/// One container's file system.
#[derive(Serialize, Deserialize)]
pub struct VfsState {
    /// The overlay's root directory (an inode id).
    pub root: u32,
    pub mounts: Vec<MountState>,
}

/// One entry of the mount table.
#[derive(Serialize, Deserialize)]
pub struct MountState {
    /// The mount point: absolute and free of symbolic links.
    pub point: Vec<u8>,
    pub what: MountedState,
}

#[derive(Serialize, Deserialize)]
pub enum MountedState {
    /// A bind mount, rebound on restore from the new spec's bind of the same `dest`
    /// (the destination as the spec gave it, normalized). It must be of the same kind
    /// (directory or file); whether it is writable is the new spec's to say.
    Bind {
        dest: Vec<u8>,
        writable: bool,
        file: bool,
    },
    /// A tmpfs or empty read-only directory: its root inode (whose tmpfs has the limit).
    Tmpfs {
        root: u32,
    },
    Proc,
}

/// Which host root of a container file system a host file is under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostRootRef {
    Rootfs,
    /// The bind mounted at this mount point.
    Bind(Vec<u8>),
}

/// A pipe's buffer, shared by its ends.
#[derive(Serialize, Deserialize)]
pub struct PipeState {
    pub ino: u64,
    #[serde(with = "super::files::bytes")]
    pub data: Vec<u8>,
    pub capacity: u32,
}

/// A task's file-system context.
#[derive(Serialize, Deserialize)]
pub struct FsContextState {
    pub vfs: u32,
    pub cwd: Vec<u8>,
    pub umask: u32,
}

/// Saving: the file systems, inodes and pipes met so far.
#[derive(Default)]
pub struct VfsSave {
    file_systems: SaveTable<VfsState>,
    inodes: inodes::InodeSave,
    pipes: SaveTable<PipeState>,
    /// The host roots of each saved file system: (file system id, root's address).
    host_roots: HashMap<(u32, usize), HostRootRef>,
}

impl VfsSave {
    pub fn finish(self) -> VfsObjects {
        let (inodes, tmpfs) = self.inodes.finish();
        VfsObjects {
            file_systems: self.file_systems.into_states(),
            inodes,
            tmpfs,
            pipes: self.pipes.into_states(),
        }
    }

    /// The id of an in-memory inode (its contents are saved by `finish` at the latest).
    pub fn inode_id(&mut self, inode: &Arc<Inode>) -> u32 {
        self.inodes.id(inode)
    }

    /// The id of a pipe's buffer, saved with its contents the first time it is met.
    pub fn pipe_id(&mut self, buf: &Arc<PipeBuffer>) -> u32 {
        let key = key_of(buf);
        if let Some(id) = self.pipes.get(key) {
            return id;
        }
        let id = self.pipes.reserve(key);
        let (ino, data) = buf.saved();
        self.pipes.fill(
            id,
            PipeState {
                ino,
                data,
                capacity: PIPE_CAPACITY as u32,
            },
        );
        id
    }

    /// Which root of file system `vfs` (saved already) `root` is; `path` (the file's, as
    /// the guest named it) is for the error when it is none of them.
    pub fn host_root_ref(
        &self,
        vfs: u32,
        root: &Arc<HostRoot>,
        path: &[u8],
    ) -> Result<HostRootRef, StateError> {
        self.host_roots
            .get(&(vfs, key_of(root)))
            .cloned()
            .ok_or_else(|| {
                StateError::unsupported(format!(
                    "{}: a host file outside its container's mounts",
                    String::from_utf8_lossy(path)
                ))
            })
    }
}

/// Restoring: the saved file systems and what each container's is rebuilt over (given
/// anew by the restoring runtime: the same root and binds, opened again), and what
/// restoring descriptions needs besides (pipes, the containers' new stdio).
pub struct VfsRestore {
    file_systems: RestoreTable<VfsState, Vfs>,
    sources: HashMap<u32, (HostSource, Vec<MountSpec>)>,
    inodes: inodes::InodeRestore,
    pipes: RestoreTable<PipeState, PipeBuffer>,
    /// Each container's new stdio (fds 0, 1, 2) and the id it has now, by the id it had
    /// in the checkpoint.
    stdio: HashMap<String, (String, [OwnedFd; 3])>,
    /// Host files reopened for reading, shared by the descriptions and mappings of one
    /// file (reads are positioned): (file system, root, path under it).
    read_fds: HashMap<(u32, HostRootRef, Vec<u8>), Arc<OwnedFd>>,
    /// How deeply `RestoreContext::file` is nested now (an epoll restoring its targets).
    pub(in crate::state) file_nesting: usize,
}

impl VfsRestore {
    /// The restored guest memory: overlay files' cached pages (MAP_SHARED) are in it.
    pub fn set_memory(&mut self, memory: std::sync::Arc<crate::platform::memory::GuestMemory>) {
        self.inodes.memory = Some(memory);
    }

    /// `sources`: for each saved file system's id, the container's root and mounts
    /// opened anew (binds are matched to the saved ones by destination; the other
    /// kinds come back as saved).
    pub fn new(
        objects: VfsObjects,
        sources: HashMap<u32, (HostSource, Vec<MountSpec>)>,
    ) -> VfsRestore {
        VfsRestore {
            file_systems: RestoreTable::new("file system", objects.file_systems),
            sources,
            inodes: inodes::InodeRestore::new(objects.inodes, objects.tmpfs),
            pipes: RestoreTable::new("pipe", objects.pipes),
            stdio: HashMap::new(),
            read_fds: HashMap::new(),
            file_nesting: 0,
        }
    }

    /// Give a container new stdio (host fds 0, 1, 2): its init's saved stdio becomes
    /// these. `saved` is the container's id in the checkpoint, `now` its id in the
    /// restored sandbox (the same unless the restore renames it), which the restored
    /// stdio is labelled with for the next checkpoint. Call before restoring files; a
    /// container whose init had host stdio must be given some (`StateError::Restore`
    /// otherwise).
    pub fn give_stdio(&mut self, saved: &str, now: &str, fds: [OwnedFd; 3]) {
        self.stdio.insert(saved.to_string(), (now.to_string(), fds));
    }

    /// A new descriptor for stdio stream `slot` of the container saved as `container`,
    /// and the container's id now.
    pub(in crate::state) fn stdio_fd(
        &self,
        container: &str,
        slot: u8,
    ) -> Result<(OwnedFd, &str), StateError> {
        let what = || format!("stdio {slot} of container {container:?}");
        let (now, fds) = self
            .stdio
            .get(container)
            .ok_or_else(|| StateError::Restore {
                what: format!("{}: the restore gave the container none", what()),
                errno: Errno::EBADF,
            })?;
        let fd = fds
            .get(slot as usize)
            .ok_or_else(|| StateError::invalid(what()))?
            .try_clone()
            .map_err(|e| StateError::Restore {
                what: what(),
                errno: Errno::from_io(&e),
            })?;
        Ok((fd, now))
    }

    /// In-memory inode `id`.
    pub fn inode(&mut self, id: u32) -> Result<Arc<Inode>, StateError> {
        self.inodes.get(id)
    }

    /// Pipe buffer `id`, built the first time it is asked for.
    pub fn pipe(&mut self, id: u32) -> Result<Arc<PipeBuffer>, StateError> {
        if let Some(p) = self.pipes.built(id) {
            return Ok(p);
        }
        let s = self.pipes.take(id)?;
        if s.capacity as usize != PIPE_CAPACITY {
            return Err(StateError::invalid(format!(
                "pipe {id}: a capacity of {} bytes (this sentry's pipes hold {PIPE_CAPACITY})",
                s.capacity
            )));
        }
        let len = s.data.len();
        let p = PipeBuffer::restore(s.ino, s.data)
            .ok_or_else(|| StateError::invalid(format!("pipe {id}: {len} bytes buffered")))?;
        self.pipes.put(id, p.clone());
        Ok(p)
    }

    /// Container file system `id`, built the first time it is asked for.
    pub fn vfs(&mut self, id: u32) -> Result<Arc<Vfs>, StateError> {
        if let Some(v) = self.file_systems.built(id) {
            return Ok(v);
        }
        let state = self.file_systems.take(id)?;
        let (rootfs, specs) = self.sources.remove(&id).ok_or_else(|| {
            StateError::invalid(format!(
                "file system {id}: the restore gave no root file system for it"
            ))
        })?;
        let vfs = self.build_vfs(id, state, rootfs, specs)?;
        self.file_systems.put(id, vfs.clone());
        Ok(vfs)
    }

    fn build_vfs(
        &mut self,
        id: u32,
        state: VfsState,
        rootfs: HostSource,
        mut specs: Vec<MountSpec>,
    ) -> Result<Arc<Vfs>, StateError> {
        if rootfs.kind() != SourceKind::Dir {
            return Err(StateError::Restore {
                what: format!("root file system {}", rootfs.shown().display()),
                errno: Errno::ENOTDIR,
            });
        }
        let host = HostRoot::from_source(rootfs, false);
        let root = self.inodes.root(state.root, false)?;
        let mut mounts = Vec::with_capacity(state.mounts.len());
        let mut points = std::collections::HashSet::new();
        for m in state.mounts {
            let what = format!("file system {id}: mount point");
            check::abs_path(&what, &m.point)?;
            if matches!(m.point.as_slice(), b"/" | b"/dev" | b"/proc")
                || !points.insert(m.point.clone())
            {
                let p = String::from_utf8_lossy(&m.point).into_owned();
                return Err(StateError::invalid(format!("{what} {p}")));
            }
            let view = match m.what {
                MountedState::Bind { dest, file, .. } => rebind(&mut specs, dest, file)?,
                MountedState::Tmpfs { root } => MountView::Tmp(self.inodes.root(root, true)?),
                MountedState::Proc => MountView::Proc,
            };
            mounts.push((m.point, view));
        }
        for s in &specs {
            if matches!(s.kind, MountKind::Bind { .. })
                && path::normalize(&s.destination) != b"/etc/resolv.conf"
            {
                // Not mounted when the checkpoint was taken (the sandbox's own /dev,
                // /proc and resolv.conf are never bound over): not now either.
                tracing::warn!(
                    "restore: bind at {} not applied, the checkpoint had no mount there",
                    String::from_utf8_lossy(&s.destination)
                );
            }
        }
        Ok(Vfs::restored(host, root, mounts))
    }

    /// The host root `r` of file system `vfs`.
    pub fn host_root(&mut self, vfs: u32, r: &HostRootRef) -> Result<Arc<HostRoot>, StateError> {
        let v = self.vfs(vfs)?;
        match r {
            HostRootRef::Rootfs => Ok(v.rootfs().clone()),
            HostRootRef::Bind(point) => v.bind_at(point).ok_or_else(|| {
                StateError::invalid(format!(
                    "file system {vfs}: no bind mount at {}",
                    String::from_utf8_lossy(point)
                ))
            }),
        }
    }

    /// The regular file `rel` under `root` (root `r` of file system `vfs`), opened for
    /// reading once for all who read it.
    pub(in crate::state) fn read_fd(
        &mut self,
        vfs: u32,
        r: &HostRootRef,
        root: &HostRoot,
        rel: &[u8],
    ) -> Result<Arc<OwnedFd>, Errno> {
        let key = (vfs, r.clone(), rel.to_vec());
        if let Some(fd) = self.read_fds.get(&key) {
            return Ok(fd.clone());
        }
        let fd = root.open_file(rel)?;
        self.read_fds.insert(key, fd.clone());
        Ok(fd)
    }
}

/// The host root of the new spec's bind at `dest` (the last, as a later mount at one
/// place replaces an earlier one), taken out of `specs`.
fn rebind(specs: &mut Vec<MountSpec>, dest: Vec<u8>, file: bool) -> Result<MountView, StateError> {
    let shown = String::from_utf8_lossy(&dest).into_owned();
    let at = specs.iter().rposition(|s| {
        matches!(s.kind, MountKind::Bind { .. }) && path::normalize(&s.destination) == dest
    });
    let Some(at) = at else {
        return Err(StateError::Restore {
            what: format!("bind mount at {shown}: the restored container has none there"),
            errno: Errno::ENOENT,
        });
    };
    let MountKind::Bind { source, readonly } = specs.remove(at).kind else {
        return Err(StateError::invalid(format!("bind mount at {shown}")));
    };
    let is_file = matches!(source.kind(), SourceKind::File { .. });
    if is_file != file {
        return Err(StateError::Restore {
            what: format!(
                "bind mount at {shown}: its source {} is not a {} as it was",
                source.shown().display(),
                if file { "file" } else { "directory" }
            ),
            errno: if file { Errno::EISDIR } else { Errno::ENOTDIR },
        });
    }
    Ok(MountView::Bind {
        dest,
        root: HostRoot::from_source(source, !readonly),
    })
}

impl SaveContext {
    /// The id of container file system `vfs`, saved (its trees and mount table) the
    /// first time it is met.
    pub fn vfs_id(&mut self, vfs: &Arc<Vfs>) -> Result<u32, StateError> {
        let key = key_of(vfs);
        if let Some(id) = self.vfs.file_systems.get(key) {
            return Ok(id);
        }
        let id = self.vfs.file_systems.reserve(key);
        let root = self.vfs.inodes.id(vfs.overlay_root());
        self.vfs
            .host_roots
            .insert((id, key_of(vfs.rootfs())), HostRootRef::Rootfs);
        let mut mounts = Vec::new();
        for (point, view) in vfs.mount_views() {
            let what = match view {
                MountView::Bind { dest, root } => {
                    self.vfs
                        .host_roots
                        .insert((id, key_of(&root)), HostRootRef::Bind(point.clone()));
                    MountedState::Bind {
                        dest,
                        writable: root.writable,
                        file: root.is_file(),
                    }
                }
                MountView::Tmp(i) => MountedState::Tmpfs {
                    root: self.vfs.inodes.id(&i),
                },
                MountView::Proc => MountedState::Proc,
            };
            mounts.push(MountState { point, what });
        }
        self.vfs.inodes.drain();
        self.vfs.file_systems.fill(id, VfsState { root, mounts });
        Ok(id)
    }

    pub fn fs_context(&mut self, fs: &FsContext) -> Result<FsContextState, StateError> {
        Ok(FsContextState {
            vfs: self.vfs_id(&fs.vfs)?,
            cwd: fs.cwd.clone(),
            umask: fs.umask,
        })
    }
}

impl RestoreContext {
    pub fn vfs(&mut self, id: u32) -> Result<Arc<Vfs>, StateError> {
        self.vfs.vfs(id)
    }

    pub fn fs_context(&mut self, state: FsContextState) -> Result<FsContext, StateError> {
        check::abs_path("a working directory", &state.cwd)?;
        Ok(FsContext {
            vfs: self.vfs(state.vfs)?,
            cwd: state.cwd,
            umask: state.umask & 0o777,
        })
    }
}

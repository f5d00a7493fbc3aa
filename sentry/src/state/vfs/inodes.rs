//! In-memory inodes across a checkpoint: the overlay's upper tree, mounted tmpfs
//! contents, and inodes only open files hold (an unlinked or O_TMPFILE file). Each is
//! saved once by id, with its inode number, so hard links stay one inode and the guest
//! sees the same st_ino; a directory's entries name their inodes by id.
//!
//! Saving walks the trees with a work list, not recursion: a guest can nest directories
//! deeper than a stack would allow. Restoring builds every inode first, then fills in
//! the directories, checking that the entries make trees: a directory is in at most one
//! directory, a file system's root in none, and no directory is inside itself.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use super::super::files::check;
use super::super::registry::{key_of, SaveTable};
use super::StateError;
use crate::abi::Errno;
use crate::arch::PAGE_SIZE;
use crate::platform::memory::GuestMemory;
use crate::vfs::tmpfs::{
    Entry, Inode, Kind, Meta, TmpFs, MAX_FILE_SIZE, OVERLAY_BUDGET, OVERLAY_DEV,
};

/// A mounted tmpfs (or empty read-only directory).
#[derive(Serialize, Deserialize)]
pub struct TmpFsState {
    pub dev: u64,
    pub limit: u64,
    pub readonly: bool,
}

#[derive(Serialize, Deserialize)]
pub struct InodeState {
    pub ino: u64,
    /// The host entry's (st_dev, st_ino) an overlay copy keeps reporting.
    pub origin: Option<(u64, u64)>,
    /// A file's pages in guest frames (MAP_SHARED): (page index, frame). They are the
    /// file's truth where they exist; the bytes may be older.
    pub cached: Vec<(u64, u64)>,
    /// The mounted tmpfs it belongs to (None: the root overlay).
    pub fs: Option<u32>,
    pub meta: MetaState,
    pub kind: InodeKindState,
}

#[derive(Serialize, Deserialize)]
pub struct MetaState {
    /// With the S_IFMT bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

#[derive(Serialize, Deserialize)]
pub enum InodeKindState {
    /// `bytes` up to their length, zeros from there to `size`.
    File {
        #[serde(with = "super::super::files::bytes")]
        bytes: Vec<u8>,
        size: u64,
    },
    /// Upper entries by name; `lower` is the rootfs directory merged below (a path
    /// relative to the rootfs; None: opaque).
    Dir {
        entries: Vec<(Vec<u8>, SlotState)>,
        lower: Option<Vec<u8>>,
    },
    Symlink(Vec<u8>),
    /// A bound AF_UNIX socket's name. The socket it led to is not carried across yet:
    /// the restored name is dead (connect: ECONNREFUSED), as after the socket closed.
    Socket,
    /// A named pipe. Its buffer holds data only while it is open, and an open FIFO is
    /// refused by a checkpoint: it comes back empty.
    Fifo,
}

/// A directory's saved entries.
type Entries = Vec<(Vec<u8>, SlotState)>;

/// One directory entry.
#[derive(Serialize, Deserialize)]
pub enum SlotState {
    /// Hides the rootfs entry of that name.
    Whiteout,
    Inode(u32),
}

/// Saving: inodes and tmpfs instances by id.
#[derive(Default)]
pub(super) struct InodeSave {
    inodes: SaveTable<InodeState>,
    tmpfs: SaveTable<TmpFsState>,
    /// Inodes given an id whose state is not made yet.
    todo: Vec<(u32, Arc<Inode>)>,
}

impl InodeSave {
    /// The id of `inode`; its state (and its entries', for a directory) is made by the
    /// next [`InodeSave::drain`].
    pub(super) fn id(&mut self, inode: &Arc<Inode>) -> u32 {
        let key = key_of(inode);
        if let Some(id) = self.inodes.get(key) {
            return id;
        }
        let id = self.inodes.reserve(key);
        self.todo.push((id, inode.clone()));
        id
    }

    /// Make the state of every inode given an id so far, and of every inode they lead to.
    pub(super) fn drain(&mut self) {
        while let Some((id, inode)) = self.todo.pop() {
            let state = self.state_of(&inode);
            self.inodes.fill(id, state);
        }
    }

    fn state_of(&mut self, inode: &Inode) -> InodeState {
        let fs = inode.fs().map(|fs| {
            let key = key_of(fs);
            match self.tmpfs.get(key) {
                Some(id) => id,
                None => {
                    let id = self.tmpfs.reserve(key);
                    let state = TmpFsState {
                        dev: fs.dev,
                        limit: fs.limit(),
                        readonly: fs.readonly,
                    };
                    self.tmpfs.fill(id, state);
                    id
                }
            }
        });
        // Copy out under the inode's lock; ids are given after it is released.
        let (meta, kind, children) = {
            let d = inode.lock();
            let m = d.meta;
            let meta = MetaState {
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                nlink: m.nlink,
                atime: m.atime,
                mtime: m.mtime,
                ctime: m.ctime,
            };
            match &d.kind {
                Kind::File { bytes, size } => (
                    meta,
                    InodeKindState::File {
                        bytes: bytes.clone(),
                        size: *size,
                    },
                    None,
                ),
                Kind::Dir { entries, lower } => (
                    meta,
                    InodeKindState::Dir {
                        entries: Vec::new(),
                        lower: lower.clone(),
                    },
                    Some(entries.clone()),
                ),
                Kind::Symlink(t) => (meta, InodeKindState::Symlink(t.clone()), None),
                Kind::Socket(_) => (meta, InodeKindState::Socket, None),
                Kind::Fifo(_) => (meta, InodeKindState::Fifo, None),
            }
        };
        let kind = match (kind, children) {
            (InodeKindState::Dir { lower, .. }, Some(children)) => InodeKindState::Dir {
                entries: children
                    .into_iter()
                    .map(|(name, e)| {
                        let slot = match e {
                            Entry::Whiteout => SlotState::Whiteout,
                            Entry::Node(child) => SlotState::Inode(self.id(&child)),
                        };
                        (name, slot)
                    })
                    .collect(),
                lower,
            },
            (kind, _) => kind,
        };
        InodeState {
            ino: inode.ino,
            origin: inode.origin(),
            cached: inode.cached_pages(),
            fs,
            meta,
            kind,
        }
    }

    pub(super) fn finish(mut self) -> (Vec<InodeState>, Vec<TmpFsState>) {
        self.drain();
        (self.inodes.into_states(), self.tmpfs.into_states())
    }
}

/// Restoring: every inode, built (and checked) together the first time one is needed.
pub(super) struct InodeRestore {
    pending: Option<(Vec<InodeState>, Vec<TmpFsState>)>,
    /// The restored guest memory, for files with cached pages.
    pub(super) memory: Option<Arc<GuestMemory>>,
    built: Vec<Arc<Inode>>,
    /// Whether each inode is an entry of some directory.
    linked: Vec<bool>,
    /// Whether each inode is a file system's root already.
    rooted: Vec<bool>,
}

impl InodeRestore {
    pub(super) fn new(inodes: Vec<InodeState>, tmpfs: Vec<TmpFsState>) -> InodeRestore {
        InodeRestore {
            pending: Some((inodes, tmpfs)),
            memory: None,
            built: Vec::new(),
            linked: Vec::new(),
            rooted: Vec::new(),
        }
    }

    /// Inode `id`.
    pub(super) fn get(&mut self, id: u32) -> Result<Arc<Inode>, StateError> {
        if let Some((inodes, tmpfs)) = self.pending.take() {
            let (built, linked) = build(inodes, tmpfs, self.memory.as_ref())?;
            self.rooted = vec![false; built.len()];
            self.built = built;
            self.linked = linked;
        }
        self.built
            .get(id as usize)
            .cloned()
            .ok_or_else(|| StateError::invalid(format!("inode {id} does not exist")))
    }

    /// Inode `id` as the root directory of a file system: the overlay's (`tmpfs`
    /// unset) or a mounted tmpfs's. A root is in no directory and roots one file system.
    pub(super) fn root(&mut self, id: u32, tmpfs: bool) -> Result<Arc<Inode>, StateError> {
        let inode = self.get(id)?;
        let bad = |why: &str| StateError::invalid(format!("inode {id}: {why}"));
        if !inode.is_dir() {
            return Err(bad("a file system's root is not a directory"));
        }
        if inode.fs().is_some() != tmpfs {
            return Err(bad("a file system's root is in another file system"));
        }
        let i = id as usize;
        if self.linked.get(i).copied().unwrap_or(false) {
            return Err(bad("a file system's root is inside a directory"));
        }
        match self.rooted.get_mut(i) {
            Some(r) if !*r => *r = true,
            _ => return Err(bad("the root of two file systems")),
        }
        Ok(inode)
    }
}

/// A file's cached pages: in increasing order, within the file, whole frames of guest
/// memory.
fn check_cached(
    what: &str,
    cached: &[(u64, u64)],
    size: Option<u64>,
    memory: u64,
) -> Result<(), StateError> {
    let Some(size) = size else {
        return Err(bad(what, "cached pages for what is not a file"));
    };
    let mut last = None;
    for &(index, frame) in cached {
        let past_end = index.checked_mul(PAGE_SIZE).is_none_or(|at| at >= size);
        if past_end || last.is_some_and(|l| index <= l) {
            return Err(bad(what, format!("cached page {index}")));
        }
        if !frame.is_multiple_of(PAGE_SIZE) || frame >= memory {
            return Err(bad(
                what,
                format!("cached page {index} in frame {frame:#x}"),
            ));
        }
        last = Some(index);
    }
    Ok(())
}

fn bad(what: &str, why: impl std::fmt::Display) -> StateError {
    StateError::invalid(format!("{what}: {why}"))
}

/// The tmpfs instances, checked: distinct device numbers after the overlay's, limits
/// within the overlay's budget.
fn build_tmpfs(states: Vec<TmpFsState>) -> Result<Vec<Arc<TmpFs>>, StateError> {
    let mut devs = HashSet::new();
    let mut out = Vec::with_capacity(states.len());
    for (id, s) in states.into_iter().enumerate() {
        let what = format!("tmpfs {id}");
        if s.dev <= OVERLAY_DEV || s.dev > u64::from(u32::MAX) || !devs.insert(s.dev) {
            return Err(bad(&what, format!("device number {}", s.dev)));
        }
        if s.limit > OVERLAY_BUDGET {
            return Err(bad(&what, format!("a limit of {} bytes", s.limit)));
        }
        out.push(TmpFs::restore(s.dev, s.limit, s.readonly));
    }
    Ok(out)
}

/// Every inode, and whether each is some directory's entry.
fn build(
    states: Vec<InodeState>,
    tmpfs: Vec<TmpFsState>,
    memory: Option<&Arc<GuestMemory>>,
) -> Result<(Vec<Arc<Inode>>, Vec<bool>), StateError> {
    let fss = build_tmpfs(tmpfs)?;
    let n = states.len();
    let mut built = Vec::with_capacity(n);
    let mut dirs = Vec::new();
    let mut inos = HashSet::new();
    for (id, s) in states.into_iter().enumerate() {
        let what = format!("inode {id} (ino {})", s.ino);
        // Inode numbers are the guest's st_ino: distinct, and from the allocator's range.
        if s.ino < 2 || s.ino >= 1 << 62 || !inos.insert(s.ino) {
            return Err(bad(&what, "a repeated or impossible inode number"));
        }
        let fs = match s.fs {
            None => None,
            Some(f) => Some(
                fss.get(f as usize)
                    .cloned()
                    .ok_or_else(|| bad(&what, format!("no tmpfs {f}")))?,
            ),
        };
        let m = s.meta;
        let cached = s.cached;
        let file_size = match &s.kind {
            InodeKindState::File { size, .. } => Some(*size),
            _ => None,
        };
        let (typ, kind) = match s.kind {
            InodeKindState::File { bytes, size } => {
                if bytes.len() as u64 > size || size > MAX_FILE_SIZE {
                    return Err(bad(
                        &what,
                        format!("{} bytes for a file of size {size}", bytes.len()),
                    ));
                }
                (libc::S_IFREG, Kind::File { bytes, size })
            }
            InodeKindState::Dir { entries, lower } => {
                if let Some(l) = &lower {
                    check::rel_path(&what, l)?;
                }
                dirs.push((id, entries));
                let entries = BTreeMap::new();
                (libc::S_IFDIR, Kind::Dir { entries, lower })
            }
            InodeKindState::Symlink(t) => {
                check::link_target(&what, &t)?;
                (libc::S_IFLNK, Kind::Symlink(t))
            }
            InodeKindState::Socket => {
                let dead: Weak<dyn std::any::Any + Send + Sync> = Weak::<()>::new();
                (libc::S_IFSOCK, Kind::Socket(dead))
            }
            InodeKindState::Fifo => (
                libc::S_IFIFO,
                Kind::Fifo(crate::vfs::pipe::PipeBuffer::new_fifo()),
            ),
        };
        if m.mode & libc::S_IFMT != typ || m.mode & !(libc::S_IFMT | 0o7777) != 0 {
            return Err(bad(&what, format!("mode {:#o} for its kind", m.mode)));
        }
        let meta = Meta {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            nlink: m.nlink,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        };
        let inode = Inode::restore(s.ino, fs, meta, kind).map_err(|e| match e {
            Errno::ENOSPC => bad(&what, "more bytes than its file system holds"),
            e => bad(&what, e),
        })?;
        if let Some((dev, ino)) = s.origin {
            inode.set_origin(dev, ino);
        }
        if !cached.is_empty() {
            let memory = memory
                .ok_or_else(|| bad(&what, "cached pages, and no guest memory to hold them"))?;
            check_cached(&what, &cached, file_size, memory.size())?;
            inode.restore_cache(memory.clone(), cached);
        }
        built.push(inode);
    }
    let linked = match link(&built, dirs) {
        Ok(linked) => linked,
        Err(e) => {
            // Entries may make loops of `Arc`s: empty every directory so all is freed.
            for inode in &built {
                if let Kind::Dir { entries, .. } = &mut inode.lock().kind {
                    entries.clear();
                }
            }
            return Err(e);
        }
    };
    Ok((built, linked))
}

/// Fill in the directories' entries; whether each inode is an entry of one. Fails
/// unless the directories make trees.
fn link(built: &[Arc<Inode>], dirs: Vec<(usize, Entries)>) -> Result<Vec<bool>, StateError> {
    let n = built.len();
    let mut linked = vec![false; n];
    let mut is_dir = vec![false; n];
    let mut subdirs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (id, _) in &dirs {
        is_dir[*id] = true;
    }
    for (id, entries) in dirs {
        let what = format!("directory inode {id}");
        let mut map = BTreeMap::new();
        for (name, slot) in entries {
            check::entry_name(&what, &name)?;
            let entry = match slot {
                SlotState::Whiteout => Entry::Whiteout,
                SlotState::Inode(c) => {
                    let c = c as usize;
                    let child = built
                        .get(c)
                        .ok_or_else(|| bad(&what, format!("an entry of no inode {c}")))?;
                    if is_dir[c] {
                        // Directories have no hard links.
                        if linked[c] {
                            return Err(bad(&what, format!("directory inode {c} is in two")));
                        }
                        subdirs[id].push(c);
                    }
                    linked[c] = true;
                    Entry::Node(child.clone())
                }
            };
            if map.insert(name, entry).is_some() {
                return Err(bad(&what, "two entries of one name"));
            }
        }
        if let Kind::Dir { entries, .. } = &mut built[id].lock().kind {
            *entries = map;
        }
    }
    // Each directory is in at most one: walking down from those in none reaches every
    // directory unless some are inside themselves.
    let mut seen = vec![false; n];
    let mut todo: Vec<usize> = (0..n).filter(|&i| is_dir[i] && !linked[i]).collect();
    while let Some(d) = todo.pop() {
        if !std::mem::replace(&mut seen[d], true) {
            todo.extend(subdirs[d].iter().copied());
        }
    }
    if let Some(d) = (0..n).find(|&i| is_dir[i] && !seen[i]) {
        return Err(bad(&format!("directory inode {d}"), "it is inside itself"));
    }
    Ok(linked)
}

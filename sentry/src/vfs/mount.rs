//! A container's mount table (its OCI `mounts`): bind-mounted host directories and
//! files, tmpfs mounts, empty read-only directories standing in for sysfs and cgroup, and
//! the sentry's /proc at another place.
//!
//! Mounts are keyed by the absolute, symlink-free guest path of their mount point. The
//! walk (`walk.rs`) checks the table before each step, so a mount point needs no entry of
//! its own underneath (it may be in /dev, or under a read-only bind); `mount` still creates
//! a missing mount point in the file system below where it can, as runc does. Listings
//! add the mount points a directory holds.
//!
//! Each node knows its file system ([`FsOf`]): the root overlay, a mounted tmpfs, a bind,
//! or the synthesized trees. Namespace changes across two of them fail with EXDEV; writes
//! to read-only ones with EROFS; a mount point cannot be removed or renamed (EBUSY), and
//! neither can a directory with mount points below it.
//!
//! The table only grows while the container is set up, before any guest code runs; the
//! walk takes a snapshot (an `Arc`) per path.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::file::DirEntry;
use super::host::HostRoot;
use super::host_source::HostSource;
use super::node::Node;
use super::path;
use super::proc::ProcNode;
use super::tmpfs::{Inode, Meta, TmpFs};
use super::walk::{dtype, Found};
use super::{no_proc, Lookup, Vfs};
use crate::abi::Errno;

/// What to mount.
pub enum Mount {
    /// A host directory or regular file, opened beforehand (see [`Mount::bind`]).
    Bind(Arc<HostRoot>),
    /// An empty in-memory file system: at most `size` bytes (else the overlay's budget),
    /// root directory mode `mode` (else 01777).
    Tmpfs {
        size: Option<u64>,
        mode: Option<u32>,
    },
    /// An empty read-only directory (what sysfs and cgroup mounts get).
    EmptyReadOnly,
    /// The sentry's /proc, somewhere other than /proc.
    Proc,
}

impl Mount {
    /// A bind mount of an opened host directory or file (see `host_source`).
    pub fn bind(source: HostSource, readonly: bool) -> Mount {
        Mount::Bind(HostRoot::from_source(source, !readonly))
    }
}

/// Why a mount was not made.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}: the sandbox keeps its own root, /dev and /proc")]
    Reserved(String),
    #[error("mount point {path}: {errno}")]
    MountPoint { path: String, errno: Errno },
}

/// The root of a mount.
pub(super) enum MountRoot {
    /// A bind, with its destination as the container's spec gave it (normalized): a
    /// restore rebinds it from the new spec's mount of that destination.
    Host {
        root: Arc<HostRoot>,
        dest: Vec<u8>,
    },
    Tmp(Arc<Inode>),
    Proc,
}

impl MountRoot {
    /// The node the walk stands on when it enters the mount.
    pub(super) fn node(&self, lk: &Lookup) -> Result<Node, Errno> {
        match self {
            MountRoot::Host { root: h, .. } => h
                .lookup(b"")?
                .map(|n| Node::Host(Arc::new(n)))
                .ok_or(Errno::ENOENT),
            MountRoot::Tmp(i) => Ok(Node::Tmp(i.clone())),
            MountRoot::Proc => Ok(Node::Proc(ProcNode::root(lk.snapshot()))),
        }
    }

    /// The line /proc/self/mounts shows for this mount at `point`.
    fn mounts_line(&self, point: &[u8]) -> Vec<u8> {
        let (source, typ, opts) = match self {
            MountRoot::Host { root: h, .. } => {
                ("none", "bind", if h.writable { "rw" } else { "ro" })
            }
            MountRoot::Tmp(i) => match i.fs() {
                Some(fs) if fs.readonly => ("none", "sysfs", "ro"),
                _ => ("tmpfs", "tmpfs", "rw"),
            },
            MountRoot::Proc => ("proc", "proc", "rw"),
        };
        let mut line = source.as_bytes().to_vec();
        line.push(b' ');
        // Linux escapes space, tab, newline and backslash in octal.
        for b in point {
            match b {
                b' ' | b'\t' | b'\n' | b'\\' => {
                    line.extend_from_slice(format!("\\{b:03o}").as_bytes())
                }
                _ => line.push(*b),
            }
        }
        line.extend_from_slice(format!(" {typ} {opts},relatime 0 0\n").as_bytes());
        line
    }
}

/// Mount points (absolute guest paths) and what is mounted there.
pub(super) type MountTable = BTreeMap<Vec<u8>, Arc<MountRoot>>;

/// The file system a node belongs to.
pub(super) enum FsOf {
    /// The root overlay: upper inodes and the rootfs below them.
    Overlay,
    /// A tmpfs (or empty read-only directory) mounted by the container.
    Tmp(Arc<TmpFs>),
    /// A bind-mounted host directory or file.
    Host(Arc<HostRoot>),
    /// The synthesized /dev and /proc.
    Synthetic,
}

impl FsOf {
    /// Whether two nodes' file systems are one (rename and link stay inside one).
    pub(super) fn same(&self, other: &FsOf) -> bool {
        match (self, other) {
            (FsOf::Overlay, FsOf::Overlay) => true,
            (FsOf::Tmp(a), FsOf::Tmp(b)) => Arc::ptr_eq(a, b),
            (FsOf::Host(a), FsOf::Host(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// EROFS for read-only mounts.
    pub(super) fn check_writable(&self) -> Result<(), Errno> {
        match self {
            FsOf::Tmp(t) if t.readonly => Err(Errno::EROFS),
            FsOf::Host(h) if !h.writable => Err(Errno::EROFS),
            _ => Ok(()),
        }
    }
}

impl Vfs {
    /// The mount table as it is now.
    pub(super) fn mounts(&self) -> Arc<MountTable> {
        self.mounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether something is mounted at the normalized absolute path `point`.
    pub fn has_mount(&self, point: &[u8]) -> bool {
        self.mounts().get(point).is_some()
    }

    /// The sandbox's /proc, whose mounts file lists this container's mounts.
    pub(super) fn proc_root(&self, lk: &Lookup) -> ProcNode {
        let mut lines = Vec::new();
        for (point, root) in self.mounts().iter() {
            lines.extend_from_slice(&root.mounts_line(point));
        }
        ProcNode::root_with_mounts(lk.snapshot(), Arc::new(lines))
    }

    pub(super) fn fs_of(&self, n: &Node) -> FsOf {
        match n {
            Node::Tmp(i) => match i.fs() {
                Some(t) => FsOf::Tmp(t.clone()),
                None => FsOf::Overlay,
            },
            Node::Host(h) if Arc::ptr_eq(&h.fs, &self.host) => FsOf::Overlay,
            Node::Host(h) => FsOf::Host(h.fs.clone()),
            Node::Dev(_) | Node::Proc(_) => FsOf::Synthetic,
        }
    }

    /// Mount `what` at the guest path `dest`. Missing directories on the way are created
    /// (in the overlay, or in whatever is mounted there already), and so is a missing
    /// mount point where the file system below takes it; symbolic links on the way are
    /// followed inside the container. A later mount at the same place replaces an
    /// earlier one.
    pub fn mount(&self, dest: &[u8], what: Mount) -> Result<(), MountError> {
        let shown = String::from_utf8_lossy(dest).into_owned();
        let fail = |errno| MountError::MountPoint {
            path: shown.clone(),
            errno,
        };
        if !dest.starts_with(b"/") {
            return Err(fail(Errno::EINVAL));
        }
        let dest = path::normalize(dest);
        if matches!(dest.as_slice(), b"/" | b"/dev" | b"/proc") {
            return Err(MountError::Reserved(shown));
        }
        let lk = Lookup::new(b"/", 0, 0, 0o022, &no_proc);
        let comps = path::components(&dest).map_err(fail)?;
        let mut at = Vec::new();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            at = path::join(if at.is_empty() { b"/" } else { &at }, c);
            let r = self.resolve(&lk, &at, true).map_err(fail)?;
            match &r.found {
                Found::Missing => match self.mkdir(&lk, &r.path(), 0o755) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail(e)),
                },
                Found::Node(n) if n.is_dir() => {}
                _ => return Err(fail(Errno::ENOTDIR)),
            }
        }
        let wants_dir = !matches!(&what, Mount::Bind(h) if h.is_file());
        let r = self.resolve(&lk, &dest, true).map_err(fail)?;
        let point = r.path();
        match &r.found {
            Found::Missing => {
                // Where the file system below refuses (/dev, a read-only bind), the mount
                // point exists in the mount table only.
                let made = if wants_dir {
                    self.mkdir(&lk, &point, 0o755)
                } else {
                    let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) as u32;
                    self.open_unmounted(&lk, &point, flags, 0o644)
                };
                if let Err(e) = made {
                    tracing::debug!("mount point {shown}: not created below the mount ({e})");
                }
            }
            Found::Node(n) if n.is_dir() != wants_dir => return Err(fail(Errno::ENOTDIR)),
            Found::Node(_) => {}
            Found::Magic(_) => return Err(fail(Errno::EINVAL)),
        }
        let root = match what {
            Mount::Bind(h) => MountRoot::Host {
                root: h,
                dest: dest.clone(),
            },
            Mount::Tmpfs { size, mode } => {
                let fs = TmpFs::new(size, false);
                let mode = libc::S_IFDIR | (mode.unwrap_or(0o1777) & 0o7777);
                MountRoot::Tmp(tmpfs_root(fs, mode))
            }
            Mount::EmptyReadOnly => {
                MountRoot::Tmp(tmpfs_root(TmpFs::new(Some(0), true), libc::S_IFDIR | 0o555))
            }
            Mount::Proc => MountRoot::Proc,
        };
        let mut table = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        let mut next = MountTable::clone(&table);
        next.insert(point, Arc::new(root));
        *table = Arc::new(next);
        Ok(())
    }

    /// Create a file at a would-be mount point, ignoring the file description.
    fn open_unmounted(&self, lk: &Lookup, p: &[u8], flags: u32, mode: u32) -> Result<(), Errno> {
        let r = self.resolve(lk, p, false)?;
        let m = Meta::new(libc::S_IFREG | mode, lk.uid, lk.gid);
        let file = super::tmpfs::Kind::File {
            bytes: Vec::new(),
            size: 0,
        };
        if let Some((h, rel)) = self.host_parent(&r)? {
            return h.create_file(&rel, flags, mode, 0, 0).map(|_| ());
        }
        self.create(&r, Inode::new(m, file)).map(|_| ())
    }

    /// The mount whose mount point is `dir_path`/`name`.
    pub(super) fn mounted_at(
        table: &MountTable,
        dirs: &[(Vec<u8>, Node)],
        name: &[u8],
    ) -> Option<Arc<MountRoot>> {
        if table.is_empty() {
            return None;
        }
        let names = dirs
            .iter()
            .map(|(n, _)| n.as_slice())
            .chain(std::iter::once(name));
        table.get(&path::from_names(names)).cloned()
    }

    /// Listing entries for the mount points directly inside the directory `dir_path`
    /// that `have` does not already name.
    pub(super) fn mount_entries(&self, dir_path: &[u8], have: &[DirEntry]) -> Vec<DirEntry> {
        let lk = Lookup::new(b"/", 0, 0, 0o022, &no_proc);
        let mut out = Vec::new();
        for (point, root) in self.mounts().iter() {
            let Some(i) = point.iter().rposition(|b| *b == b'/') else {
                continue;
            };
            let parent: &[u8] = if i == 0 { b"/" } else { &point[..i] };
            let name = &point[i + 1..];
            if parent != dir_path || have.iter().any(|e| e.name == name) {
                continue;
            }
            if let Ok(n) = root.node(&lk) {
                out.push(DirEntry {
                    ino: n.stat().ino,
                    kind: dtype(&n),
                    name: name.to_vec(),
                });
            }
        }
        out
    }

    /// Whether a mount point lies strictly below `p` (such a directory cannot move).
    pub(super) fn has_mounts_below(&self, p: &[u8]) -> bool {
        let mut prefix = p.to_vec();
        if !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        self.mounts()
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

/// The root directory of a new tmpfs.
fn tmpfs_root(fs: Arc<TmpFs>, mode: u32) -> Arc<Inode> {
    let root = Inode::new_dir(Meta::new(mode, 0, 0), None);
    root.join_fs(Some(&fs));
    root
}

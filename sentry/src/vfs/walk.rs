//! Path resolution inside the sandbox: absolute or relative to a base directory, ".",
//! "..", symbolic links (host ones included, read with readlinkat and followed here, never
//! by the host kernel), ELOOP after 40, trailing slashes, mount points (`mount.rs`: the
//! table is checked before each step; ".." from a mount's root leads to the mount
//! point's parent); and merged directory listings.

use std::collections::VecDeque;
use std::sync::Arc;

use super::dev::DevNode;
use super::file::{DirEntry, FileDescription};
use super::node::{LinkTarget, Node};
use super::path::{self, MAX_SYMLINKS};
use super::tmpfs::{Entry, Kind};
use super::{Lookup, Vfs};
use crate::abi::Errno;

/// What the final component named.
pub enum Found {
    Node(Node),
    /// Absent; the parent directory is the last of `dirs`.
    Missing,
    /// A /proc/self/fd link to something with no place in the tree (a pipe, stdio).
    Magic(Arc<dyn FileDescription>),
}

/// The result of a walk.
pub struct Resolved {
    /// Directories from the root down to the parent of the final component, with the
    /// names they were reached by (the root's name is empty).
    pub dirs: Vec<(Vec<u8>, Node)>,
    /// The final component ("" for "/"). After a final "." or ".." it is the name of the
    /// directory they led to, and `dot` is set.
    pub name: Vec<u8>,
    /// The last component as written was "." or "..": which one.
    pub dot: Option<Vec<u8>>,
    pub found: Found,
    pub trailing_slash: bool,
    /// The final component is a mount point (the node is the mount's root).
    pub mount_point: bool,
    /// The path to show for the result when it came through a /proc/self/fd link.
    shown: Option<Vec<u8>>,
}

impl Resolved {
    /// The absolute, symlink-free path of the final component.
    pub fn path(&self) -> Vec<u8> {
        if let Some(s) = &self.shown {
            return s.clone();
        }
        let names = self
            .dirs
            .iter()
            .map(|(n, _)| n.as_slice())
            .chain(std::iter::once(self.name.as_slice()));
        path::from_names(names)
    }

    /// The inode number of the parent directory (the node's own for the root).
    pub fn parent_ino(&self) -> u64 {
        match (&self.found, self.dirs.last()) {
            (_, Some((_, p))) => p.stat().ino,
            (Found::Node(n), None) => n.stat().ino,
            _ => 0,
        }
    }

    /// The node, or ENOENT.
    pub fn node(&self) -> Result<&Node, Errno> {
        match &self.found {
            Found::Node(n) => Ok(n),
            _ => Err(Errno::ENOENT),
        }
    }
}

impl Vfs {
    /// Resolve `path` for `lk`. The final component's symbolic link is followed when
    /// `follow` is set (and always when the path ends in a slash).
    pub fn resolve(&self, lk: &Lookup, path: &[u8], follow: bool) -> Result<Resolved, Errno> {
        path::check(path)?;
        let trailing_slash = path::has_trailing_slash(path);
        let mut todo: VecDeque<Vec<u8>> = VecDeque::new();
        if !path.starts_with(b"/") {
            todo.extend(path::components(lk.base)?);
        }
        todo.extend(path::components(path)?);
        let mut dirs: Vec<(Vec<u8>, Node)> = vec![(Vec::new(), Node::Tmp(self.root.clone()))];
        let mut links = 0;
        let mounts = self.mounts();
        let finish = |mut dirs: Vec<(Vec<u8>, Node)>, dot: Option<Vec<u8>>| {
            let (name, node) = dirs
                .pop()
                .unwrap_or_else(|| (Vec::new(), Node::Tmp(self.root.clone())));
            Resolved {
                dirs,
                name,
                dot,
                found: Found::Node(node),
                trailing_slash,
                mount_point: false,
                shown: None,
            }
        };
        loop {
            let Some(comp) = todo.pop_front() else {
                // The path (or a link's text) named the directory we stand on ("/").
                return Ok(finish(dirs, Some(b".".to_vec())));
            };
            let last = todo.is_empty();
            let cur = match dirs.last() {
                Some((_, n)) => n.clone(),
                None => Node::Tmp(self.root.clone()),
            };
            if !cur.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if path::is_dot(&comp) {
                if comp == b".." && dirs.len() > 1 {
                    dirs.pop();
                }
                if last {
                    return Ok(finish(dirs, Some(comp)));
                }
                continue;
            }
            let mount = Vfs::mounted_at(&mounts, &dirs, &comp);
            let child = match &mount {
                Some(m) => Some(m.node(lk)?),
                None => self.lookup_child(lk, &cur, &comp)?,
            };
            let Some(node) = child else {
                if last {
                    return Ok(Resolved {
                        dirs,
                        name: comp,
                        dot: None,
                        found: Found::Missing,
                        trailing_slash,
                        mount_point: false,
                        shown: None,
                    });
                }
                return Err(Errno::ENOENT);
            };
            if node.is_symlink() && (!last || follow || trailing_slash) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = match node.link_target() {
                    Some(LinkTarget::Path(t)) => t,
                    Some(LinkTarget::File { file, shown }) => match file.vfs_node() {
                        Some(n) if last && !n.is_dir() => {
                            return Ok(Resolved {
                                dirs,
                                name: comp,
                                dot: None,
                                found: Found::Node(n),
                                trailing_slash,
                                mount_point: false,
                                shown: Some(shown),
                            })
                        }
                        Some(_) => shown,
                        None if last => {
                            return Ok(Resolved {
                                dirs,
                                name: comp,
                                dot: None,
                                found: Found::Magic(file),
                                trailing_slash,
                                mount_point: false,
                                shown: Some(shown),
                            })
                        }
                        None => return Err(Errno::ENOTDIR),
                    },
                    None => return Err(Errno::EIO),
                };
                if target.is_empty() {
                    return Err(Errno::ENOENT);
                }
                if target.starts_with(b"/") {
                    dirs.truncate(1);
                }
                for c in path::components(&target)?.into_iter().rev() {
                    todo.push_front(c);
                }
                continue;
            }
            if last {
                if trailing_slash && !node.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
                return Ok(Resolved {
                    dirs,
                    name: comp,
                    dot: None,
                    found: Found::Node(node),
                    trailing_slash,
                    mount_point: mount.is_some(),
                    shown: None,
                });
            }
            dirs.push((comp, node));
        }
    }

    /// One step of the walk: `name` in directory `dir`; None if absent.
    pub(super) fn lookup_child(
        &self,
        lk: &Lookup,
        dir: &Node,
        name: &[u8],
    ) -> Result<Option<Node>, Errno> {
        match dir {
            Node::Tmp(i) => {
                if Arc::ptr_eq(i, &self.root) {
                    match name {
                        b"dev" => return Ok(Some(Node::Dev(DevNode::Dir))),
                        b"proc" => return Ok(Some(Node::Proc(self.proc_root(lk)))),
                        _ => {}
                    }
                }
                let lower = {
                    let d = i.lock();
                    let Kind::Dir { entries, lower } = &d.kind else {
                        return Err(Errno::ENOTDIR);
                    };
                    match entries.get(name) {
                        Some(Entry::Whiteout) => return Ok(None),
                        Some(Entry::Node(c)) => return Ok(Some(Node::Tmp(c.clone()))),
                        None => lower.clone(),
                    }
                };
                match lower {
                    Some(l) => self.host_child(&l, name),
                    None => Ok(None),
                }
            }
            Node::Host(h) => Ok(h
                .fs
                .lookup(&path::join_rel(&h.rel, name))?
                .map(|n| Node::Host(Arc::new(n)))),
            Node::Dev(DevNode::Dir) => Ok(DevNode::lookup(name).map(Node::Dev)),
            Node::Dev(_) => Ok(None),
            Node::Proc(p) => Ok(p.lookup(name).map(Node::Proc)),
        }
    }

    fn host_child(&self, dir_rel: &[u8], name: &[u8]) -> Result<Option<Node>, Errno> {
        Ok(self
            .host
            .lookup(&path::join_rel(dir_rel, name))?
            .map(|h| Node::Host(Arc::new(h))))
    }

    /// Whether the host has `name` under the lower directory `lower`.
    pub(super) fn lower_has(&self, lower: &Option<Vec<u8>>, name: &[u8]) -> Result<bool, Errno> {
        match lower {
            Some(l) => Ok(self.host.lookup(&path::join_rel(l, name))?.is_some()),
            None => Ok(false),
        }
    }

    /// The entries of the directory `dir` (at the guest path `dir_path`), "." and ".."
    /// first; upper entries and whiteouts applied over the host's; with the mount points
    /// it holds.
    pub fn list(
        &self,
        dir: &Node,
        dir_path: &[u8],
        parent_ino: u64,
    ) -> Result<Vec<DirEntry>, Errno> {
        let mut out = self.list_below(dir, parent_ino)?;
        let more = self.mount_entries(dir_path, &out);
        out.extend(more);
        Ok(out)
    }

    /// `list` without the mount points.
    fn list_below(&self, dir: &Node, parent_ino: u64) -> Result<Vec<DirEntry>, Errno> {
        match dir {
            Node::Tmp(i) => {
                let (entries, lower) = {
                    let d = i.lock();
                    let Kind::Dir { entries, lower } = &d.kind else {
                        return Err(Errno::ENOTDIR);
                    };
                    (entries.clone(), lower.clone())
                };
                let mut out = vec![
                    DirEntry {
                        ino: i.ino,
                        kind: libc::DT_DIR,
                        name: b".".to_vec(),
                    },
                    DirEntry {
                        ino: parent_ino,
                        kind: libc::DT_DIR,
                        name: b"..".to_vec(),
                    },
                ];
                let is_root = Arc::ptr_eq(i, &self.root);
                if let Some(l) = lower {
                    for e in self.host.read_dir(&l)? {
                        let shadowed = path::is_dot(&e.name)
                            || entries.contains_key(&e.name)
                            || (is_root && (e.name == b"dev" || e.name == b"proc"));
                        if !shadowed {
                            out.push(e);
                        }
                    }
                }
                for (name, e) in &entries {
                    if let Entry::Node(c) = e {
                        out.push(DirEntry {
                            ino: c.ino,
                            kind: dtype(&Node::Tmp(c.clone())),
                            name: name.clone(),
                        });
                    }
                }
                if is_root {
                    out.push(DirEntry {
                        ino: DevNode::Dir.stat().ino,
                        kind: libc::DT_DIR,
                        name: b"dev".to_vec(),
                    });
                    out.push(DirEntry {
                        ino: 1,
                        kind: libc::DT_DIR,
                        name: b"proc".to_vec(),
                    });
                }
                Ok(out)
            }
            Node::Host(h) => h.fs.read_dir(&h.rel),
            Node::Dev(d) => Ok(d.list()),
            Node::Proc(p) => Ok(p.list()),
        }
    }
}

/// The DT_* type of a node.
pub fn dtype(n: &Node) -> u8 {
    match n.file_type() {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_UNKNOWN,
    }
}

//! A node the path walk can stand on: a host entry not shadowed by the overlay, an
//! overlay inode, or a synthetic /dev or /proc entry.

use std::sync::Arc;

use super::dev::DevNode;
use super::file::{FileDescription, Stat};
use super::host::HostNode;
use super::proc::ProcNode;
use super::tmpfs::{Inode, Kind};

#[derive(Clone)]
pub enum Node {
    /// A host entry with no overlay entry over it.
    Host(Arc<HostNode>),
    /// An overlay inode (possibly a copied-up host directory merged with its lower layer).
    Tmp(Arc<Inode>),
    Dev(DevNode),
    Proc(ProcNode),
}

/// Where a symbolic link leads.
pub enum LinkTarget {
    /// An ordinary link: its text.
    Path(Vec<u8>),
    /// A /proc "magic" link to an open file (shown as `shown`).
    File {
        file: Arc<dyn FileDescription>,
        shown: Vec<u8>,
    },
}

impl Node {
    pub fn stat(&self) -> Stat {
        match self {
            Node::Host(h) => h.stat,
            Node::Tmp(i) => i.stat(),
            Node::Dev(d) => d.stat(),
            Node::Proc(p) => p.stat(),
        }
    }

    /// The S_IFMT bits.
    pub fn file_type(&self) -> u32 {
        match self {
            Node::Host(h) => h.stat.mode & libc::S_IFMT,
            Node::Tmp(i) => i.lock().meta.mode & libc::S_IFMT,
            Node::Dev(d) => d.stat().mode & libc::S_IFMT,
            Node::Proc(p) => p.file_type(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == libc::S_IFLNK
    }

    /// The link's destination, for symbolic links.
    pub fn link_target(&self) -> Option<LinkTarget> {
        match self {
            Node::Host(h) => h.target.clone().map(LinkTarget::Path),
            Node::Tmp(i) => match &i.lock().kind {
                Kind::Symlink(t) => Some(LinkTarget::Path(t.clone())),
                _ => None,
            },
            Node::Dev(d) => d.link_target().map(|t| LinkTarget::Path(t.to_vec())),
            Node::Proc(p) => p.link_target(),
        }
    }

    /// The text readlink(2) returns.
    pub fn readlink(&self) -> Option<Vec<u8>> {
        self.link_target().map(|t| match t {
            LinkTarget::Path(p) => p,
            LinkTarget::File { shown, .. } => shown,
        })
    }

    /// Whether two nodes are the same file.
    pub fn same(&self, other: &Node) -> bool {
        match (self, other) {
            (Node::Tmp(a), Node::Tmp(b)) => Arc::ptr_eq(a, b),
            _ => {
                let (a, b) = (self.stat(), other.stat());
                a.dev == b.dev && a.ino == b.ino
            }
        }
    }
}

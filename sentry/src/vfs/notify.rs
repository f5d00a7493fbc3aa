//! The file system's changes as inotify events (see `inotify.rs`): each namespace change
//! of `ops.rs` and `open.rs`, wrapped, raises its events once it has succeeded, and
//! writes to open files raise IN_MODIFY. With no watch anywhere a change costs one atomic
//! load more; with watches, the names involved are resolved again to find the watched
//! nodes (after the change: a copy-up has moved the watches to the copies by then).

use std::sync::Arc;

use super::inotify::{self, Key, IN_ATTRIB, IN_CREATE, IN_DELETE, IN_ISDIR, IN_MODIFY};
use super::inotify::{IN_MOVED_FROM, IN_MOVED_TO, IN_MOVE_SELF};
use super::ops::TimeSpec;
use super::tmpfs::Inode;
use super::walk::{Found, Resolved};
use super::{FileDescription, Lookup, ProcSnapshot, Vfs};
use crate::abi::Errno;

/// What a name leads to, for raising events: the node's key, whether it is a directory,
/// how many links it has, and its directory's key with the name in it.
struct Named {
    node: Option<(Key, bool, u64)>,
    parent: Option<Key>,
    name: Vec<u8>,
}

fn named(r: &Resolved) -> Named {
    let node = match &r.found {
        Found::Node(n) => {
            let st = n.stat();
            Some((inotify::key_of(&st), n.is_dir(), st.nlink))
        }
        _ => None,
    };
    Named {
        node,
        parent: r.dirs.last().map(|(_, d)| inotify::key_of(&d.stat())),
        name: r.name.clone(),
    }
}

impl Vfs {
    /// What `p` names now, if anything watches this file system.
    fn watched(&self, lk: &Lookup, p: &[u8], follow: bool) -> Option<Named> {
        if !self.watches.active() {
            return None;
        }
        self.resolve(lk, p, follow).ok().map(|r| named(&r))
    }

    /// `mask` on the entry `n` names: to its watches, and to its directory's with the name.
    fn raise(&self, n: &Named, mask: u32) {
        if let Some((key, is_dir, _)) = n.node {
            let mask = if is_dir { mask | IN_ISDIR } else { mask };
            // The directory's event first, as Linux queues them.
            if let Some(parent) = n.parent {
                self.watches.notify(parent, mask, 0, &n.name);
            }
            self.watches.notify(key, mask, 0, b"");
        }
    }

    /// A new entry at `p`: IN_CREATE to its directory.
    fn raise_created(&self, lk: &Lookup, p: &[u8]) {
        if let Some(n) = self.watched(lk, p, false) {
            if let (Some(parent), Some((_, is_dir, _))) = (n.parent, n.node) {
                let mask = if is_dir {
                    IN_CREATE | IN_ISDIR
                } else {
                    IN_CREATE
                };
                self.watches.notify(parent, mask, 0, &n.name);
            }
        }
    }

    /// The entry `n` named is gone from its directory, in Linux's order: a file's link
    /// count changes; with its last link the node goes (IN_DELETE_SELF, IN_IGNORED);
    /// then its directory reports the name deleted.
    fn raise_removed(&self, n: &Named) {
        let Some((key, is_dir, links)) = n.node else {
            return;
        };
        if !is_dir {
            self.watches.notify(key, IN_ATTRIB, 0, b"");
        }
        if is_dir || links <= 1 {
            self.watches.gone(key);
        }
        if let Some(parent) = n.parent {
            let mask = if is_dir {
                IN_DELETE | IN_ISDIR
            } else {
                IN_DELETE
            };
            self.watches.notify(parent, mask, 0, &n.name);
        }
    }

    pub fn mkdir(&self, lk: &Lookup, p: &[u8], mode: u32) -> Result<(), Errno> {
        self.mkdir_op(lk, p, mode)?;
        self.raise_created(lk, p);
        Ok(())
    }

    pub fn mknod(&self, lk: &Lookup, p: &[u8], typ: u32, mode: u32) -> Result<(), Errno> {
        self.mknod_op(lk, p, typ, mode)?;
        self.raise_created(lk, p);
        Ok(())
    }

    pub fn symlink(&self, lk: &Lookup, target: &[u8], p: &[u8]) -> Result<(), Errno> {
        self.symlink_op(lk, target, p)?;
        self.raise_created(lk, p);
        Ok(())
    }

    pub fn link(
        &self,
        lo: &Lookup,
        old: &[u8],
        follow: bool,
        ln: &Lookup,
        new: &[u8],
    ) -> Result<(), Errno> {
        self.link_op(lo, old, follow, ln, new)?;
        if let Some(n) = self.watched(ln, new, false) {
            self.raise_created(ln, new);
            if let Some((key, _, _)) = n.node {
                self.watches.notify(key, IN_ATTRIB, 0, b"");
            }
        }
        Ok(())
    }

    /// linkat(AT_EMPTY_PATH) of an overlay inode (an O_TMPFILE file gets its first name).
    pub fn link_inode(&self, ln: &Lookup, new: &[u8], inode: Arc<Inode>) -> Result<(), Errno> {
        self.link_inode_op(ln, new, inode)?;
        self.raise_created(ln, new);
        Ok(())
    }

    pub fn unlink(&self, lk: &Lookup, p: &[u8]) -> Result<(), Errno> {
        let before = self.watched(lk, p, false);
        self.unlink_op(lk, p)?;
        if let Some(n) = before {
            self.raise_removed(&self.with_parent_now(lk, p, n));
        }
        Ok(())
    }

    pub fn rmdir(&self, lk: &Lookup, p: &[u8]) -> Result<(), Errno> {
        let before = self.watched(lk, p, false);
        self.rmdir_op(lk, p)?;
        if let Some(n) = before {
            self.raise_removed(&self.with_parent_now(lk, p, n));
        }
        Ok(())
    }

    /// `n` (resolved before a change) with its directory's key as it is now: removing an
    /// entry from a host directory copies the directory up, and its watches with it.
    fn with_parent_now(&self, lk: &Lookup, p: &[u8], mut n: Named) -> Named {
        if let Some(parent) = self.parent_of(lk, p) {
            n.parent = Some(parent);
        }
        n
    }

    /// The key of the directory `p` is in, now.
    fn parent_of(&self, lk: &Lookup, p: &[u8]) -> Option<Key> {
        let r = self.resolve(lk, p, false).ok()?;
        r.dirs.last().map(|(_, d)| inotify::key_of(&d.stat()))
    }

    /// renameat2: IN_MOVED_FROM and IN_MOVED_TO with one cookie, IN_MOVE_SELF to the
    /// node; a replaced entry is removed (an exchange moves both).
    pub fn rename(
        &self,
        lo: &Lookup,
        old: &[u8],
        ln: &Lookup,
        new: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let moving = self.watched(lo, old, false);
        let replaced = self.watched(ln, new, false);
        self.rename_op(lo, old, ln, new, flags)?;
        let (Some(from), Some(to_before)) = (moving, replaced) else {
            return Ok(());
        };
        let exchange = flags & super::ops::RENAME_EXCHANGE != 0;
        // A replaced node loses a link (and is gone with its last one).
        let replaced = to_before
            .node
            .filter(|(key, _, _)| !exchange && Some(*key) != from.node.map(|n| n.0));
        let old_parent = self.parent_of(lo, old).or(from.parent);
        let new_parent = self.parent_of(ln, new);
        self.raise_move(&from, old_parent, new_parent, &to_before.name, replaced);
        if exchange {
            if let Some(other) = self.watched(lo, old, false) {
                self.raise_move(&other, new_parent, old_parent, &from.name, None);
            }
        }
        Ok(())
    }

    /// Linux's order (fsnotify_move): IN_MOVED_FROM, IN_MOVED_TO, the replaced node's
    /// link count, IN_MOVE_SELF; then the replaced node goes if that was its last link.
    fn raise_move(
        &self,
        n: &Named,
        from_dir: Option<Key>,
        to_dir: Option<Key>,
        to_name: &[u8],
        replaced: Option<(Key, bool, u64)>,
    ) {
        let Some((key, is_dir, _)) = n.node else {
            return;
        };
        let dir = if is_dir { IN_ISDIR } else { 0 };
        let cookie = inotify::next_cookie();
        if let Some(d) = from_dir {
            self.watches.notify(d, IN_MOVED_FROM | dir, cookie, &n.name);
        }
        if let Some(d) = to_dir {
            self.watches.notify(d, IN_MOVED_TO | dir, cookie, to_name);
        }
        if let Some((gone, gone_is_dir, _)) = replaced {
            if !gone_is_dir {
                self.watches.notify(gone, IN_ATTRIB, 0, b"");
            }
        }
        self.watches.notify(key, IN_MOVE_SELF | dir, 0, b"");
        if let Some((gone, gone_is_dir, links)) = replaced {
            if gone_is_dir || links <= 1 {
                self.watches.gone(gone);
            }
        }
    }

    pub fn chmod(&self, lk: &Lookup, p: &[u8], mode: u32, follow: bool) -> Result<(), Errno> {
        self.chmod_op(lk, p, mode, follow)?;
        self.raise_on(lk, p, follow, IN_ATTRIB);
        Ok(())
    }

    pub fn chown(
        &self,
        lk: &Lookup,
        p: &[u8],
        uid: u32,
        gid: u32,
        follow: bool,
    ) -> Result<(), Errno> {
        self.chown_op(lk, p, uid, gid, follow)?;
        self.raise_on(lk, p, follow, IN_ATTRIB);
        Ok(())
    }

    pub fn utimes(
        &self,
        lk: &Lookup,
        p: &[u8],
        times: [TimeSpec; 2],
        follow: bool,
    ) -> Result<(), Errno> {
        self.utimes_op(lk, p, times, follow)?;
        self.raise_on(lk, p, follow, IN_ATTRIB);
        Ok(())
    }

    pub fn truncate(&self, lk: &Lookup, p: &[u8], len: u64) -> Result<(), Errno> {
        self.truncate_op(lk, p, len)?;
        self.raise_on(lk, p, true, IN_MODIFY);
        Ok(())
    }

    fn raise_on(&self, lk: &Lookup, p: &[u8], follow: bool, mask: u32) {
        if let Some(n) = self.watched(lk, p, follow) {
            self.raise(&n, mask);
        }
    }

    /// openat(2) for `lk`: IN_CREATE for a file it made, IN_MODIFY for one it truncated.
    pub fn open(
        self: &Arc<Self>,
        lk: &Lookup,
        path: &[u8],
        flags: u32,
        mode: u32,
    ) -> Result<Arc<dyn FileDescription>, Errno> {
        if !self.watches.active() {
            return self.open_op(lk, path, flags, mode);
        }
        let creates = flags & libc::O_CREAT as u32 != 0;
        let existed = creates
            && self
                .resolve(lk, path, true)
                .is_ok_and(|r| matches!(r.found, Found::Node(_)));
        let file = self.open_op(lk, path, flags, mode)?;
        if creates && !existed {
            self.raise_created(lk, path);
        } else if flags & libc::O_TRUNC as u32 != 0 && flags & libc::O_ACCMODE as u32 != 0 {
            self.raise_on(lk, path, true, IN_MODIFY);
        }
        Ok(file)
    }

    /// `mask` (IN_MODIFY after a write or truncation, IN_ATTRIB after fchmod …) on the
    /// node an open file is, and to its directory under the name it was opened by.
    pub fn raise_on_file(&self, file: &dyn FileDescription, mask: u32) {
        if !self.watches.active() {
            return;
        }
        let Some(node) = file.vfs_node() else {
            return;
        };
        let is_dir = node.is_dir();
        let key = inotify::key_of(&node.stat());
        let path = file.path().into_bytes();
        let no_proc = ProcSnapshot::default;
        let lk = Lookup::new(b"/", 0, 0, 0, &no_proc);
        // The directory only if the name still leads to this node.
        let parent = self.resolve(&lk, &path, false).ok().and_then(|r| {
            let same = matches!(&r.found, Found::Node(n) if n.same(&node));
            same.then(|| r.dirs.last().map(|(_, d)| inotify::key_of(&d.stat())))
                .flatten()
                .map(|d| (d, r.name.clone()))
        });
        let named = Named {
            node: Some((key, is_dir, 0)),
            parent: parent.as_ref().map(|p| p.0),
            name: parent.map(|p| p.1).unwrap_or_default(),
        };
        self.raise(&named, mask);
    }
}

//! Namespace changes: create, mkdir, unlink, rmdir, rename, link, symlink, chmod, utimes,
//! truncate, AF_UNIX socket names; plus stat, readlink and access. In the root overlay,
//! host directories on the way are copied up as merged directories and a removed host
//! entry leaves a whiteout; in a mounted tmpfs, changes are in memory; in a writable bind
//! they reach the host (`hostrw`); read-only mounts refuse them with EROFS.

use std::any::Any;
use std::sync::{Arc, Weak};

use super::file::Stat;
use super::host::HostRoot;
use super::inotify;
use super::mount::FsOf;
use super::node::Node;
use super::path;
use super::tmpfs::{now, Entry, Inode, Kind, Meta};
use super::walk::{Found, Resolved};
use super::{permits, Lookup, Vfs};
use crate::abi::Errno;

pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

/// What utimensat sets each time to.
#[derive(Clone, Copy, Debug)]
pub enum TimeSpec {
    Now,
    Omit,
    At(i64, i64),
}

/// A directory's upper entries.
type Entries = std::collections::BTreeMap<Vec<u8>, Entry>;

/// A directory's upper entries and its lower (host) directory.
fn dir_entries(d: &mut super::tmpfs::InodeData) -> Result<(&mut Entries, &Option<Vec<u8>>), Errno> {
    match &mut d.kind {
        Kind::Dir { entries, lower } => Ok((entries, lower)),
        _ => Err(Errno::ENOTDIR),
    }
}

/// A writable bind and a path in it.
type HostPlace = (Arc<HostRoot>, Vec<u8>);

impl Vfs {
    /// The in-memory parent for a new entry: copy up each rootfs directory on the way,
    /// from the last in-memory directory (the overlay root, or a mounted tmpfs's root).
    fn materialize(&self, dirs: &[(Vec<u8>, Node)]) -> Result<Arc<Inode>, Errno> {
        let start = dirs
            .iter()
            .rposition(|(_, n)| matches!(n, Node::Tmp(_)))
            .ok_or(Errno::ENOENT)?;
        let mut cur = match &dirs[start].1 {
            Node::Tmp(i) => i.clone(),
            _ => return Err(Errno::ENOENT),
        };
        if let Some(fs) = cur.fs() {
            if fs.readonly {
                return Err(Errno::EROFS);
            }
        }
        for (name, node) in &dirs[start + 1..] {
            cur = match node {
                Node::Host(h) if Arc::ptr_eq(&h.fs, &self.host) => {
                    self.copy_up(&cur, name, &Node::Host(h.clone()), false)?
                }
                // Inside a bind (writable binds never get here: see `host_parent`).
                Node::Host(_) => return Err(Errno::EROFS),
                // The synthesized trees take no new entries.
                Node::Tmp(_) | Node::Dev(_) | Node::Proc(_) => return Err(Errno::EACCES),
            };
        }
        Ok(cur)
    }

    /// Where a new entry named `r.name` goes when its parent is in a writable bind: the
    /// bind and the entry's path in it. None when the parent is in memory; EROFS in a
    /// read-only mount.
    pub(super) fn host_parent(&self, r: &Resolved) -> Result<Option<HostPlace>, Errno> {
        let Some((_, dir)) = r.dirs.last() else {
            return Ok(None);
        };
        let fs = self.fs_of(dir);
        fs.check_writable()?;
        match (fs, dir) {
            (FsOf::Host(h), Node::Host(d)) => Ok(Some((h, path::join_rel(&d.rel, &r.name)))),
            _ => Ok(None),
        }
    }

    /// Where a change to the existing node `r` names goes when the node is in a writable
    /// bind: the bind and its path there. None when it is (or is copied up) in memory;
    /// EROFS in a read-only mount.
    pub(super) fn host_target(&self, r: &Resolved) -> Result<Option<HostPlace>, Errno> {
        let node = r.node()?;
        let fs = self.fs_of(node);
        fs.check_writable()?;
        match (fs, node) {
            (FsOf::Host(h), Node::Host(n)) => Ok(Some((h, n.rel.clone()))),
            _ => Ok(None),
        }
    }

    /// The file system of the directory holding `r`'s final component.
    fn parent_fs(&self, r: &Resolved) -> FsOf {
        match r.dirs.last() {
            Some((_, d)) => self.fs_of(d),
            None => FsOf::Overlay,
        }
    }

    /// Put an upper copy of host entry `node` at `name` in `parent` (or return the upper
    /// entry already there). Directories become merged directories over the host one;
    /// files are copied (with their data when `with_data`); links keep their text.
    fn copy_up(
        &self,
        parent: &Arc<Inode>,
        name: &[u8],
        node: &Node,
        with_data: bool,
    ) -> Result<Arc<Inode>, Errno> {
        let h = match node {
            Node::Tmp(i) => return Ok(i.clone()),
            Node::Host(h) if Arc::ptr_eq(&h.fs, &self.host) => h.clone(),
            // Bind-mounted files are never copied (writes reach them or fail).
            Node::Host(_) => return Err(Errno::EROFS),
            Node::Dev(_) | Node::Proc(_) => return Err(Errno::EXDEV),
        };
        if let Some(Entry::Node(i)) = dir_entries(&mut parent.lock())?.0.get(name) {
            return Ok(i.clone());
        }
        let meta = Meta::from_stat(&h.stat);
        let inode = match h.stat.mode & libc::S_IFMT {
            libc::S_IFDIR => Inode::new_dir(meta, Some(h.rel.clone())),
            libc::S_IFLNK => Inode::new(meta, Kind::Symlink(h.target.clone().unwrap_or_default())),
            libc::S_IFREG => {
                let bytes = if with_data {
                    self.host.read_all(&h.rel)?
                } else {
                    Vec::new()
                };
                let size = if with_data { bytes.len() as u64 } else { 0 };
                Inode::new(meta, Kind::File { bytes, size })
            }
            // Host devices, FIFOs and sockets are never brought into the sandbox.
            _ => return Err(Errno::EACCES),
        };
        inode.set_origin(h.stat.dev, h.stat.ino);
        dir_entries(&mut parent.lock())?
            .0
            .insert(name.to_vec(), Entry::Node(inode.clone()));
        // Watches on the host entry follow it up (a no-op while the copy keeps the
        // host entry's identity, as it does now).
        self.watches
            .rekey(inotify::key_of(&h.stat), inotify::key_of(&inode.stat()));
        Ok(inode)
    }

    /// The upper inode for a resolved existing node, copying it up if it is a host entry.
    pub(super) fn copy_up_in_place(
        &self,
        r: &Resolved,
        with_data: bool,
    ) -> Result<Arc<Inode>, Errno> {
        let node = r.node()?;
        if let Node::Tmp(i) = node {
            self.fs_of(node).check_writable()?;
            return Ok(i.clone());
        }
        let _ns = self.ns();
        let parent = self.materialize(&r.dirs)?;
        self.copy_up(&parent, &r.name, node, with_data)
    }

    /// Link a new inode at a missing name (the caller checked it is missing).
    pub(super) fn create(&self, r: &Resolved, inode: Arc<Inode>) -> Result<Arc<Inode>, Errno> {
        let _ns = self.ns();
        let parent = self.materialize(&r.dirs)?;
        inode.join_fs(parent.fs());
        let mut p = parent.lock();
        let (entries, _) = dir_entries(&mut p)?;
        if matches!(entries.get(&r.name), Some(Entry::Node(_))) {
            return Err(Errno::EEXIST);
        }
        entries.insert(r.name.clone(), Entry::Node(inode.clone()));
        touch_dir(&mut p);
        Ok(inode)
    }

    /// Take `name` out of `parent`, leaving a whiteout if the host has it.
    fn remove_entry(&self, parent: &Arc<Inode>, name: &[u8]) -> Result<(), Errno> {
        let lower = {
            let mut p = parent.lock();
            let (entries, lower) = dir_entries(&mut p)?;
            let lower = lower.clone();
            if let Some(Entry::Node(i)) = entries.remove(name) {
                let mut d = i.lock();
                d.meta.nlink = d.meta.nlink.saturating_sub(1);
                d.meta.ctime = now();
            }
            lower
        };
        if self.lower_has(&lower, name)? {
            dir_entries(&mut parent.lock())?
                .0
                .insert(name.to_vec(), Entry::Whiteout);
        }
        touch_dir(&mut parent.lock());
        Ok(())
    }

    /// Whether the directory `n` at `p` has entries besides "." and "..".
    fn is_empty_dir(&self, n: &Node, p: &[u8]) -> Result<bool, Errno> {
        Ok(self.list(n, p, 0)?.iter().all(|e| path::is_dot(&e.name)))
    }

    pub fn stat(&self, lk: &Lookup, p: &[u8], follow: bool) -> Result<Stat, Errno> {
        let r = self.resolve(lk, p, follow)?;
        match &r.found {
            Found::Node(n) => Ok(n.stat()),
            Found::Magic(f) => f.stat(),
            Found::Missing => Err(Errno::ENOENT),
        }
    }

    pub(super) fn mkdir_op(&self, lk: &Lookup, p: &[u8], mode: u32) -> Result<(), Errno> {
        let r = self.resolve(lk, p, false)?;
        if !matches!(r.found, Found::Missing) {
            return Err(Errno::EEXIST);
        }
        let mode = mode & 0o7777 & !lk.umask;
        if let Some((h, rel)) = self.host_parent(&r)? {
            return h.mkdir(&rel, mode, lk.uid, lk.gid);
        }
        let m = Meta::new(libc::S_IFDIR | mode, lk.uid, lk.gid);
        // A new directory is opaque: nothing of a deleted host directory shows through.
        self.create(&r, Inode::new_dir(m, None)).map(|_| ())
    }

    /// mknod of a regular file or a FIFO (`typ`: S_IFREG or S_IFIFO) in the overlay or
    /// a tmpfs; in a writable bind, EPERM (the host's FIFOs are not the sandbox's).
    pub(super) fn mknod_op(&self, lk: &Lookup, p: &[u8], typ: u32, mode: u32) -> Result<(), Errno> {
        let r = self.resolve(lk, p, false)?;
        if !matches!(r.found, Found::Missing) {
            return Err(Errno::EEXIST);
        }
        if r.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if self.host_parent(&r)?.is_some() {
            return Err(Errno::EPERM);
        }
        let m = Meta::new(typ | (mode & 0o7777 & !lk.umask), lk.uid, lk.gid);
        let kind = if typ == libc::S_IFIFO {
            Kind::Fifo(super::pipe::PipeBuffer::new_fifo())
        } else {
            Kind::File {
                bytes: Vec::new(),
                size: 0,
            }
        };
        self.create(&r, Inode::new(m, kind)).map(|_| ())
    }

    pub(super) fn symlink_op(&self, lk: &Lookup, target: &[u8], p: &[u8]) -> Result<(), Errno> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= path::PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let r = self.resolve(lk, p, false)?;
        if !matches!(r.found, Found::Missing) {
            return Err(Errno::EEXIST);
        }
        if r.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if let Some((h, rel)) = self.host_parent(&r)? {
            return h.symlink(target, &rel, lk.uid, lk.gid);
        }
        let m = Meta::new(libc::S_IFLNK | 0o777, lk.uid, lk.gid);
        self.create(&r, Inode::new(m, Kind::Symlink(target.to_vec())))
            .map(|_| ())
    }

    pub(super) fn unlink_op(&self, lk: &Lookup, p: &[u8]) -> Result<(), Errno> {
        let r = self.resolve(lk, p, false)?;
        if r.dot.is_some() {
            return Err(Errno::EISDIR);
        }
        let node = match &r.found {
            Found::Node(n) => n.clone(),
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(_) => return Err(Errno::EACCES),
        };
        if node.is_dir() {
            return Err(Errno::EISDIR);
        }
        if matches!(node, Node::Dev(_) | Node::Proc(_)) {
            return Err(Errno::EACCES);
        }
        if r.mount_point {
            return Err(Errno::EBUSY);
        }
        if let Some((h, rel)) = self.host_parent(&r)? {
            return h.remove(&rel, false);
        }
        let _ns = self.ns();
        let parent = self.materialize(&r.dirs)?;
        self.remove_entry(&parent, &r.name)
    }

    pub(super) fn rmdir_op(&self, lk: &Lookup, p: &[u8]) -> Result<(), Errno> {
        let r = self.resolve(lk, p, false)?;
        match r.dot.as_deref() {
            Some(b"..") => return Err(Errno::ENOTEMPTY),
            // rmdir("/") is EBUSY; rmdir(".") and "dir/." are EINVAL.
            Some(_) if p.iter().all(|b| *b == b'/') => return Err(Errno::EBUSY),
            Some(_) => return Err(Errno::EINVAL),
            None => {}
        }
        let node = match &r.found {
            Found::Node(n) => n.clone(),
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(_) => return Err(Errno::ENOTDIR),
        };
        if !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if matches!(node, Node::Dev(_) | Node::Proc(_)) || r.dirs.is_empty() || r.mount_point {
            return Err(Errno::EBUSY);
        }
        self.parent_fs(&r).check_writable()?;
        if !self.is_empty_dir(&node, &r.path())? {
            return Err(Errno::ENOTEMPTY);
        }
        if let Some((h, rel)) = self.host_parent(&r)? {
            return h.remove(&rel, true);
        }
        let _ns = self.ns();
        let parent = self.materialize(&r.dirs)?;
        self.remove_entry(&parent, &r.name)
    }

    /// renameat2(2) with RENAME_NOREPLACE and RENAME_EXCHANGE (RENAME_WHITEOUT: EINVAL).
    pub(super) fn rename_op(
        &self,
        lo: &Lookup,
        old: &[u8],
        ln: &Lookup,
        new: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
            || flags & RENAME_WHITEOUT != 0
            || flags & (RENAME_NOREPLACE | RENAME_EXCHANGE) == (RENAME_NOREPLACE | RENAME_EXCHANGE)
        {
            return Err(Errno::EINVAL);
        }
        let ro = self.resolve(lo, old, false)?;
        let rn = self.resolve(ln, new, false)?;
        if ro.dot.is_some() || rn.dot.is_some() {
            return Err(Errno::EBUSY);
        }
        let src = match &ro.found {
            Found::Node(n) => n.clone(),
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(_) => return Err(Errno::EXDEV),
        };
        let dst = match &rn.found {
            Found::Node(n) => Some(n.clone()),
            Found::Missing => None,
            Found::Magic(_) => return Err(Errno::EXDEV),
        };
        let synthetic = |n: &Node| matches!(n, Node::Dev(_) | Node::Proc(_));
        let (fs_old, fs_new) = (self.parent_fs(&ro), self.parent_fs(&rn));
        if synthetic(&src)
            || dst.as_ref().is_some_and(synthetic)
            || matches!(fs_old, FsOf::Synthetic)
            || !fs_old.same(&fs_new)
        {
            return Err(Errno::EXDEV);
        }
        fs_old.check_writable()?;
        // Mount points stay where they are, and so do directories holding them.
        if ro.mount_point
            || rn.mount_point
            || (src.is_dir() && self.has_mounts_below(&ro.path()))
            || dst
                .as_ref()
                .is_some_and(|d| d.is_dir() && self.has_mounts_below(&rn.path()))
        {
            return Err(Errno::EBUSY);
        }
        if flags & RENAME_EXCHANGE != 0 && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if !src.is_dir() && rn.trailing_slash && flags & RENAME_EXCHANGE == 0 {
            return Err(Errno::ENOTDIR);
        }
        let (old_path, new_path) = (ro.path(), rn.path());
        let inside = |a: &[u8], b: &[u8]| {
            a.len() > b.len() && a.starts_with(b) && (a[b.len()] == b'/' || b == b"/")
        };
        if let Some(d) = &dst {
            if d.same(&src) {
                return Ok(());
            }
            if flags & RENAME_EXCHANGE == 0 {
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if !self.is_empty_dir(d, &new_path)? => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
            }
        }
        // A directory cannot move below itself (and the other way round for exchange).
        if src.is_dir() && inside(&new_path, &old_path) {
            return Err(Errno::EINVAL);
        }
        if flags & RENAME_EXCHANGE != 0
            && dst.as_ref().is_some_and(|d| d.is_dir())
            && inside(&old_path, &new_path)
        {
            return Err(Errno::EINVAL);
        }
        if let (FsOf::Host(h), Some((_, Node::Host(od))), Some((_, Node::Host(nd)))) =
            (&fs_old, ro.dirs.last(), rn.dirs.last())
        {
            let old_rel = path::join_rel(&od.rel, &ro.name);
            return h.rename(&old_rel, &path::join_rel(&nd.rel, &rn.name), flags);
        }
        let _ns = self.ns();
        let op = self.materialize(&ro.dirs)?;
        let np = self.materialize(&rn.dirs)?;
        let s = self.copy_up(&op, &ro.name, &src, true)?;
        if flags & RENAME_EXCHANGE != 0 {
            let d = self.copy_up(&np, &rn.name, dst.as_ref().ok_or(Errno::ENOENT)?, true)?;
            dir_entries(&mut op.lock())?
                .0
                .insert(ro.name.clone(), Entry::Node(d));
            dir_entries(&mut np.lock())?
                .0
                .insert(rn.name.clone(), Entry::Node(s.clone()));
        } else {
            // Detach the source (whiteout if the host has it), then link it at the target.
            {
                let mut p = op.lock();
                dir_entries(&mut p)?.0.remove(&ro.name);
            }
            let lower = dir_entries(&mut op.lock())?.1.clone();
            if self.lower_has(&lower, &ro.name)? {
                dir_entries(&mut op.lock())?
                    .0
                    .insert(ro.name.clone(), Entry::Whiteout);
            }
            let replaced = dir_entries(&mut np.lock())?
                .0
                .insert(rn.name.clone(), Entry::Node(s.clone()));
            if let Some(Entry::Node(old)) = replaced {
                let mut d = old.lock();
                d.meta.nlink = d.meta.nlink.saturating_sub(1);
            }
        }
        s.lock().meta.ctime = now();
        touch_dir(&mut op.lock());
        touch_dir(&mut np.lock());
        Ok(())
    }

    /// linkat(2): a new name for an existing non-directory.
    pub(super) fn link_op(
        &self,
        lo: &Lookup,
        old: &[u8],
        follow: bool,
        ln: &Lookup,
        new: &[u8],
    ) -> Result<(), Errno> {
        let ro = self.resolve(lo, old, follow)?;
        let src = match &ro.found {
            Found::Node(n) => n.clone(),
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(_) => return Err(Errno::EXDEV),
        };
        if src.is_dir() {
            return Err(Errno::EPERM);
        }
        let rn = self.resolve(ln, new, false)?;
        if !matches!(rn.found, Found::Missing) {
            return Err(Errno::EEXIST);
        }
        if rn.trailing_slash {
            return Err(Errno::ENOENT);
        }
        let fs_new = self.parent_fs(&rn);
        if matches!(src, Node::Dev(_) | Node::Proc(_))
            || matches!(fs_new, FsOf::Synthetic)
            || !self.fs_of(&src).same(&fs_new)
        {
            return Err(Errno::EXDEV);
        }
        if let Some((h, new_rel)) = self.host_parent(&rn)? {
            let Node::Host(s) = &src else {
                return Err(Errno::EXDEV);
            };
            return h.link(&s.rel, &new_rel);
        }
        let inode = self.copy_up_in_place(&ro, true)?;
        self.create(&rn, inode.clone())?;
        let mut d = inode.lock();
        d.meta.nlink += 1;
        d.meta.ctime = now();
        Ok(())
    }

    /// linkat(AT_EMPTY_PATH) of an overlay inode (an O_TMPFILE file gets its first name).
    pub(super) fn link_inode_op(
        &self,
        ln: &Lookup,
        new: &[u8],
        inode: Arc<Inode>,
    ) -> Result<(), Errno> {
        if inode.is_dir() {
            return Err(Errno::EPERM);
        }
        let rn = self.resolve(ln, new, false)?;
        if !matches!(rn.found, Found::Missing) {
            return Err(Errno::EEXIST);
        }
        if rn.trailing_slash {
            return Err(Errno::ENOENT);
        }
        let fs = self.parent_fs(&rn);
        fs.check_writable()?;
        let same = match (&fs, inode.fs()) {
            (FsOf::Overlay, None) => true,
            (FsOf::Tmp(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same {
            return Err(Errno::EXDEV);
        }
        self.create(&rn, inode.clone())?;
        let mut d = inode.lock();
        d.meta.nlink += 1;
        d.meta.ctime = now();
        Ok(())
    }

    /// bind(2) of an AF_UNIX socket to a path (Linux unix_bind_bsd): a new socket inode
    /// that leads to `socket`. The path must not exist (EADDRINUSE), not even as a link.
    pub fn bind_socket(
        &self,
        lk: &Lookup,
        p: &[u8],
        socket: Weak<dyn Any + Send + Sync>,
    ) -> Result<(), Errno> {
        let r = self.resolve(lk, p, false)?;
        if !matches!(r.found, Found::Missing) {
            return Err(Errno::EADDRINUSE);
        }
        if r.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if let Some((h, rel)) = self.host_parent(&r)? {
            h.mknod_socket(&rel, 0o777 & !lk.umask)?;
            let st = h.lookup(&rel)?.ok_or(Errno::ENOENT)?.stat;
            let mut sockets = self.host_sockets.lock().unwrap_or_else(|e| e.into_inner());
            sockets.retain(|_, s| s.strong_count() > 0);
            sockets.insert((st.dev, st.ino), socket);
            return Ok(());
        }
        let m = Meta::new(libc::S_IFSOCK | (0o777 & !lk.umask), lk.uid, lk.gid);
        self.create(&r, Inode::new(m, Kind::Socket(socket)))
            .map(|_| ())
    }

    /// The socket a path names, for connect(2) and sendto(2) (Linux unix_find_bsd): the
    /// caller needs write permission on it; anything but a live socket of ours (a host
    /// socket included) is ECONNREFUSED.
    pub fn bound_socket(&self, lk: &Lookup, p: &[u8]) -> Result<Arc<dyn Any + Send + Sync>, Errno> {
        let r = self.resolve(lk, p, true)?;
        let node = match &r.found {
            Found::Node(n) => n,
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(_) => return Err(Errno::ECONNREFUSED),
        };
        if !permits(&node.stat(), lk.uid, lk.gid, 2) {
            return Err(Errno::EACCES);
        }
        match node {
            Node::Tmp(i) => match &i.lock().kind {
                Kind::Socket(s) => s.upgrade().ok_or(Errno::ECONNREFUSED),
                _ => Err(Errno::ECONNREFUSED),
            },
            // A socket bound in a writable bind by a guest of this sandbox (host sockets
            // made by anyone else lead nowhere).
            Node::Host(h) if h.stat.mode & libc::S_IFMT == libc::S_IFSOCK => self
                .host_sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(h.stat.dev, h.stat.ino))
                .and_then(Weak::upgrade)
                .ok_or(Errno::ECONNREFUSED),
            _ => Err(Errno::ECONNREFUSED),
        }
    }

    pub fn readlink(&self, lk: &Lookup, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let r = self.resolve(lk, p, false)?;
        r.node()?.readlink().ok_or(Errno::EINVAL)
    }

    /// chmod: copies a host entry up first.
    pub(super) fn chmod_op(
        &self,
        lk: &Lookup,
        p: &[u8],
        mode: u32,
        follow: bool,
    ) -> Result<(), Errno> {
        let r = self.resolve(lk, p, follow)?;
        let node = r.node()?;
        if matches!(node, Node::Dev(_) | Node::Proc(_)) {
            return Err(Errno::EPERM);
        }
        if node.is_symlink() {
            // Linux: fchmodat(AT_SYMLINK_NOFOLLOW) on a link is EOPNOTSUPP.
            return Err(Errno::EOPNOTSUPP);
        }
        let st = node.stat();
        if lk.uid != 0 && lk.uid != st.uid {
            return Err(Errno::EPERM);
        }
        if let Some((h, rel)) = self.host_target(&r)? {
            return h.chmod(&rel, mode);
        }
        let inode = self.copy_up_in_place(&r, true)?;
        chmod_inode(&inode, mode);
        Ok(())
    }

    /// chown/lchown/fchownat; `u32::MAX` leaves an id unchanged. Only root may chown.
    pub(super) fn chown_op(
        &self,
        lk: &Lookup,
        p: &[u8],
        uid: u32,
        gid: u32,
        follow: bool,
    ) -> Result<(), Errno> {
        let r = self.resolve(lk, p, follow)?;
        let node = r.node()?;
        if lk.uid != 0 {
            return Err(Errno::EPERM);
        }
        if matches!(node, Node::Dev(_) | Node::Proc(_)) {
            return Ok(());
        }
        if let Some((h, rel)) = self.host_target(&r)? {
            return h.chown(&rel, uid, gid);
        }
        let inode = self.copy_up_in_place(&r, true)?;
        chown_inode(&inode, uid, gid);
        Ok(())
    }

    /// utimensat on a path.
    pub(super) fn utimes_op(
        &self,
        lk: &Lookup,
        p: &[u8],
        times: [TimeSpec; 2],
        follow: bool,
    ) -> Result<(), Errno> {
        let r = self.resolve(lk, p, follow)?;
        let node = r.node()?;
        if matches!(node, Node::Dev(_) | Node::Proc(_)) {
            return Ok(());
        }
        if let Some((h, rel)) = self.host_target(&r)? {
            return h.utimes(&rel, times);
        }
        let inode = self.copy_up_in_place(&r, true)?;
        set_times(&inode, times);
        Ok(())
    }

    /// truncate(2) on a path.
    pub(super) fn truncate_op(&self, lk: &Lookup, p: &[u8], len: u64) -> Result<(), Errno> {
        let r = self.resolve(lk, p, true)?;
        let node = match &r.found {
            Found::Node(n) => n.clone(),
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(f) => return f.truncate(len),
        };
        match node.file_type() {
            libc::S_IFDIR => return Err(Errno::EISDIR),
            libc::S_IFREG => {}
            _ => return Err(Errno::EINVAL),
        }
        if !permits(&node.stat(), lk.uid, lk.gid, 2) {
            return Err(Errno::EACCES);
        }
        if matches!(node, Node::Proc(_)) {
            return Err(Errno::EACCES);
        }
        if let Some((h, rel)) = self.host_target(&r)? {
            return h.truncate(&rel, len);
        }
        let inode = self.copy_up_in_place(&r, len > 0)?;
        inode.truncate(len)
    }

    /// access/faccessat: F_OK (0) or R_OK|W_OK|X_OK bits.
    pub fn access(&self, lk: &Lookup, p: &[u8], mode: u32, follow: bool) -> Result<(), Errno> {
        if mode & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        let st = self.stat(lk, p, follow)?;
        if mode == 0 || permits(&st, lk.uid, lk.gid, mode) {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }
}

/// Set permission bits (keeping the type).
pub fn chmod_inode(inode: &Inode, mode: u32) {
    let mut d = inode.lock();
    d.meta.mode = (d.meta.mode & libc::S_IFMT) | (mode & 0o7777);
    d.meta.ctime = now();
}

/// Set owner and group (`u32::MAX` keeps one).
pub fn chown_inode(inode: &Inode, uid: u32, gid: u32) {
    let mut d = inode.lock();
    if uid != u32::MAX {
        d.meta.uid = uid;
    }
    if gid != u32::MAX {
        d.meta.gid = gid;
    }
    d.meta.ctime = now();
}

/// Apply utimensat times.
pub fn set_times(inode: &Inode, times: [TimeSpec; 2]) {
    let t = now();
    let mut d = inode.lock();
    let pick = |s: TimeSpec, old: (i64, i64)| match s {
        TimeSpec::Now => t,
        TimeSpec::Omit => old,
        TimeSpec::At(sec, nsec) => (sec, nsec),
    };
    d.meta.atime = pick(times[0], d.meta.atime);
    d.meta.mtime = pick(times[1], d.meta.mtime);
    d.meta.ctime = t;
}

fn touch_dir(d: &mut super::tmpfs::InodeData) {
    let t = now();
    d.meta.mtime = t;
    d.meta.ctime = t;
}

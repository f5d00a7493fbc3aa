//! open(2) semantics: creation, O_EXCL, O_TRUNC, O_DIRECTORY, O_NOFOLLOW, O_PATH,
//! O_TMPFILE, copy-up of rootfs files opened for writing, host files of writable binds
//! opened (and created) for writing, EROFS in read-only mounts, and the description each
//! kind of node gets.

use std::sync::Arc;

use super::dir::{DirFile, PathFile};
use super::file::FileDescription;
use super::hostfile::HostFile;
use super::mount::FsOf;
use super::node::Node;
use super::proc::ContentFile;
use super::tmpfs::{Inode, Kind, Meta, TmpFile};
use super::walk::Found;
use super::{permits, Lookup, Vfs};
use crate::abi::Errno;

const O_ACCMODE: u32 = libc::O_ACCMODE as u32;
const O_CREAT: u32 = libc::O_CREAT as u32;
const O_EXCL: u32 = libc::O_EXCL as u32;
const O_TRUNC: u32 = libc::O_TRUNC as u32;
const O_NOFOLLOW: u32 = libc::O_NOFOLLOW as u32;
const O_DIRECTORY: u32 = libc::O_DIRECTORY as u32;
const O_PATH: u32 = libc::O_PATH as u32;
const O_TMPFILE: u32 = libc::O_TMPFILE as u32;

/// The flags F_GETFL reports: creation flags and O_CLOEXEC are not kept, and 64-bit
/// opens always carry O_LARGEFILE.
fn kept_flags(flags: u32) -> u32 {
    let dropped =
        (libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC | libc::O_CLOEXEC) as u32;
    (flags & !dropped) | libc::O_LARGEFILE as u32
}

fn access_bits(flags: u32) -> u32 {
    match flags & O_ACCMODE {
        0 => 4,
        1 => 2,
        _ => 6,
    }
}

impl Vfs {
    /// openat(2) for `lk`, raising no inotify event (`notify.rs` does).
    pub(super) fn open_op(
        self: &Arc<Self>,
        lk: &Lookup,
        path: &[u8],
        flags: u32,
        mode: u32,
    ) -> Result<Arc<dyn FileDescription>, Errno> {
        if flags & O_TMPFILE == O_TMPFILE {
            return self.open_tmpfile(lk, path, flags, mode);
        }
        let creat = flags & O_CREAT != 0 && flags & O_PATH == 0;
        let excl = creat && flags & O_EXCL != 0;
        let follow = flags & O_NOFOLLOW == 0 && !excl;
        let r = self.resolve(lk, path, follow)?;
        let mut created = false;
        let node = match &r.found {
            Found::Magic(f) => {
                if excl {
                    return Err(Errno::EEXIST);
                }
                return Ok(f.clone());
            }
            Found::Missing => {
                if !creat {
                    return Err(Errno::ENOENT);
                }
                if r.trailing_slash {
                    return Err(Errno::EISDIR);
                }
                created = true;
                let mode = mode & 0o7777 & !lk.umask;
                if let Some((h, rel)) = self.host_parent(&r)? {
                    let fd = h.create_file(&rel, flags, mode, lk.uid, lk.gid)?;
                    let node = h.lookup(&rel)?.ok_or(Errno::ENOENT)?;
                    let kept = kept_flags(flags);
                    return Ok(Arc::new(HostFile::new(
                        self.clone(),
                        fd,
                        Arc::new(node),
                        r.path(),
                        kept,
                    )));
                }
                let m = Meta::new(libc::S_IFREG | mode, lk.uid, lk.gid);
                Node::Tmp(self.create(
                    &r,
                    Inode::new(
                        m,
                        Kind::File {
                            bytes: Vec::new(),
                            size: 0,
                        },
                    ),
                )?)
            }
            Found::Node(n) => {
                if excl {
                    return Err(Errno::EEXIST);
                }
                n.clone()
            }
        };
        let kept = kept_flags(flags);
        if flags & O_PATH != 0 {
            if flags & O_DIRECTORY != 0 && !node.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            let kept = kept & (O_PATH | O_DIRECTORY | O_NOFOLLOW | libc::O_LARGEFILE as u32);
            return Ok(Arc::new(PathFile::new(self.clone(), node, r.path(), kept)));
        }
        if node.is_symlink() {
            // O_NOFOLLOW on a link.
            return Err(Errno::ELOOP);
        }
        if flags & O_DIRECTORY != 0 && !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if node.is_dir() {
            if flags & O_ACCMODE != 0 || creat {
                return Err(Errno::EISDIR);
            }
            return Ok(Arc::new(DirFile::new(
                self.clone(),
                node,
                r.path(),
                r.parent_ino(),
                kept,
            )));
        }
        if !created && !permits(&node.stat(), lk.uid, lk.gid, access_bits(flags)) {
            return Err(Errno::EACCES);
        }
        if node.file_type() == libc::S_IFSOCK {
            // Linux: a socket inode cannot be opened (sock_no_open).
            return Err(Errno::ENXIO);
        }
        let writes = flags & O_ACCMODE != 0 || flags & O_TRUNC != 0;
        match node {
            Node::Host(h) => {
                if h.stat.mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(Errno::EACCES);
                }
                if writes {
                    if let Some((hr, rel)) = self.host_target(&r)? {
                        let fd = hr.open_rw(&rel, flags)?;
                        return Ok(Arc::new(HostFile::new(self.clone(), fd, h, r.path(), kept)));
                    }
                    let inode = self.copy_up_in_place(&r, flags & O_TRUNC == 0)?;
                    if flags & O_TRUNC != 0 {
                        inode.truncate(0)?;
                    }
                    return Ok(Arc::new(TmpFile::new(inode, r.path(), kept)));
                }
                let fd = h.fs.open_file(&h.rel)?;
                Ok(Arc::new(HostFile::new(self.clone(), fd, h, r.path(), kept)))
            }
            Node::Tmp(inode) => {
                let fifo = match &inode.lock().kind {
                    Kind::Fifo(buf) => Some(buf.clone()),
                    _ => None,
                };
                if let Some(buf) = fifo {
                    let f = super::fifo::FifoFile::open(inode, buf, r.path(), kept)?;
                    return Ok(Arc::new(f));
                }
                if flags & O_TRUNC != 0 && !created {
                    inode.truncate(0)?;
                }
                Ok(Arc::new(TmpFile::new(inode, r.path(), kept)))
            }
            Node::Dev(d) => d.open(kept),
            Node::Proc(p) => {
                if flags & O_ACCMODE != 0 {
                    return Err(Errno::EACCES);
                }
                Ok(Arc::new(ContentFile::new(
                    p.content(),
                    p.path(),
                    p.stat(),
                    kept,
                )))
            }
        }
    }

    /// O_TMPFILE: an unnamed regular file in the directory `path`.
    fn open_tmpfile(
        self: &Arc<Self>,
        lk: &Lookup,
        path: &[u8],
        flags: u32,
        mode: u32,
    ) -> Result<Arc<dyn FileDescription>, Errno> {
        if flags & O_ACCMODE == 0 {
            return Err(Errno::EINVAL);
        }
        let r = self.resolve(lk, path, true)?;
        let dir = r.node()?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let fs = self.fs_of(dir);
        fs.check_writable()?;
        let in_tmpfs = match (&fs, dir) {
            (FsOf::Overlay, _) => None,
            (FsOf::Tmp(_), Node::Tmp(d)) => d.fs().cloned(),
            // Host binds, /dev and /proc (Linux: a file system without tmpfile).
            _ => return Err(Errno::EOPNOTSUPP),
        };
        let m = Meta::new(libc::S_IFREG | (mode & 0o7777 & !lk.umask), lk.uid, lk.gid);
        let inode = Inode::new(
            m,
            Kind::File {
                bytes: Vec::new(),
                size: 0,
            },
        );
        inode.join_fs(in_tmpfs.as_ref());
        inode.lock().meta.nlink = 0;
        let mut shown = r.path();
        shown.extend_from_slice(format!("/#{} (deleted)", inode.ino).as_bytes());
        let kept = kept_flags(flags) & !(libc::O_DIRECTORY as u32);
        Ok(Arc::new(TmpFile::new(inode, shown, kept)))
    }

    /// The loader's open: a regular file with an execute bit, read-only.
    pub fn open_exec(
        self: &Arc<Self>,
        lk: &Lookup,
        path: &[u8],
    ) -> Result<Arc<dyn FileDescription>, Errno> {
        let r = self.resolve(lk, path, true)?;
        let node = match &r.found {
            Found::Node(n) => n.clone(),
            Found::Missing => return Err(Errno::ENOENT),
            Found::Magic(_) => return Err(Errno::EACCES),
        };
        let st = node.stat();
        if st.mode & libc::S_IFMT != libc::S_IFREG || !permits(&st, lk.uid, lk.gid, 1) {
            return Err(Errno::EACCES);
        }
        let flags = libc::O_RDONLY as u32 | libc::O_LARGEFILE as u32;
        match node {
            Node::Host(h) => {
                let fd = h.fs.open_file(&h.rel)?;
                Ok(Arc::new(HostFile::new(
                    self.clone(),
                    fd,
                    h,
                    r.path(),
                    flags,
                )))
            }
            Node::Tmp(inode) => Ok(Arc::new(TmpFile::new(inode, r.path(), flags))),
            _ => Err(Errno::EACCES),
        }
    }
}

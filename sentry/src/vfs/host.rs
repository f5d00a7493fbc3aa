//! Host directories in the sandbox: the container's rootfs (the read-only layer under the
//! overlay) and bind-mounted host directories and files. Every host path is resolved with
//! openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS):
//! the sentry resolves symbolic links itself, so the kernel never follows one for us,
//! and nothing can escape the root. The rootfs and read-only binds are only ever opened
//! O_RDONLY; writable binds take writes through `hostrw`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use super::file::{DirEntry, Stat};
use super::host_source::{HostSource, SourceKind};
use crate::abi::Errno;

/// What one host lookup found (without following a final symbolic link).
#[derive(Clone, Debug)]
pub struct HostNode {
    /// The host directory (or bind-mounted file) it was found under.
    pub fs: Arc<HostRoot>,
    /// Path relative to that root, without a leading slash ("" is the root).
    pub rel: Vec<u8>,
    pub stat: Stat,
    /// The link's text, for symbolic links.
    pub target: Option<Vec<u8>>,
}

/// What a root is.
enum RootKind {
    /// A directory, opened with O_PATH; paths are resolved below it.
    Dir(OwnedFd),
    /// A single bind-mounted regular file, open for reading (and for writing when the
    /// bind is writable); it has no paths below it.
    File(Arc<OwnedFd>),
}

/// A host directory (or file) opened once: the container's rootfs, or a bind source.
pub struct HostRoot {
    kind: RootKind,
    /// Whether guest writes go through to the host (writable bind mounts only).
    pub writable: bool,
}

impl std::fmt::Debug for HostRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, fd) = match &self.kind {
            RootKind::Dir(fd) => ("dir", fd.as_raw_fd()),
            RootKind::File(fd) => ("file", fd.as_raw_fd()),
        };
        write!(f, "HostRoot({what} fd {fd}, writable: {})", self.writable)
    }
}

/// Largest host file copied into the overlay (copy-up), in bytes.
pub const MAX_COPY_UP: u64 = 1 << 30;

impl HostRoot {
    /// A root over an opened host directory or file: the container's rootfs (not
    /// `writable`: writes go to the overlay) or a bind source (`writable` unless the bind
    /// is read-only; a file opened read-only makes a read-only bind whatever is asked).
    pub fn from_source(source: HostSource, writable: bool) -> Arc<HostRoot> {
        let (fd, kind, _) = source.into_parts();
        let (kind, writable) = match kind {
            SourceKind::Dir => (RootKind::Dir(fd), writable),
            SourceKind::File { writable: w } => (RootKind::File(Arc::new(fd)), writable && w),
        };
        Arc::new(HostRoot { kind, writable })
    }

    /// The directory at `path` as a read-only root (tests and tools).
    pub fn open(path: &Path) -> std::io::Result<Arc<HostRoot>> {
        Ok(HostRoot::from_source(HostSource::open_root(path)?, false))
    }

    /// Whether this root is a single file (a file bind mount).
    pub fn is_file(&self) -> bool {
        matches!(self.kind, RootKind::File(_))
    }

    /// The bind-mounted file, for a file root.
    pub(super) fn file_fd(&self) -> Option<&Arc<OwnedFd>> {
        match &self.kind {
            RootKind::File(fd) => Some(fd),
            RootKind::Dir(_) => None,
        }
    }

    /// openat2 under the root. `rel` must not contain NUL (guest paths cannot). A file
    /// root has no paths: ENOTDIR.
    pub(super) fn openat2(&self, rel: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
        self.openat2_mode(rel, flags, 0)
    }

    /// openat2 with a creation mode (for O_CREAT).
    pub(super) fn openat2_mode(&self, rel: &[u8], flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
        let root = match &self.kind {
            RootKind::Dir(fd) => fd,
            RootKind::File(_) => return Err(Errno::ENOTDIR),
        };
        let path = if rel.is_empty() {
            b".".to_vec()
        } else {
            rel.to_vec()
        };
        let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
        // SAFETY: open_how is plain data; zeroed is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
        how.mode = u64::from(mode & 0o7777);
        how.resolve =
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS;
        loop {
            // SAFETY: `c` and `how` outlive the call; the size passed is `how`'s size.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    root.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if r >= 0 {
                // SAFETY: openat2 returned a new descriptor that we own.
                return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                // A component became a symbolic link behind our back: the sentry's own
                // resolution is the authority, so report the path as absent.
                Some(libc::ELOOP) if flags & libc::O_PATH != 0 => return Err(Errno::ENOENT),
                _ => return Err(Errno::from_io(&e)),
            }
        }
    }

    /// Look up `rel` (already free of symbolic links except maybe the last component).
    /// `Ok(None)` if it does not exist.
    pub fn lookup(self: &Arc<Self>, rel: &[u8]) -> Result<Option<HostNode>, Errno> {
        if let RootKind::File(fd) = &self.kind {
            if !rel.is_empty() {
                return Ok(None);
            }
            return Ok(Some(HostNode {
                fs: self.clone(),
                rel: Vec::new(),
                stat: fstat(fd)?,
                target: None,
            }));
        }
        let fd = match self.openat2(rel, libc::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        };
        let stat = fstat(&fd)?;
        let target = if stat.mode & libc::S_IFMT == libc::S_IFLNK {
            Some(readlink(&fd)?)
        } else {
            None
        };
        Ok(Some(HostNode {
            fs: self.clone(),
            rel: rel.to_vec(),
            stat,
            target,
        }))
    }

    /// Open a regular file for reading (a file root shares its one descriptor; reads
    /// are positioned, so descriptions do not disturb each other).
    pub fn open_file(&self, rel: &[u8]) -> Result<Arc<OwnedFd>, Errno> {
        if let Some(fd) = self.file_fd() {
            return Ok(fd.clone());
        }
        let fd = self.openat2(rel, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK)?;
        regular(fd).map(Arc::new)
    }

    /// List a host directory (with "." and ".." as the host reports them).
    pub fn read_dir(&self, rel: &[u8]) -> Result<Vec<DirEntry>, Errno> {
        let fd = self.openat2(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(Errno::from_io(&e));
            }
            if n == 0 {
                return Ok(out);
            }
            parse_dirents(&buf[..n as usize], &mut out);
        }
    }

    /// Read a whole host file (for copy-up), refusing files over MAX_COPY_UP.
    pub fn read_all(&self, rel: &[u8]) -> Result<Vec<u8>, Errno> {
        let fd = self.open_file(rel)?;
        let size = fstat(&fd)?.size.max(0) as u64;
        if size > MAX_COPY_UP {
            return Err(Errno::EFBIG);
        }
        let mut data = vec![0u8; size as usize];
        let mut done = 0;
        while done < data.len() {
            let n = pread(&fd, &mut data[done..], done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        data.truncate(done);
        Ok(data)
    }
}

/// `fd` if it is a regular file: host devices, FIFOs and sockets are never opened for
/// the guest (EACCES).
pub(super) fn regular(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fstat(&fd)?.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EACCES);
    }
    Ok(fd)
}

/// Parse a buffer of `struct linux_dirent64` records.
fn parse_dirents(buf: &[u8], out: &mut Vec<DirEntry>) {
    let mut at = 0;
    while at + 19 <= buf.len() {
        let ino = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or_default());
        let reclen = u16::from_le_bytes([buf[at + 16], buf[at + 17]]) as usize;
        let kind = buf[at + 18];
        if reclen < 19 || at + reclen > buf.len() {
            return;
        }
        let name = &buf[at + 19..at + reclen];
        let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        out.push(DirEntry {
            ino,
            kind,
            name: name[..len].to_vec(),
        });
        at += reclen;
    }
}

/// fstat(2) on a host descriptor.
pub fn fstat(fd: &OwnedFd) -> Result<Stat, Errno> {
    // SAFETY: `st` is plain data filled in by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    Ok(stat_from_host(&st))
}

/// Convert a host `struct stat`.
pub fn stat_from_host(st: &libc::stat) -> Stat {
    Stat {
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size,
        blksize: st.st_blksize,
        blocks: st.st_blocks,
        atime: (st.st_atime, st.st_atime_nsec),
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
    }
}

/// readlinkat(fd, "") on an O_PATH descriptor of a symbolic link.
fn readlink(fd: &OwnedFd) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; super::path::PATH_MAX];
    // SAFETY: the empty string is NUL-terminated; the kernel writes at most buf.len() bytes.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// pwrite(2) on a host descriptor.
pub fn pwrite(fd: &OwnedFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    let off = i64::try_from(offset).map_err(|_| Errno::EFBIG)?;
    loop {
        // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
        let n = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), off) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Errno::from_io(&e));
        }
    }
}

/// pread(2) on a host descriptor.
pub fn pread(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Errno::from_io(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nanovisor-vfs-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn lookups_stay_inside_the_root() {
        let d = scratch("host");
        std::fs::write(d.join("f"), b"hello").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", d.join("l")).expect("symlink");
        let h = HostRoot::open(&d).expect("open root");
        let f = h.lookup(b"f").expect("lookup").expect("exists");
        assert_eq!(f.stat.size, 5);
        let l = h.lookup(b"l").expect("lookup").expect("exists");
        assert_eq!(l.target.as_deref(), Some(&b"/etc/passwd"[..]));
        assert!(h.lookup(b"missing").expect("lookup").is_none());
        // ".." cannot climb out of the root.
        assert!(h
            .lookup(b"../../../../etc/passwd")
            .expect("lookup")
            .is_none());
        assert_eq!(h.read_all(b"f").expect("read"), b"hello");
        assert!(h.read_all(b"l").is_err());
        let names: Vec<_> = h
            .read_dir(b"")
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(names.contains(&b"f".to_vec()) && names.contains(&b".".to_vec()));
        let _ = std::fs::remove_dir_all(&d);
    }
}

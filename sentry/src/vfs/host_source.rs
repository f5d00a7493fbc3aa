//! Host files and directories handed to a sandbox: a container's root file system and its
//! bind-mount sources, opened at the edge by whoever holds the host's file tree.
//!
//! The sandbox process gives up the host's tree (`pivot_root` into an empty directory)
//! before guest code runs, and a pod's later containers are mounted on the host after
//! that. So the sentry never opens these by path itself: `runsc boot` opens its first
//! container's before the pivot, and `runsc create` opens a later container's and passes
//! the descriptors over the control socket ([`HostSource::from_fd`] on arrival).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// What a [`HostSource`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory, opened `O_PATH`: paths below it are resolved with openat2.
    Dir,
    /// A regular file, open for reading, and for writing when `writable`.
    File { writable: bool },
}

/// An open host directory or regular file, with the path it was opened by (for
/// messages only; it is never opened again by that path).
pub struct HostSource {
    fd: OwnedFd,
    kind: SourceKind,
    shown: PathBuf,
}

impl std::fmt::Debug for HostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostSource({}, {:?}, fd {})",
            self.shown.display(),
            self.kind,
            self.fd.as_raw_fd()
        )
    }
}

impl HostSource {
    /// A container's root: a directory. Symbolic links in `path` are followed (it comes
    /// from the sandbox's configuration, never from the guest).
    pub fn open_root(path: &Path) -> std::io::Result<HostSource> {
        let fd = open_path(path, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok(HostSource {
            fd,
            kind: SourceKind::Dir,
            shown: path.to_path_buf(),
        })
    }

    /// A bind mount's source: a directory, or a regular file opened for reading and, unless
    /// `readonly`, for writing (a file the host will not let us write, on a read-only
    /// host file system say, is opened read-only and the bind becomes read-only).
    /// Devices, sockets and FIFOs of the host are refused (EOPNOTSUPP).
    pub fn open_bind(path: &Path, readonly: bool) -> std::io::Result<HostSource> {
        let probe = open_path(path, libc::O_PATH)?;
        match file_type(probe.as_fd())? {
            libc::S_IFDIR => HostSource::open_root(path),
            libc::S_IFREG => {
                let flags = libc::O_NOCTTY | libc::O_NONBLOCK;
                let rw = match readonly {
                    false => open_path(path, libc::O_RDWR | flags).ok(),
                    true => None,
                };
                let writable = rw.is_some();
                let fd = match rw {
                    Some(fd) => fd,
                    None => open_path(path, libc::O_RDONLY | flags)?,
                };
                Ok(HostSource {
                    fd,
                    kind: SourceKind::File { writable },
                    shown: path.to_path_buf(),
                })
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        }
    }

    /// A descriptor received from whoever opened it (`runsc create`, over the control
    /// socket): what it is comes from the descriptor itself, not from the sender's word.
    /// A directory must have been opened `O_PATH` or for reading; a file's writability
    /// is its access mode.
    pub fn from_fd(fd: OwnedFd, shown: PathBuf) -> std::io::Result<HostSource> {
        let kind = match file_type(fd.as_fd())? {
            libc::S_IFDIR => SourceKind::Dir,
            libc::S_IFREG => {
                // SAFETY: F_GETFL on a descriptor we own; the result is checked.
                let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
                if flags < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if flags & libc::O_PATH != 0 {
                    // An O_PATH file cannot be read: useless as a bind source.
                    return Err(std::io::Error::from_raw_os_error(libc::EBADF));
                }
                SourceKind::File {
                    writable: flags & libc::O_ACCMODE == libc::O_RDWR,
                }
            }
            _ => return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        };
        Ok(HostSource { fd, kind, shown })
    }

    /// What it is.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The host path it was opened by, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The descriptor, to pass on (over a unix socket, say).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The descriptor and what it is.
    pub(super) fn into_parts(self) -> (OwnedFd, SourceKind, PathBuf) {
        (self.fd, self.kind, self.shown)
    }
}

/// The `S_IFMT` bits of what `fd` refers to.
fn file_type(fd: BorrowedFd<'_>) -> std::io::Result<u32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` into `st`, which is large enough; it is read
    // only when the call succeeded.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// open(2) of a host path given by the sandbox's configuration (never by the guest).
pub(super) fn open_path(path: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nv-source-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn a_received_fd_says_what_it_is() {
        let d = scratch("kinds");
        std::fs::write(d.join("f"), b"x").expect("write");
        let dir = HostSource::open_root(&d).expect("dir");
        let again = HostSource::from_fd(dir.into_parts().0, d.clone()).expect("from fd");
        assert_eq!(again.kind(), SourceKind::Dir);

        let rw = HostSource::open_bind(&d.join("f"), false).expect("rw file");
        assert_eq!(rw.kind(), SourceKind::File { writable: true });
        let (fd, _, shown) = rw.into_parts();
        let got = HostSource::from_fd(fd, shown).expect("from fd");
        assert_eq!(got.kind(), SourceKind::File { writable: true });

        let ro = HostSource::open_bind(&d.join("f"), true).expect("ro file");
        let (fd, _, shown) = ro.into_parts();
        let got = HostSource::from_fd(fd, shown).expect("from fd");
        assert_eq!(got.kind(), SourceKind::File { writable: false });

        // An O_PATH file descriptor cannot serve reads.
        let path_only = open_path(&d.join("f"), libc::O_PATH).expect("O_PATH");
        assert!(HostSource::from_fd(path_only, d.join("f")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn devices_are_refused() {
        let err = HostSource::open_bind(Path::new("/dev/null"), true).expect_err("a device");
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
        let fd = open_path(Path::new("/dev/null"), libc::O_RDONLY).expect("open");
        let err = HostSource::from_fd(fd, "/dev/null".into()).expect_err("a device");
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
    }
}

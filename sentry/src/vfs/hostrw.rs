//! Writes through to a writable bind-mounted host directory (an OCI `rw` bind: a volume).
//!
//! Every call names its target relative to the bind's root. A new or removed name is
//! reached through its parent directory, opened with openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS), and changed with an *at call that never follows a final symbolic
//! link (mkdirat, unlinkat, renameat2, linkat without AT_SYMLINK_FOLLOW, symlinkat,
//! mknodat, openat2 with O_NOFOLLOW). Metadata changes go through an O_PATH descriptor of
//! the entry itself, so a link swapped in behind the sentry's back is changed, not
//! followed. Nothing here can reach outside the bind's source.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::host::{fstat, regular, HostRoot};
use super::ops::TimeSpec;
use crate::abi::Errno;

/// Split `rel` into its parent directory and final name ("" is the root's parent:
/// EBUSY, the root of a mount cannot be replaced or removed).
fn split(rel: &[u8]) -> Result<(&[u8], &[u8]), Errno> {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => Ok((&rel[..i], &rel[i + 1..])),
        None if rel.is_empty() => Err(Errno::EBUSY),
        None => Ok((&[], rel)),
    }
}

fn cstr(b: &[u8]) -> Result<CString, Errno> {
    CString::new(b).map_err(|_| Errno::EINVAL)
}

/// The result of a host call: 0 or the errno it set.
fn check(r: libc::c_long) -> Result<(), Errno> {
    if r < 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    Ok(())
}

/// fchownat(fd, "", AT_EMPTY_PATH): give a new entry to the guest's user. The sentry may
/// lack CAP_CHOWN (a rootless or confined sandbox); then the entry keeps the sentry's owner.
fn give_to(fd: &OwnedFd, uid: u32, gid: u32) {
    // SAFETY: the empty string is NUL-terminated; fd is open.
    let r = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        tracing::debug!(
            "chown of a new volume entry to {uid}:{gid}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The owner to give new entries: the guest's, unless it is root (the sentry's own).
fn owner(uid: u32, gid: u32) -> Option<(u32, u32)> {
    (uid != 0 || gid != 0).then_some((uid, gid))
}

const SYS_FCHMODAT2: libc::c_long = 452;

impl HostRoot {
    fn writable_or_erofs(&self) -> Result<(), Errno> {
        if self.writable {
            Ok(())
        } else {
            Err(Errno::EROFS)
        }
    }

    /// The parent directory of `rel` (O_PATH) and the final name.
    fn parent(&self, rel: &[u8]) -> Result<(OwnedFd, CString), Errno> {
        self.writable_or_erofs()?;
        let (dir, name) = split(rel)?;
        let fd = self.openat2(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((fd, cstr(name)?))
    }

    /// The entry `rel` itself, O_PATH, not following a final link.
    fn entry(&self, rel: &[u8]) -> Result<OwnedFd, Errno> {
        self.writable_or_erofs()?;
        self.openat2(rel, libc::O_PATH)
    }

    /// Open an existing regular file for writing (`flags`: the guest's access mode,
    /// O_TRUNC and O_APPEND). A file root hands out its one descriptor.
    pub fn open_rw(&self, rel: &[u8], flags: u32) -> Result<Arc<OwnedFd>, Errno> {
        self.writable_or_erofs()?;
        if let Some(fd) = self.file_fd() {
            if flags & libc::O_TRUNC as u32 != 0 {
                // SAFETY: ftruncate on an open descriptor.
                check(unsafe { libc::ftruncate(fd.as_raw_fd(), 0) }.into())?;
            }
            return Ok(fd.clone());
        }
        let keep = (libc::O_ACCMODE | libc::O_TRUNC | libc::O_APPEND) as u32;
        let flags = (flags & keep) as i32 | libc::O_NOCTTY | libc::O_NONBLOCK;
        Ok(Arc::new(regular(self.openat2(rel, flags)?)?))
    }

    /// Create the regular file `rel` (O_EXCL) and open it with the guest's access mode.
    pub fn create_file(
        &self,
        rel: &[u8],
        flags: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Arc<OwnedFd>, Errno> {
        self.writable_or_erofs()?;
        split(rel)?;
        let keep = (libc::O_ACCMODE | libc::O_APPEND) as u32;
        let flags = (flags & keep) as i32 | libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY;
        let fd = self.openat2_mode(rel, flags, mode)?;
        if let Some((u, g)) = owner(uid, gid) {
            give_to(&fd, u, g);
        }
        Ok(Arc::new(fd))
    }

    pub fn mkdir(&self, rel: &[u8], mode: u32, uid: u32, gid: u32) -> Result<(), Errno> {
        let (dir, name) = self.parent(rel)?;
        // SAFETY: `name` is NUL-terminated; `dir` is open.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode & 0o7777) }.into())?;
        if let Some((u, g)) = owner(uid, gid) {
            if let Ok(fd) = self.openat2(rel, libc::O_PATH) {
                give_to(&fd, u, g);
            }
        }
        Ok(())
    }

    pub fn symlink(&self, target: &[u8], rel: &[u8], uid: u32, gid: u32) -> Result<(), Errno> {
        let (dir, name) = self.parent(rel)?;
        let t = cstr(target)?;
        // SAFETY: both strings are NUL-terminated; `dir` is open.
        check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }.into())?;
        if let Some((u, g)) = owner(uid, gid) {
            if let Ok(fd) = self.openat2(rel, libc::O_PATH) {
                give_to(&fd, u, g);
            }
        }
        Ok(())
    }

    /// A socket inode (AF_UNIX bind) at `rel`.
    pub fn mknod_socket(&self, rel: &[u8], mode: u32) -> Result<(), Errno> {
        let (dir, name) = self.parent(rel)?;
        let mode = libc::S_IFSOCK | (mode & 0o7777);
        // SAFETY: `name` is NUL-terminated; `dir` is open.
        check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) }.into())
    }

    /// unlink(2), or rmdir(2) when `dir` is set.
    pub fn remove(&self, rel: &[u8], dir: bool) -> Result<(), Errno> {
        let (parent, name) = self.parent(rel)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: `name` is NUL-terminated; `parent` is open.
        check(unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) }.into())
    }

    /// renameat2(2) within this root.
    pub fn rename(&self, old: &[u8], new: &[u8], flags: u32) -> Result<(), Errno> {
        let (od, on) = self.parent(old)?;
        let (nd, nn) = self.parent(new)?;
        // SAFETY: both names are NUL-terminated; both directories are open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                od.as_raw_fd(),
                on.as_ptr(),
                nd.as_raw_fd(),
                nn.as_ptr(),
                flags,
            )
        };
        check(r)
    }

    /// linkat(2) within this root (never following a link).
    pub fn link(&self, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let (od, on) = self.parent(old)?;
        let (nd, nn) = self.parent(new)?;
        // SAFETY: both names are NUL-terminated; both directories are open.
        let r =
            unsafe { libc::linkat(od.as_raw_fd(), on.as_ptr(), nd.as_raw_fd(), nn.as_ptr(), 0) };
        check(r.into())
    }

    pub fn chmod(&self, rel: &[u8], mode: u32) -> Result<(), Errno> {
        if let Some(fd) = self.file_fd() {
            self.writable_or_erofs()?;
            // SAFETY: fchmod on an open descriptor.
            return check(unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o7777) }.into());
        }
        let fd = self.entry(rel)?;
        // SAFETY: the empty string is NUL-terminated; fd is open (fchmodat2, Linux 6.6).
        let r = unsafe {
            libc::syscall(
                SYS_FCHMODAT2,
                fd.as_raw_fd(),
                c"".as_ptr(),
                mode & 0o7777,
                libc::AT_EMPTY_PATH,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return check(r);
        }
        // Older kernels: reopen a regular file or directory for fchmod.
        let st = fstat(&fd)?;
        let flags = match st.mode & libc::S_IFMT {
            libc::S_IFREG => libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            libc::S_IFDIR => libc::O_RDONLY | libc::O_DIRECTORY,
            _ => return Err(Errno::EOPNOTSUPP),
        };
        let f = self.openat2(rel, flags)?;
        // SAFETY: fchmod on an open descriptor.
        check(unsafe { libc::fchmod(f.as_raw_fd(), mode & 0o7777) }.into())
    }

    /// chown; `u32::MAX` keeps an id (as Linux's -1).
    pub fn chown(&self, rel: &[u8], uid: u32, gid: u32) -> Result<(), Errno> {
        let fd = match self.file_fd() {
            Some(fd) => {
                self.writable_or_erofs()?;
                // SAFETY: fchown on an open descriptor.
                return check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }.into());
            }
            None => self.entry(rel)?,
        };
        // SAFETY: the empty string is NUL-terminated; fd is open.
        let r = unsafe {
            libc::fchownat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        check(r.into())
    }

    pub fn utimes(&self, rel: &[u8], times: [TimeSpec; 2]) -> Result<(), Errno> {
        let ts = times.map(|t| match t {
            TimeSpec::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            TimeSpec::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            TimeSpec::At(s, n) => libc::timespec {
                tv_sec: s,
                tv_nsec: n,
            },
        });
        let (fd, flags) = match self.file_fd() {
            Some(fd) => {
                self.writable_or_erofs()?;
                // SAFETY: futimens on an open descriptor with two timespecs.
                return check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }.into());
            }
            None => (
                self.entry(rel)?,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            ),
        };
        // SAFETY: the empty string is NUL-terminated; `ts` holds two timespecs.
        let r = unsafe { libc::utimensat(fd.as_raw_fd(), c"".as_ptr(), ts.as_ptr(), flags) };
        check(r.into())
    }

    /// truncate(2) of a regular file.
    pub fn truncate(&self, rel: &[u8], len: u64) -> Result<(), Errno> {
        let len = i64::try_from(len).map_err(|_| Errno::EFBIG)?;
        let fd = self.open_rw(rel, libc::O_WRONLY as u32)?;
        // SAFETY: ftruncate on an open descriptor.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!(split(b"a/b/c"), Ok((&b"a/b"[..], &b"c"[..])));
        assert_eq!(split(b"c"), Ok((&b""[..], &b"c"[..])));
        assert_eq!(split(b""), Err(Errno::EBUSY));
    }
}

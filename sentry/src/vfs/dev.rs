//! The synthesized /dev: null, zero, full, random, urandom, tty, and the stdio and fd
//! links. Nothing here touches the host's /dev.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::file::{DirEntry, FileDescription, Stat};
use super::node::Node;
use super::tmpfs::set_flags;
use crate::abi::Errno;
use crate::state::files::{FileState, MappedFileState};
use crate::state::{SaveContext, StateError};

/// st_dev of /dev (devtmpfs is 0:5 on a typical system).
pub const DEV_DEV: u64 = 5;

/// A /dev entry. Saved as it is by checkpoints (`crate::state::files`): a new variant
/// goes at the end, with a bump of the state's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DevNode {
    Dir,
    Null,
    Zero,
    Full,
    Random,
    Urandom,
    Tty,
    /// Directories that exist so programs find them (/dev/pts, /dev/shm).
    Pts,
    Shm,
    Stdin,
    Stdout,
    Stderr,
    Fd,
}

const ALL: [(&[u8], DevNode); 12] = [
    (b"null", DevNode::Null),
    (b"zero", DevNode::Zero),
    (b"full", DevNode::Full),
    (b"random", DevNode::Random),
    (b"urandom", DevNode::Urandom),
    (b"tty", DevNode::Tty),
    (b"pts", DevNode::Pts),
    (b"shm", DevNode::Shm),
    (b"stdin", DevNode::Stdin),
    (b"stdout", DevNode::Stdout),
    (b"stderr", DevNode::Stderr),
    (b"fd", DevNode::Fd),
];

const fn makedev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

impl DevNode {
    /// A child of /dev.
    pub fn lookup(name: &[u8]) -> Option<DevNode> {
        ALL.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }

    fn ino(self) -> u64 {
        match self {
            DevNode::Dir => 1,
            other => 2 + ALL.iter().position(|(_, d)| *d == other).unwrap_or(0) as u64,
        }
    }

    pub fn stat(self) -> Stat {
        let (mode, rdev) = match self {
            DevNode::Dir => (libc::S_IFDIR | 0o755, 0),
            DevNode::Pts => (libc::S_IFDIR | 0o755, 0),
            DevNode::Shm => (libc::S_IFDIR | 0o1777, 0),
            DevNode::Null => (libc::S_IFCHR | 0o666, makedev(1, 3)),
            DevNode::Zero => (libc::S_IFCHR | 0o666, makedev(1, 5)),
            DevNode::Full => (libc::S_IFCHR | 0o666, makedev(1, 7)),
            DevNode::Random => (libc::S_IFCHR | 0o666, makedev(1, 8)),
            DevNode::Urandom => (libc::S_IFCHR | 0o666, makedev(1, 9)),
            DevNode::Tty => (libc::S_IFCHR | 0o666, makedev(5, 0)),
            DevNode::Stdin | DevNode::Stdout | DevNode::Stderr | DevNode::Fd => {
                (libc::S_IFLNK | 0o777, 0)
            }
        };
        let size = self.link_target().map(|t| t.len() as i64).unwrap_or(0);
        // devtmpfs entries date from boot: here, from when the sentry first looked.
        static BORN: std::sync::OnceLock<(i64, i64)> = std::sync::OnceLock::new();
        let t = *BORN.get_or_init(super::tmpfs::now);
        Stat {
            dev: DEV_DEV,
            ino: self.ino(),
            nlink: if mode & libc::S_IFMT == libc::S_IFDIR {
                2
            } else {
                1
            },
            mode,
            rdev,
            size,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        }
    }

    pub fn link_target(self) -> Option<&'static [u8]> {
        match self {
            DevNode::Stdin => Some(b"/proc/self/fd/0"),
            DevNode::Stdout => Some(b"/proc/self/fd/1"),
            DevNode::Stderr => Some(b"/proc/self/fd/2"),
            DevNode::Fd => Some(b"/proc/self/fd"),
            _ => None,
        }
    }

    /// Entries of a /dev directory.
    pub fn list(self) -> Vec<DirEntry> {
        let mut out = vec![
            DirEntry {
                ino: self.ino(),
                kind: libc::DT_DIR,
                name: b".".to_vec(),
            },
            DirEntry {
                ino: 1,
                kind: libc::DT_DIR,
                name: b"..".to_vec(),
            },
        ];
        if self == DevNode::Dir {
            for (name, d) in ALL {
                let kind = match d.stat().mode & libc::S_IFMT {
                    libc::S_IFDIR => libc::DT_DIR,
                    libc::S_IFLNK => libc::DT_LNK,
                    _ => libc::DT_CHR,
                };
                out.push(DirEntry {
                    ino: d.ino(),
                    kind,
                    name: name.to_vec(),
                });
            }
        }
        out
    }

    /// Open a device file (directories and links are handled by the walker).
    pub fn open(self, flags: u32) -> Result<Arc<dyn FileDescription>, Errno> {
        match self {
            // No controlling terminal in the sandbox (Linux: ENXIO without one).
            DevNode::Tty => Err(Errno::ENXIO),
            _ => Ok(Arc::new(DevFile {
                node: self,
                flags: AtomicU32::new(flags),
            })),
        }
    }
}

/// An open character device.
pub struct DevFile {
    node: DevNode,
    flags: AtomicU32,
}

impl FileDescription for DevFile {
    fn pollable(&self) -> bool {
        // Linux: random_poll and tty_poll exist; null, zero and full have no poll.
        matches!(self.node, DevNode::Random | DevNode::Urandom | DevNode::Tty)
    }

    fn read(&self, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        match self.node {
            DevNode::Null => Ok(0),
            DevNode::Random | DevNode::Urandom => {
                // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
                let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    return Err(Errno::EIO);
                }
                Ok(n as usize)
            }
            _ => {
                buf.fill(0);
                Ok(buf.len())
            }
        }
    }

    fn write(&self, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        match self.node {
            DevNode::Full => Err(Errno::ENOSPC),
            _ => Ok(buf.len()),
        }
    }

    fn seek(&self, _offset: i64, _whence: u32) -> Result<u64, Errno> {
        // Linux: null/zero/full/random use noop_llseek-like behaviour and report 0.
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.node.stat())
    }

    fn path(&self) -> String {
        let name = ALL
            .iter()
            .find(|(_, d)| *d == self.node)
            .map(|(n, _)| *n)
            .unwrap_or(b"");
        format!("/dev/{}", String::from_utf8_lossy(name))
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        set_flags(&self.flags, flags);
    }

    fn mappable(&self) -> Option<Arc<dyn crate::mm::MappedFile>> {
        // mmap of /dev/zero is an anonymous mapping on Linux; the mm treats zero-filled
        // file pages the same way.
        (self.node == DevNode::Zero).then(|| Arc::new(ZeroMapped) as Arc<dyn crate::mm::MappedFile>)
    }

    fn vfs_node(&self) -> Option<Node> {
        Some(Node::Dev(self.node))
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        Ok(FileState::Dev {
            node: self.node,
            flags: self.status_flags(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct ZeroMapped;

impl crate::mm::MappedFile for ZeroMapped {
    fn read_at(&self, _offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        buf.fill(0);
        Ok(buf.len())
    }
    fn identity(&self) -> (u64, u64) {
        (DEV_DEV, DevNode::Zero.ino())
    }
    fn path(&self) -> String {
        "/dev/zero".to_string()
    }
    fn save(&self, _cx: &mut SaveContext) -> Result<MappedFileState, StateError> {
        Ok(MappedFileState::Zero)
    }
}

/// The mmap source of /dev/zero, put back from a checkpoint.
pub fn zero_mapping() -> Arc<dyn crate::mm::MappedFile> {
    Arc::new(ZeroMapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_behave() {
        let null = DevNode::Null.open(2).expect("null");
        let mut b = [1u8; 4];
        assert_eq!(null.read(&mut b, None), Ok(0));
        assert_eq!(null.write(b"xyz", None), Ok(3));
        let full = DevNode::Full.open(2).expect("full");
        assert_eq!(full.write(b"x", None), Err(Errno::ENOSPC));
        assert_eq!(full.read(&mut b, None), Ok(4));
        assert_eq!(b, [0; 4]);
        assert_eq!(DevNode::Tty.open(2).err(), Some(Errno::ENXIO));
        assert_eq!(
            DevNode::lookup(b"stdout").and_then(|d| d.link_target()),
            Some(&b"/proc/self/fd/1"[..])
        );
        assert_eq!(DevNode::Null.stat().rdev, 0x103);
    }
}

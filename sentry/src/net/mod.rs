//! Guest sockets: file descriptions that bridge the guest's socket syscalls to netstack
//! (AF_INET/AF_INET6), to in-sentry AF_UNIX endpoints, or to the sentry's own NETLINK_ROUTE
//! answers (AF_NETLINK), and the host link the sandbox's
//! interface uses.

pub mod inet;
pub mod link;
pub mod netlink;
pub mod sockaddr;
pub mod unix;

/// What fstat(2) shows of a socket: an inode of sockfs (an anonymous device, as on Linux).
pub fn socket_stat(ino: u64) -> crate::vfs::Stat {
    /// st_dev of sockfs.
    const SOCKFS_DEV: u64 = 8;
    crate::vfs::Stat {
        dev: SOCKFS_DEV,
        ino,
        nlink: 1,
        mode: libc::S_IFSOCK | 0o777,
        blksize: 4096,
        ..Default::default()
    }
}

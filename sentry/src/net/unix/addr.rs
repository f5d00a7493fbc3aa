//! `struct sockaddr_un` as the guest passes it and as Linux reports it back: a file-system
//! path, an abstract name (sun_path[0] == 0), or nothing at all (an unnamed socket).

use crate::abi::Errno;
use crate::net::sockaddr::{family, AF_UNIX};

/// offsetof(struct sockaddr_un, sun_path).
pub const SUN_PATH_OFFSET: usize = 2;
/// sizeof(struct sockaddr_un).
pub const SOCKADDR_UN_LEN: usize = 110;

/// A socket's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// A file-system path, without its terminating NUL.
    Path(Vec<u8>),
    /// An abstract name: the bytes after the leading NUL (NULs inside are part of it).
    Abstract(Vec<u8>),
}

impl UnixAddr {
    /// Parse an address given to bind, connect or sendto (Linux unix_validate_addr and
    /// unix_mkname_bsd: a path ends at its first NUL or at the end of the address).
    pub fn parse(raw: &[u8]) -> Result<UnixAddr, Errno> {
        if raw.len() <= SUN_PATH_OFFSET || raw.len() > SOCKADDR_UN_LEN {
            return Err(Errno::EINVAL);
        }
        if family(raw) != Some(AF_UNIX) {
            return Err(Errno::EINVAL);
        }
        let sun_path = &raw[SUN_PATH_OFFSET..];
        if sun_path[0] == 0 {
            return Ok(UnixAddr::Abstract(sun_path[1..].to_vec()));
        }
        let end = sun_path
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(sun_path.len());
        Ok(UnixAddr::Path(sun_path[..end].to_vec()))
    }

    /// The address as getsockname, getpeername and recvfrom copy it out: a path with its
    /// NUL (offsetof(sun_path) + strlen + 1 bytes), an abstract name with no terminator.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = (AF_UNIX as u16).to_le_bytes().to_vec();
        match self {
            UnixAddr::Path(p) => {
                b.extend_from_slice(p);
                b.push(0);
            }
            UnixAddr::Abstract(n) => {
                b.push(0);
                b.extend_from_slice(n);
            }
        }
        b
    }
}

/// Whether `raw` asks bind for an automatic name (only the family, Linux unix_autobind).
pub fn is_autobind(raw: &[u8]) -> bool {
    raw.len() == SUN_PATH_OFFSET && family(raw) == Some(AF_UNIX)
}

/// The name of an unnamed socket: the family alone.
pub fn unnamed() -> Vec<u8> {
    (AF_UNIX as u16).to_le_bytes().to_vec()
}

/// Encode `addr`, or the unnamed address.
pub fn encode_opt(addr: Option<&UnixAddr>) -> Vec<u8> {
    addr.map_or_else(unnamed, UnixAddr::encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(path: &[u8]) -> Vec<u8> {
        let mut b = vec![1, 0];
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn paths_end_at_the_first_nul_and_come_back_with_one() {
        let a = UnixAddr::parse(&raw(b"/tmp/s\0junk")).expect("parse");
        assert_eq!(a, UnixAddr::Path(b"/tmp/s".to_vec()));
        assert_eq!(a.encode(), raw(b"/tmp/s\0"));
        assert_eq!(a.encode().len(), SUN_PATH_OFFSET + 6 + 1);
        // A full 108-byte path without a terminator.
        let long = vec![b'a'; 108];
        assert_eq!(
            UnixAddr::parse(&raw(&long)),
            Ok(UnixAddr::Path(long.clone()))
        );
    }

    #[test]
    fn abstract_names_keep_every_byte() {
        let a = UnixAddr::parse(&raw(b"\0name\0x")).expect("parse");
        assert_eq!(a, UnixAddr::Abstract(b"name\0x".to_vec()));
        assert_eq!(a.encode(), raw(b"\0name\0x"));
        assert_eq!(
            UnixAddr::parse(&raw(b"\0")),
            Ok(UnixAddr::Abstract(Vec::new()))
        );
    }

    #[test]
    fn refuses_short_long_and_foreign_addresses() {
        assert_eq!(UnixAddr::parse(&[1, 0]), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::parse(&[1]), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::parse(&raw(&[b'a'; 109])), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::parse(&[2, 0, b'a']), Err(Errno::EINVAL));
        assert!(is_autobind(&[1, 0]));
        assert!(!is_autobind(&[2, 0]));
        assert_eq!(unnamed(), vec![1, 0]);
    }
}

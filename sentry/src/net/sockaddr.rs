//! `struct sockaddr_in` / `sockaddr_in6` as the guest passes them, to and from
//! `std::net::SocketAddr`. An AF_INET6 socket speaks IPv4 through v4-mapped addresses
//! (::ffff:a.b.c.d), which are unmapped on the way in and mapped on the way out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::abi::Errno;

pub const AF_UNSPEC: i32 = 0;
pub const AF_UNIX: i32 = 1;
pub const AF_INET: i32 = 2;
pub const AF_INET6: i32 = 10;

/// sizeof(struct sockaddr_in).
const SIN_LEN: usize = 16;
/// sizeof(struct sockaddr_in6); Linux accepts the 24-byte RFC 2133 form too.
const SIN6_LEN: usize = 28;
const SIN6_LEN_RFC2133: usize = 24;

/// The address family in the first two bytes, if there are two.
pub fn family(addr: &[u8]) -> Option<i32> {
    Some(u16::from_le_bytes([*addr.first()?, *addr.get(1)?]) as i32)
}

/// Parse an inet address given to a socket of `domain`.
pub fn parse(domain: i32, addr: &[u8]) -> Result<SocketAddr, Errno> {
    match (domain, family(addr).ok_or(Errno::EINVAL)?) {
        (AF_INET, AF_INET) | (AF_INET6, AF_INET) if addr.len() >= SIN_LEN => {
            if domain == AF_INET6 {
                // Linux: an AF_INET6 socket takes only sockaddr_in6.
                return Err(Errno::EAFNOSUPPORT);
            }
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let ip = Ipv4Addr::new(addr[4], addr[5], addr[6], addr[7]);
            Ok(SocketAddr::new(IpAddr::V4(ip), port))
        }
        (AF_INET6, AF_INET6) if addr.len() >= SIN6_LEN_RFC2133 => {
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let mut o = [0u8; 16];
            o.copy_from_slice(&addr[8..24]);
            let ip = Ipv6Addr::from(o);
            Ok(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::new(IpAddr::V6(ip), port),
            })
        }
        (AF_INET, _) | (AF_INET6, _) if addr.len() < SIN_LEN => Err(Errno::EINVAL),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// Encode `addr` for a socket of `domain` (IPv4 on an AF_INET6 socket comes out mapped).
pub fn encode(domain: i32, addr: SocketAddr) -> Vec<u8> {
    match (domain, addr) {
        (AF_INET, SocketAddr::V4(a)) => {
            let mut b = vec![0u8; SIN_LEN];
            b[..2].copy_from_slice(&(AF_INET as u16).to_le_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b
        }
        (AF_INET, SocketAddr::V6(a)) => {
            // Cannot happen for a v4 socket; show what can be shown.
            let v4 = a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
            encode(AF_INET, SocketAddr::new(IpAddr::V4(v4), a.port()))
        }
        (_, a) => {
            let v6 = match a {
                SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
                SocketAddr::V6(v6) => v6,
            };
            let mut b = vec![0u8; SIN6_LEN];
            b[..2].copy_from_slice(&(AF_INET6 as u16).to_le_bytes());
            b[2..4].copy_from_slice(&v6.port().to_be_bytes());
            b[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&v6.ip().octets());
            b[24..28].copy_from_slice(&v6.scope_id().to_le_bytes());
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_maps() {
        let a: SocketAddr = "10.1.2.3:8080".parse().expect("addr");
        assert_eq!(parse(AF_INET, &encode(AF_INET, a)), Ok(a));
        let mapped = encode(AF_INET6, a);
        assert_eq!(mapped.len(), 28);
        assert_eq!(
            parse(AF_INET6, &mapped),
            Ok(a),
            "v4-mapped comes back as v4"
        );
        let b: SocketAddr = "[2001:db8::1]:443".parse().expect("addr");
        assert_eq!(parse(AF_INET6, &encode(AF_INET6, b)), Ok(b));
    }

    #[test]
    fn refuses_short_and_foreign_addresses() {
        assert_eq!(parse(AF_INET, &[2, 0, 1]), Err(Errno::EINVAL));
        assert_eq!(parse(AF_INET, &[]), Err(Errno::EINVAL));
        let v6 = encode(AF_INET6, "[::1]:1".parse().expect("addr"));
        assert_eq!(parse(AF_INET, &v6), Err(Errno::EAFNOSUPPORT));
        let v4 = encode(AF_INET, "1.2.3.4:1".parse().expect("addr"));
        assert_eq!(parse(AF_INET6, &v4), Err(Errno::EAFNOSUPPORT));
    }
}

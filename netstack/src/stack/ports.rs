//! Which local (address, port) pairs are taken, per transport, and the ephemeral port
//! allocator. The rules follow Linux's for the cases programs meet: a port bound on the
//! wildcard address conflicts with every address; two sockets may share a port when both
//! set SO_REUSEADDR and neither listens (TCP) — for UDP, when both set it.

use std::collections::HashMap;
use std::net::IpAddr;

/// Linux's default `ip_local_port_range`.
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Clone, Debug)]
struct Binding {
    owner: u64,
    addr: IpAddr,
    reuse: bool,
    listening: bool,
}

/// The taken ports of one stack.
#[derive(Default)]
pub struct PortTable {
    bound: HashMap<(Transport, u16), Vec<Binding>>,
    next_ephemeral: u16,
}

fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a.is_unspecified() || b.is_unspecified() || a == b
}

impl PortTable {
    pub fn new(seed: u16) -> PortTable {
        let span = EPHEMERAL.end() - EPHEMERAL.start() + 1;
        PortTable {
            bound: HashMap::new(),
            next_ephemeral: EPHEMERAL.start() + seed % span,
        }
    }

    fn free(&self, t: Transport, addr: IpAddr, port: u16, reuse: bool) -> bool {
        self.bound.get(&(t, port)).is_none_or(|v| {
            v.iter().all(|b| {
                !overlaps(b.addr, addr)
                    || (reuse && b.reuse && (t == Transport::Udp || !b.listening))
            })
        })
    }

    /// Take `port` (0 = pick an ephemeral one) on `addr` for `owner`; the port taken.
    pub fn bind(
        &mut self,
        t: Transport,
        owner: u64,
        addr: IpAddr,
        port: u16,
        reuse: bool,
    ) -> Option<u16> {
        let port = if port == 0 {
            self.ephemeral(t, addr)?
        } else if self.free(t, addr, port, reuse) {
            port
        } else {
            return None;
        };
        self.bound.entry((t, port)).or_default().push(Binding {
            owner,
            addr,
            reuse,
            listening: false,
        });
        Some(port)
    }

    fn ephemeral(&mut self, t: Transport, addr: IpAddr) -> Option<u16> {
        let span = EPHEMERAL.end() - EPHEMERAL.start() + 1;
        for _ in 0..span {
            let p = self.next_ephemeral;
            self.next_ephemeral = if p >= *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if self.free(t, addr, p, false) {
                return Some(p);
            }
        }
        None
    }

    /// Mark `owner`'s binding of `port` as listening; fails (EADDRINUSE) when another
    /// socket that shares the port through SO_REUSEADDR already listens on it.
    pub fn listen(&mut self, t: Transport, owner: u64, port: u16) -> bool {
        let Some(v) = self.bound.get_mut(&(t, port)) else {
            return false;
        };
        let Some(mine) = v.iter().position(|b| b.owner == owner) else {
            return false;
        };
        let addr = v[mine].addr;
        if v.iter()
            .any(|b| b.owner != owner && b.listening && overlaps(b.addr, addr))
        {
            return false;
        }
        v[mine].listening = true;
        true
    }

    /// Whether some socket listens on TCP `port` (any address).
    pub fn tcp_listening(&self, port: u16) -> bool {
        self.bound
            .get(&(Transport::Tcp, port))
            .is_some_and(|v| v.iter().any(|b| b.listening))
    }

    /// Give back every port `owner` holds.
    pub fn release(&mut self, t: Transport, owner: u64, port: u16) {
        if let Some(v) = self.bound.get_mut(&(t, port)) {
            v.retain(|b| b.owner != owner);
            if v.is_empty() {
                self.bound.remove(&(t, port));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn wildcard_conflicts_with_specific_and_reuseaddr_shares_until_listen() {
        let mut p = PortTable::new(0);
        assert_eq!(p.bind(Transport::Tcp, 1, ANY, 80, false), Some(80));
        assert_eq!(p.bind(Transport::Tcp, 2, LO, 80, false), None);
        assert_eq!(p.bind(Transport::Udp, 3, LO, 80, false), Some(80));
        p.release(Transport::Tcp, 1, 80);
        assert_eq!(p.bind(Transport::Tcp, 4, LO, 80, true), Some(80));
        assert_eq!(p.bind(Transport::Tcp, 5, LO, 80, true), Some(80));
        assert!(p.listen(Transport::Tcp, 4, 80));
        assert!(
            !p.listen(Transport::Tcp, 5, 80),
            "second listener on a shared port"
        );
        assert_eq!(p.bind(Transport::Tcp, 6, LO, 80, true), None);
    }

    #[test]
    fn ephemeral_ports_are_distinct_and_in_range() {
        let mut p = PortTable::new(60998);
        let a = p.bind(Transport::Tcp, 1, ANY, 0, false).expect("port");
        let b = p.bind(Transport::Tcp, 2, ANY, 0, false).expect("port");
        let c = p.bind(Transport::Tcp, 3, ANY, 0, false).expect("port");
        assert!(EPHEMERAL.contains(&a) && EPHEMERAL.contains(&b) && EPHEMERAL.contains(&c));
        assert!(a != b && b != c && a != c);
    }
}

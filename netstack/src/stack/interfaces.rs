//! The sandbox's interfaces as its guest may list them (rtnetlink, `getifaddrs`): the
//! loopback and, with a network, the link. Fixed when the stack is built: the guest
//! cannot add, remove or change one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The loopback's interface index, as on Linux.
pub const LOOPBACK_INDEX: u32 = 1;
/// The link's interface index.
pub const LINK_INDEX: u32 = 2;
/// The loopback's MTU, as on Linux.
const LOOPBACK_MTU: u32 = 65536;

/// One interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub index: u32,
    pub name: String,
    /// The hardware address; None for the loopback.
    pub mac: Option<[u8; 6]>,
    /// Largest IP packet.
    pub mtu: u32,
    /// Addresses with their prefix length.
    pub addrs: Vec<IpNet>,
}

impl InterfaceInfo {
    pub fn is_loopback(&self) -> bool {
        self.mac.is_none()
    }
}

/// The interfaces of a stack whose link (if any) is `link`: (name, MAC, MTU, addresses).
pub(crate) fn interfaces(link: Option<(&str, [u8; 6], usize, &[IpNet])>) -> Vec<InterfaceInfo> {
    let loopback_addrs = [
        IpNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8),
        IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    ];
    let mut out = vec![InterfaceInfo {
        index: LOOPBACK_INDEX,
        name: "lo".into(),
        mac: None,
        mtu: LOOPBACK_MTU,
        addrs: loopback_addrs.into_iter().flatten().collect(),
    }];
    if let Some((name, mac, mtu, addrs)) = link {
        out.push(InterfaceInfo {
            index: LINK_INDEX,
            name: name.into(),
            mac: Some(mac),
            mtu: u32::try_from(mtu).unwrap_or(u32::MAX),
            addrs: addrs.to_vec(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_first_then_the_link() {
        let none = interfaces(None);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].name, "lo");
        assert!(none[0].is_loopback());
        assert_eq!(none[0].addrs.len(), 2);
        let net: IpNet = "10.1.2.3/24".parse().expect("net");
        let both = interfaces(Some(("eth0", [2, 0, 0, 0, 0, 1], 1500, &[net])));
        assert_eq!(both[1].index, LINK_INDEX);
        assert_eq!(both[1].name, "eth0");
        assert_eq!(both[1].mtu, 1500);
        assert_eq!(both[1].addrs, vec![net]);
    }
}

use super::route::*;
use ipnet::IpNet;
use netstack::stack::InterfaceInfo;

fn ifaces() -> Vec<InterfaceInfo> {
    vec![
        InterfaceInfo {
            index: 1,
            name: "lo".into(),
            mac: None,
            mtu: 65536,
            addrs: vec![
                "127.0.0.1/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
        },
        InterfaceInfo {
            index: 2,
            name: "eth0".into(),
            mac: Some([2, 0x42, 0, 0, 0, 7]),
            mtu: 1500,
            addrs: vec!["10.88.0.5/16".parse::<IpNet>().expect("net")],
        },
    ]
}

/// A request: header (flags, seq) and payload.
fn request(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut m = (len as u32).to_le_bytes().to_vec();
    m.extend_from_slice(&kind.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(payload);
    m.resize((len + 3) & !3, 0);
    m
}

fn kind(m: &[u8]) -> u16 {
    u16::from_le_bytes([m[4], m[5]])
}

fn error_of(m: &[u8]) -> i32 {
    assert_eq!(kind(m), 2, "not NLMSG_ERROR");
    i32::from_le_bytes([m[16], m[17], m[18], m[19]])
}

/// The attributes of a message whose fixed header is `fixed` bytes.
fn attrs(m: &[u8], fixed: usize) -> Vec<(u16, Vec<u8>)> {
    let len = u32::from_le_bytes([m[0], m[1], m[2], m[3]]) as usize;
    let mut rest = &m[16 + fixed..len];
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let l = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        out.push((u16::from_le_bytes([rest[2], rest[3]]), rest[4..l].to_vec()));
        rest = &rest[((l + 3) & !3).min(rest.len())..];
    }
    out
}

#[test]
fn a_link_dump_lists_each_interface_then_done() {
    let out = handle(&request(18, 0x301, 7, &[0; 16]), &ifaces(), 42, false);
    assert_eq!(out.len(), 3);
    for m in &out {
        // Every answer carries the request's sequence number and the socket's port id.
        assert_eq!(&m[8..12], &7u32.to_le_bytes());
        assert_eq!(&m[12..16], &42u32.to_le_bytes());
        assert_eq!(m.len() % 4, 0);
    }
    assert_eq!(kind(&out[0]), 16);
    assert_eq!(
        i32::from_le_bytes([out[1][20], out[1][21], out[1][22], out[1][23]]),
        2
    );
    let eth = attrs(&out[1], 16);
    assert!(eth.contains(&(3, b"eth0\0".to_vec())), "{eth:?}");
    assert!(eth.contains(&(1, vec![2, 0x42, 0, 0, 0, 7])), "{eth:?}");
    assert!(
        eth.contains(&(4, 1500u32.to_le_bytes().to_vec())),
        "{eth:?}"
    );
    // lo: up, loopback, running.
    let flags = u32::from_le_bytes([out[0][24], out[0][25], out[0][26], out[0][27]]);
    assert_eq!(flags, 0x10049);
    assert_eq!(kind(&out[2]), 3);
}

#[test]
fn an_address_dump_gives_ipv4_then_ipv6_and_filters_by_family() {
    let out = handle(&request(22, 0x301, 1, &[0; 8]), &ifaces(), 1, false);
    let kinds: Vec<u16> = out.iter().map(|m| kind(m)).collect();
    assert_eq!(kinds, vec![20, 20, 20, 3]);
    // 127.0.0.1/8 on lo, host scope; 10.88.0.5/16 on eth0 with its broadcast; then ::1.
    assert_eq!(&out[0][16..24], &[2, 8, 0x80, 254, 1, 0, 0, 0]);
    assert_eq!(&out[1][16..24], &[2, 16, 0x80, 0, 2, 0, 0, 0]);
    let a = attrs(&out[1], 8);
    assert!(a.contains(&(2, vec![10, 88, 0, 5])), "{a:?}");
    assert!(a.contains(&(4, vec![10, 88, 255, 255])), "{a:?}");
    assert!(a.contains(&(3, b"eth0\0".to_vec())), "{a:?}");
    assert_eq!(out[2][16], 10);
    let v6 = handle(
        &request(22, 0x301, 1, &[10, 0, 0, 0, 0, 0, 0, 0]),
        &ifaces(),
        1,
        false,
    );
    assert_eq!(v6.len(), 2);
    assert_eq!(v6[0][16], 10);
}

#[test]
fn a_link_is_found_by_index_or_name() {
    let mut by_index = vec![0u8; 16];
    by_index[4..8].copy_from_slice(&2i32.to_le_bytes());
    let out = handle(&request(18, 0x1, 3, &by_index), &ifaces(), 1, false);
    assert_eq!(out.len(), 1);
    assert_eq!(kind(&out[0]), 16);
    let mut by_name = vec![0u8; 16];
    by_name.extend_from_slice(&[7, 0, 3, 0, b'l', b'o', 0, 0]);
    let out = handle(&request(18, 0x5, 3, &by_name), &ifaces(), 1, false);
    // The link, then the ACK asked for.
    assert_eq!(out.len(), 2);
    assert_eq!(&attrs(&out[0], 16)[0], &(3, b"lo\0".to_vec()));
    assert_eq!(error_of(&out[1]), 0);
    by_index[4..8].copy_from_slice(&9i32.to_le_bytes());
    let out = handle(&request(18, 0x1, 3, &by_index), &ifaces(), 1, false);
    assert_eq!(error_of(&out[0]), -19); // ENODEV
}

#[test]
fn changes_are_refused_and_unknown_kinds_unsupported() {
    // RTM_NEWADDR, RTM_DELLINK, RTM_NEWROUTE: EPERM even without NLM_F_ACK.
    for k in [20u16, 17, 24] {
        let out = handle(&request(k, 0x1, 5, &[0; 8]), &ifaces(), 1, false);
        assert_eq!(error_of(&out[0]), -1, "type {k}");
        // The whole request is echoed after the error.
        assert_eq!(out[0].len(), 16 + 4 + 24);
    }
    let out = handle(&request(26, 0x301, 5, &[0; 12]), &ifaces(), 1, true);
    assert_eq!(error_of(&out[0]), -95); // route dump: EOPNOTSUPP
    assert_eq!(out[0].len(), 16 + 4 + 16); // NETLINK_CAP_ACK: header only
    let out = handle(&request(500, 0x1, 5, &[]), &ifaces(), 1, false);
    assert_eq!(error_of(&out[0]), -95);
}

#[test]
fn malformed_or_non_requests_get_no_answer() {
    let ifs = ifaces();
    assert!(handle(&[], &ifs, 1, false).is_empty());
    assert!(handle(&[1, 2, 3], &ifs, 1, false).is_empty());
    // Not a request (no NLM_F_REQUEST); a control message (NLMSG_NOOP).
    assert!(handle(&request(18, 0x300, 1, &[0; 16]), &ifs, 1, false).is_empty());
    assert!(handle(&request(1, 0x1, 1, &[]), &ifs, 1, false).is_empty());
    // A length shorter than a header, or past the data: nothing from there on.
    let mut bad = request(18, 0x301, 1, &[0; 16]);
    bad[0..4].copy_from_slice(&8u32.to_le_bytes());
    assert!(handle(&bad, &ifs, 1, false).is_empty());
    bad[0..4].copy_from_slice(&4000u32.to_le_bytes());
    assert!(handle(&bad, &ifs, 1, false).is_empty());
    // A GETLINK by index with no ifinfomsg: EINVAL.
    let out = handle(&request(18, 0x1, 1, &[]), &ifs, 1, false);
    assert_eq!(error_of(&out[0]), -22);
    // Two requests in one send are both answered.
    let mut two = request(18, 0x301, 1, &[0; 16]);
    two.extend_from_slice(&request(22, 0x301, 2, &[0; 8]));
    assert_eq!(handle(&two, &ifs, 1, false).len(), 3 + 4);
}

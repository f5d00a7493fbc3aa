//! [`PacketLink`]: the sandbox interface's host device, an AF_PACKET socket bound to the pod's
//! veth inside the sandbox's network namespace (gVisor's `fdbased` endpoint does the same).
//!
//! The socket belongs to the network namespace of the thread that opened it and keeps working
//! from any thread afterwards. Frames the socket (or the netns's kernel) sends out of the device
//! are never read back. A frame whose TCP/UDP checksum the sending kernel left to "hardware"
//! (`TP_STATUS_CSUMNOTREADY`: the peer has TX checksum offload on) is completed here, because
//! the user-space stack verifies checksums. Frames longer than the caller's buffer (GSO/GRO
//! super-frames from a peer with TSO/GSO on) are dropped with a warning: the host side of the
//! veth should have `tx`, `tso` and `gso` offloads off (runsc does this for the veths it makes).

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use netstack::link::Link;

/// Ethernet header length (no VLAN tag: packet sockets deliver VLAN tags in auxdata).
const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// A network device reached through an AF_PACKET socket bound to it.
#[derive(Debug)]
pub struct PacketLink {
    fd: OwnedFd,
    ifname: String,
    mac: [u8; 6],
    mtu: usize,
    /// Frames dropped because they did not fit the caller's buffer.
    oversized: u64,
}

impl PacketLink {
    /// Open the Ethernet device `ifname` of the calling thread's network namespace.
    pub fn open(ifname: &str) -> io::Result<PacketLink> {
        let ctx = |what: &str, err: io::Error| {
            io::Error::new(
                err.kind(),
                format!("AF_PACKET link {ifname}: {what}: {err}"),
            )
        };
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AF_PACKET link {ifname:?}: interface name must be 1 to 15 bytes"),
            ));
        }
        let c_name = CString::new(ifname).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AF_PACKET link {ifname:?}: interface name contains NUL"),
            )
        })?;

        // Protocol 0: the socket receives nothing until `bind` names both the protocol and the
        // device, so no frame from another device slips in between.
        // SAFETY: plain syscall with constant arguments; no pointers.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(ctx("socket(AF_PACKET)", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut ifr = ifreq_for(&c_name);
        ioctl_ifreq(&fd, libc::SIOCGIFINDEX, &mut ifr)
            .map_err(|e| ctx("SIOCGIFINDEX (no such interface?)", e))?;
        // SAFETY: SIOCGIFINDEX succeeded, so the kernel filled the `ifru_ifindex` member.
        let ifindex = unsafe { ifr.ifr_ifru.ifru_ifindex };

        let mut ifr = ifreq_for(&c_name);
        ioctl_ifreq(&fd, libc::SIOCGIFHWADDR, &mut ifr).map_err(|e| ctx("SIOCGIFHWADDR", e))?;
        // SAFETY: SIOCGIFHWADDR succeeded, so the kernel filled the `ifru_hwaddr` member.
        let hwaddr = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        if hwaddr.sa_family != libc::ARPHRD_ETHER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "AF_PACKET link {ifname}: not an Ethernet device (ARPHRD {})",
                    hwaddr.sa_family
                ),
            ));
        }
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(hwaddr.sa_data.iter()) {
            *dst = *src as u8;
        }

        let mut ifr = ifreq_for(&c_name);
        ioctl_ifreq(&fd, libc::SIOCGIFMTU, &mut ifr).map_err(|e| ctx("SIOCGIFMTU", e))?;
        // SAFETY: SIOCGIFMTU succeeded, so the kernel filled the `ifru_mtu` member.
        let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
        let mtu = usize::try_from(mtu).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("AF_PACKET link {ifname}: negative MTU {mtu}"),
            )
        })?;

        // Never read back what goes out of the device (our own frames, and anything the
        // netns's kernel sends). Linux >= 4.20; `recv` also checks the packet type.
        setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
            .map_err(|e| ctx("setsockopt(PACKET_IGNORE_OUTGOING)", e))?;
        // Report per-frame checksum status, so partial checksums can be completed.
        setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .map_err(|e| ctx("setsockopt(PACKET_AUXDATA)", e))?;

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(ctx("bind", io::Error::last_os_error()));
        }

        Ok(PacketLink {
            fd,
            ifname: ifname.to_owned(),
            mac,
            mtu,
            oversized: 0,
        })
    }

    /// The device's name, as passed to [`PacketLink::open`].
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// How many received frames were dropped because they did not fit the caller's buffer.
    pub fn oversized_frames(&self) -> u64 {
        self.oversized
    }
}

impl Link for PacketLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let frame = recv_frame(&self.fd, buf)?;
            if frame.pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if frame.len > buf.len() {
                self.oversized += 1;
                tracing::warn!(
                    ifname = %self.ifname,
                    len = frame.len,
                    buf = buf.len(),
                    dropped = self.oversized,
                    "dropping a frame larger than the receive buffer (GSO/TSO on the peer?)"
                );
                continue;
            }
            let frame_buf = &mut buf[..frame.len];
            if frame.status & libc::TP_STATUS_CSUMNOTREADY != 0 {
                complete_checksum(frame_buf);
            }
            return Ok(frame.len);
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is a valid readable buffer of `frame.len()` bytes; the socket is
            // bound, so no destination address is needed.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast::<libc::c_void>(),
                    frame.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("AF_PACKET link {}: send: {err}", self.ifname),
                )),
                _ => Err(io::Error::new(
                    err.kind(),
                    format!(
                        "AF_PACKET link {}: send of {} bytes: {err}",
                        self.ifname,
                        frame.len()
                    ),
                )),
            };
        }
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}

/// What `recvmsg` said about one frame.
struct RecvdFrame {
    /// The frame's full length (may exceed the buffer: `MSG_TRUNC`).
    len: usize,
    pkttype: u8,
    /// `tpacket_auxdata::tp_status`, 0 when absent.
    status: u32,
}

/// Receive one frame into `buf`; `WouldBlock` when none is waiting.
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<RecvdFrame> {
    // CMSG_SPACE(sizeof(tpacket_auxdata)) is 40 on 64-bit; u64s keep cmsghdr alignment.
    let mut control = [0u64; 8];
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid value (no name, no iov).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast::<libc::c_void>();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
    msg.msg_controllen = mem::size_of_val(&control);

    let n = loop {
        // SAFETY: every pointer in `msg` points at a live local (`addr`, `iov` -> `buf`,
        // `control`) with the length recorded beside it.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    };

    let mut status = 0;
    // SAFETY: `msg` was filled by a successful recvmsg; its control pointer and length describe
    // `control`, which is still alive.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return null or a header inside `control`.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_PACKET && hdr.cmsg_type == libc::PACKET_AUXDATA {
            // SAFETY: a PACKET_AUXDATA message carries one tpacket_auxdata; the data may be
            // unaligned for it, so read it unaligned.
            let aux = unsafe {
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned()
            };
            status = aux.tp_status;
        }
        // SAFETY: `cmsg` is a valid header inside `msg`'s control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }

    Ok(RecvdFrame {
        len: n,
        pkttype: addr.sll_pkttype,
        status,
    })
}

/// Finish a TCP or UDP checksum the sender left "partial" (CHECKSUM_PARTIAL): its checksum field
/// holds the pseudo-header sum, and the one's-complement sum over the L4 header and payload
/// still has to be folded in. Frames that are not IPv4/IPv6 carrying TCP/UDP are left alone.
fn complete_checksum(frame: &mut [u8]) {
    let Some((l4_start, l4_end, proto)) = l4_span(frame) else {
        return;
    };
    let csum_field = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => return,
    };
    if l4_end < l4_start + csum_field + 2 {
        return;
    }
    let sum = ones_complement_sum(&frame[l4_start..l4_end]);
    let csum = match !sum {
        // 0 means "no checksum" to UDP; 0xffff is the same value in one's complement.
        0 => 0xffff,
        c => c,
    };
    frame[l4_start + csum_field..l4_start + csum_field + 2].copy_from_slice(&csum.to_be_bytes());
}

/// Where the transport header and payload of an IPv4/IPv6 frame lie, and its protocol.
fn l4_span(frame: &[u8]) -> Option<(usize, usize, u8)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETH_HLEN..)?;
    match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            // A fragment (MF set or nonzero offset) never carries a partial checksum.
            if ihl < 20 || total < ihl || total > ip.len() || frag & 0x3fff != 0 {
                return None;
            }
            Some((ETH_HLEN + ihl, ETH_HLEN + total, *ip.get(9)?))
        }
        ETHERTYPE_IPV6 => {
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            if 40 + payload > ip.len() {
                return None;
            }
            // Only a transport header right after the fixed header; extension headers are rare
            // on this path and left as they are.
            Some((ETH_HLEN + 40, ETH_HLEN + 40 + payload, *ip.get(6)?))
        }
        _ => None,
    }
}

/// The folded 16-bit one's-complement sum of `data` (odd length padded with a zero byte).
fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An `ifreq` naming `name` (shorter than IFNAMSIZ, checked by the caller).
fn ifreq_for(name: &CString) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name and a union of integers/pointers); all-zero is
    // a valid value.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    ifr
}

/// An interface ioctl (`SIOCGIF*`) on `fd`, answered in `fd`'s network namespace.
fn ioctl_ifreq(fd: &OwnedFd, request: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: the SIOCGIF* requests used here read the name from and write one union member
    // into the `ifreq` we pass, which is valid and exclusively borrowed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, ifr as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP frame (10.0.0.1:1234 -> 10.0.0.2:80, 5 payload bytes) with a
    /// correct checksum.
    fn tcp_frame() -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + 20 + 20 + 5];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = ETH_HLEN;
        f[ip] = 0x45;
        f[ip + 2..ip + 4].copy_from_slice(&45u16.to_be_bytes());
        f[ip + 8] = 64;
        f[ip + 9] = IPPROTO_TCP;
        f[ip + 12..ip + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[ip + 16..ip + 20].copy_from_slice(&[10, 0, 0, 2]);
        let tcp = ip + 20;
        f[tcp..tcp + 2].copy_from_slice(&1234u16.to_be_bytes());
        f[tcp + 2..tcp + 4].copy_from_slice(&80u16.to_be_bytes());
        f[tcp + 12] = 5 << 4;
        f[tcp + 13] = 0x18;
        f[tcp + 20..].copy_from_slice(b"hello");
        let sum = ones_complement_sum(&[pseudo_header(&f).as_slice(), &f[tcp..]].concat());
        f[tcp + 16..tcp + 18].copy_from_slice(&(!sum).to_be_bytes());
        f
    }

    fn pseudo_header(f: &[u8]) -> Vec<u8> {
        let ip = ETH_HLEN;
        let mut p = Vec::new();
        p.extend_from_slice(&f[ip + 12..ip + 20]);
        p.extend_from_slice(&[0, f[ip + 9]]);
        p.extend_from_slice(&((f.len() - ip - 20) as u16).to_be_bytes());
        p
    }

    #[test]
    fn completes_a_partial_tcp_checksum() {
        let good = tcp_frame();
        let mut partial = good.clone();
        // What Linux leaves for the "hardware": the folded, uncomplemented pseudo-header sum.
        let pseudo = ones_complement_sum(&pseudo_header(&good));
        let tcp = ETH_HLEN + 20;
        partial[tcp + 16..tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
        assert_ne!(partial, good);
        complete_checksum(&mut partial);
        assert_eq!(partial, good);
    }

    #[test]
    fn leaves_other_frames_alone() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let before = arp.clone();
        complete_checksum(&mut arp);
        assert_eq!(arp, before);
        let mut short = vec![0u8; 10];
        complete_checksum(&mut short);
        let mut truncated = tcp_frame();
        truncated.truncate(40);
        let before = truncated.clone();
        complete_checksum(&mut truncated);
        assert_eq!(truncated, before);
    }

    /// Runs `ip ARGS` from the calling thread (so in its network namespace).
    fn ip(args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Deletes the host end of the test veth (and with it the peer), even when the test fails.
    struct VethGuard(String);

    impl Drop for VethGuard {
        fn drop(&mut self) {
            let _ = ip(&["link", "del", &self.0]);
        }
    }

    /// Sends an ARP request for the host end's address out of a `PacketLink` on the veth peer
    /// inside a fresh network namespace, and reads the host kernel's reply back through it.
    /// Needs root and iproute2; skipped otherwise.
    #[test]
    fn arp_round_trip_through_a_veth_in_a_netns() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || std::process::Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipping: needs root and iproute2");
            return;
        }
        let pid = std::process::id();
        let host_if = format!("nvt{:x}", pid % 0x1000_0000);
        let octet = (pid % 200 + 20) as u8;
        let host_ip = [10, 202, octet, 1];
        let guest_ip = [10, 202, octet, 2];

        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let inside = std::thread::spawn(move || -> Result<(Vec<u8>, [u8; 6]), String> {
            // SAFETY: plain syscall; it moves only this thread into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", io::Error::last_os_error()));
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            tid_tx.send(tid).map_err(|e| e.to_string())?;
            go_rx.recv().map_err(|_| "setup failed".to_owned())?;
            ip(&["link", "set", "eth0", "up"])?;
            let mut link = PacketLink::open("eth0").map_err(|e| e.to_string())?;
            assert_eq!(link.mtu(), 1500);
            let mac = link.mac();

            let mut req = Vec::with_capacity(42);
            req.extend_from_slice(&[0xff; 6]);
            req.extend_from_slice(&mac);
            req.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
            req.extend_from_slice(&mac);
            req.extend_from_slice(&guest_ip);
            req.extend_from_slice(&[0; 6]);
            req.extend_from_slice(&host_ip);
            link.send(&req).map_err(|e| e.to_string())?;

            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut resend = std::time::Instant::now() + std::time::Duration::from_millis(500);
            let mut buf = [0u8; 2048];
            while std::time::Instant::now() < deadline {
                // A request sent while the pair was still coming up is lost (no carrier
                // yet): ask again, as a kernel's ARP would.
                if std::time::Instant::now() >= resend {
                    link.send(&req).map_err(|e| e.to_string())?;
                    resend += std::time::Duration::from_millis(500);
                }
                let mut pfd = libc::pollfd {
                    fd: link.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: `pfd` is one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
                let n = match link.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.to_string()),
                };
                let frame = &buf[..n];
                assert_ne!(frame, &req[..], "read back our own outgoing frame");
                let is_reply = n >= 42
                    && frame[12..14] == [0x08, 0x06]
                    && frame[20..22] == [0, 2]
                    && frame[28..32] == host_ip
                    && frame[32..38] == mac;
                if is_reply {
                    return Ok((frame.to_vec(), mac));
                }
            }
            Err("no ARP reply within 10 s".to_owned())
        });

        let tid = tid_rx.recv().expect("inside thread started");
        let guard = VethGuard(host_if.clone());
        let netns = format!("/proc/{pid}/task/{tid}/ns/net");
        let host_cidr = format!("10.202.{octet}.1/24");
        let setup = ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])
        .and_then(|()| ip(&["addr", "add", &host_cidr, "dev", &host_if]))
        .and_then(|()| ip(&["link", "set", &host_if, "up"]));
        // Read the host end's MAC now: the pair goes with the namespace, which goes when
        // the inside thread ends.
        let host_mac = std::fs::read_to_string(format!("/sys/class/net/{host_if}/address"));
        if setup.is_ok() {
            go_tx.send(()).expect("inside thread waiting");
        }
        drop(go_tx);
        let result = inside.join().expect("inside thread panicked");
        setup.expect("veth setup");
        let (reply, guest_mac) = result.expect("ARP round trip");
        let host_mac = host_mac.expect("host veth MAC");
        let sender_mac = reply[22..28]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(sender_mac, host_mac.trim());
        assert_eq!(reply[0..6], guest_mac);
        drop(guard);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(PacketLink::open("").is_err());
        assert!(PacketLink::open("a-name-that-is-too-long").is_err());
        assert!(PacketLink::open("a\0b").is_err());
    }
}

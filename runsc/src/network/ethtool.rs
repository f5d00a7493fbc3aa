//! Turning a network device's offloads off, as `ethtool -K DEV tx off sg off tso off gso off`
//! does (the legacy `SIOCETHTOOL` set-one-feature commands; no `ethtool` binary needed).
//!
//! Why: a sandbox reads its veth through an AF_PACKET socket and checks every checksum in user
//! space. With offloads on, the host's kernel hands the veth TCP segments of up to 64 KiB
//! (TSO/GSO) whose checksums are left for "hardware" to fill in; neither is a frame a NIC would
//! ever deliver. Off, the host segments and checksums in software, as for a real wire.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// From <linux/ethtool.h>; libc does not carry them.
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turn off TX checksum, scatter-gather, TSO and GSO on `ifname` in the calling thread's
/// network namespace, so what it transmits arrives as ordinary, fully checksummed frames.
pub fn disable_tx_offloads(ifname: &str) -> io::Result<()> {
    let sock = control_socket()?;
    // TX checksum first: TSO depends on it.
    for (cmd, name) in [
        (ETHTOOL_STXCSUM, "tx-checksumming"),
        (ETHTOOL_SSG, "scatter-gather"),
        (ETHTOOL_STSO, "tcp-segmentation-offload"),
        (ETHTOOL_SGSO, "generic-segmentation-offload"),
    ] {
        set_feature(&sock, ifname, cmd, false)
            .map_err(|e| io::Error::new(e.kind(), format!("{ifname}: turning {name} off: {e}")))?;
    }
    Ok(())
}

/// Turn off GRO on `ifname` in the calling thread's network namespace, so received segments are
/// not merged into super-frames before a packet socket sees them.
pub fn disable_gro(ifname: &str) -> io::Result<()> {
    let sock = control_socket()?;
    set_feature(&sock, ifname, ETHTOOL_SGRO, false).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{ifname}: turning generic-receive-offload off: {e}"),
        )
    })
}

/// A socket to send device ioctls through; they act in its network namespace.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; no pointers.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn set_feature(sock: &OwnedFd, ifname: &str, cmd: u32, on: bool) -> io::Result<()> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name must be 1 to 15 bytes without NUL",
        ));
    }
    let mut value = EthtoolValue {
        cmd,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain old data (a name and a union of integers/pointers); all-zero is a
    // valid value.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast::<libc::c_char>();
    // SAFETY: SIOCETHTOOL reads the name from `ifr` and, for these set commands, reads one
    // `ethtool_value` through `ifru_data`, which points at `value`, alive for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! The host network device a sandbox's interface sends and receives frames through.
//!
//! Opening one needs raw host fds (an AF_PACKET socket bound to the pod's veth, or a TAP),
//! which takes `unsafe`; this crate forbids it, so the caller implements [`Link`].

use std::io;
use std::os::fd::BorrowedFd;

/// A host network device carrying Ethernet frames.
pub trait Link: Send {
    /// An fd that polls readable when a frame is waiting.
    fn as_fd(&self) -> BorrowedFd<'_>;
    /// Read one frame into `buf`; `ErrorKind::WouldBlock` when none is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Send one frame.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// The device's hardware address.
    fn mac(&self) -> [u8; 6];
    /// Largest IP packet the device carries (Ethernet payload size).
    fn mtu(&self) -> usize;
}

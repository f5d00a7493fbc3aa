//! smoltcp devices: the in-sandbox loopback, and the sandbox's link to the pod network
//! with the ACL filter on both directions.

use std::collections::VecDeque;
use std::io;
use std::time::Instant as StdInstant;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::filter::LinkFilter;
use crate::link::Link;

/// Loopback MTU (Linux's `lo` uses 65536; smoltcp keeps whole packets in memory).
pub const LOOPBACK_MTU: usize = 65535;

/// 127.0.0.1 and ::1 inside the sandbox: packets sent are received on the next poll.
#[derive(Default)]
pub struct Loopback {
    queue: VecDeque<Vec<u8>>,
}

impl Loopback {
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }
}

pub struct OwnedRx(Vec<u8>);

impl phy::RxToken for OwnedRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct LoopbackTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for LoopbackTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl phy::Device for Loopback {
    type RxToken<'a> = OwnedRx;
    type TxToken<'a> = LoopbackTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(OwnedRx, LoopbackTx<'_>)> {
        let p = self.queue.pop_front()?;
        Some((OwnedRx(p), LoopbackTx(&mut self.queue)))
    }

    fn transmit(&mut self, _: Instant) -> Option<LoopbackTx<'_>> {
        Some(LoopbackTx(&mut self.queue))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = LOOPBACK_MTU;
        // Nothing corrupts memory-to-memory packets (Linux's lo skips checksums too).
        caps.checksum = no_checksums();
        caps
    }
}

fn no_checksums() -> ChecksumCapabilities {
    let mut c = ChecksumCapabilities::ignored();
    c.ipv4 = Checksum::Tx;
    c.tcp = Checksum::Tx;
    c.udp = Checksum::Tx;
    c.icmpv4 = Checksum::Tx;
    c.icmpv6 = Checksum::Tx;
    c
}

/// The sandbox's link, filtered.
pub struct FilteredLink {
    link: Box<dyn Link>,
    pub filter: LinkFilter,
    buf: Vec<u8>,
    mtu: usize,
}

impl FilteredLink {
    pub fn new(link: Box<dyn Link>, filter: LinkFilter) -> FilteredLink {
        let mtu = link.mtu();
        FilteredLink {
            link,
            filter,
            // Room for a frame bigger than the MTU (a GRO'd burst) so it is seen whole
            // and dropped as too long, not cut and misread.
            buf: vec![0u8; 65536 + 14],
            mtu,
        }
    }
}

pub struct LinkTx<'a> {
    link: &'a mut dyn Link,
    filter: &'a mut LinkFilter,
}

impl phy::TxToken for LinkTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if self.filter.allow_egress(&frame, StdInstant::now()) {
            match self.link.send(&frame) {
                Ok(()) => {}
                // A full device queue drops the frame, as a NIC does; TCP retransmits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => tracing::warn!("netstack: sending a frame: {e}"),
            }
        } else {
            tracing::debug!("netstack: link filter dropped an outgoing frame");
        }
        r
    }
}

impl phy::Device for FilteredLink {
    type RxToken<'a> = OwnedRx;
    type TxToken<'a> = LinkTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(OwnedRx, LinkTx<'_>)> {
        loop {
            match self.link.recv(&mut self.buf) {
                Ok(n) => {
                    let frame = &self.buf[..n];
                    if n > self.mtu + 14 {
                        tracing::debug!("netstack: dropped a {n}-byte frame (MTU {})", self.mtu);
                        continue;
                    }
                    if !self.filter.allow_ingress(frame, StdInstant::now()) {
                        tracing::debug!(
                            "netstack: link filter dropped an incoming frame: {:?}",
                            super::filter::classify_ethernet(frame)
                        );
                        continue;
                    }
                    let rx = OwnedRx(frame.to_vec());
                    return Some((
                        rx,
                        LinkTx {
                            link: &mut *self.link,
                            filter: &mut self.filter,
                        },
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("netstack: receiving a frame: {e}");
                    return None;
                }
            }
        }
    }

    fn transmit(&mut self, _: Instant) -> Option<LinkTx<'_>> {
        Some(LinkTx {
            link: &mut *self.link,
            filter: &mut self.filter,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        // The host side of a veth hands over frames whose checksums the kernel left to
        // "hardware" (checksum offload); verifying them would drop good traffic.
        caps.checksum = no_checksums();
        caps
    }
}

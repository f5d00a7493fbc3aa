//! The DNS proxy the guest's resolver talks to (`nameserver 127.0.0.53`): every question
//! passes the name policy, denied names get NXDOMAIN, allowed ones are forwarded to the
//! configured upstream resolvers and the addresses they resolve to are taught to the policy.
//!
//! The proxy is pure logic over byte buffers: the stack hands it datagrams and a clock and
//! sends the [`Outgoing`] datagrams it returns; it owns no socket and no thread.
//!
//! - [`proxy`]: the state machine (pending queries, id rewriting, retry and timeout).
//! - [`message`]: the little of the wire format the proxy reads and writes, bounded and
//!   panic-free on any input.
//!
//! What the proxy trusts: nothing from the guest; from the network, only a datagram that
//! comes from an upstream the query was sent to and carries the random id and the question
//! of a pending query (the classic anti-spoofing checks of a stub resolver).

pub mod message;
pub mod proxy;
pub mod resolv_conf;

pub use proxy::{DnsProxy, Outgoing};

use std::net::IpAddr;

/// What the proxy asks of the access-control engine (implemented by `crate::acl::Acl`).
pub trait NamePolicy: Send + Sync {
    /// Whether the guest may resolve `name` (already lower-cased, no trailing dot); audits.
    ///
    /// `qtype` is the mnemonic of the question type (`"A"`, `"AAAA"`, `"ANY"`, or
    /// `"TYPE<n>"` for a type without one, as in RFC 3597).
    fn allow_name(&self, name: &str, qtype: &str) -> bool;

    /// `name` resolved to `addr` for `ttl` seconds.
    fn learned(&self, name: &str, addr: IpAddr, ttl: u32);
}

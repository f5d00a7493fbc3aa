//! The sandbox's network: a smoltcp TCP/IP stack per sandbox, the DNS proxy the guest's
//! resolver talks to, and the access-control (ACL) engine every connection, datagram,
//! bind and DNS question passes first.
//!
//! - [`acl`]: the policy format, its validation, the matcher and the audit log.
//! - [`dns`]: the DNS proxy (answers denied names with NXDOMAIN, forwards the others and
//!   teaches the ACL the addresses allowed names resolve to).
//! - [`link`]: what the stack needs from a host network device (a TAP or AF_PACKET fd);
//!   the host side lives with the caller, which may use `unsafe` for it.
//! - [`stack`]: the interfaces (loopback + the sandbox's link), the poll thread and the
//!   guest-facing TCP and UDP sockets.
#![forbid(unsafe_code)]

pub mod acl;
pub mod dns;
pub mod link;
pub mod stack;

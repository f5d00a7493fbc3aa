//! Guest sockets: file descriptions that bridge the guest's socket syscalls to netstack
//! (AF_INET/AF_INET6) or to in-sentry AF_UNIX endpoints, and the host link the sandbox's
//! interface uses.

pub mod inet;
pub mod link;
pub mod sockaddr;
pub mod unix;

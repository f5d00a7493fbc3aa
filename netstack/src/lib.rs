//! The sandbox's TCP/IP stack (smoltcp), DNS proxy and ACL engine.
//!
//! Nothing is implemented yet: guests get no sockets until issue 4 lands. This crate
//! exists so the workspace has its final shape; it exports nothing that pretends to work.
#![forbid(unsafe_code)]

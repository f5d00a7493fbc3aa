//! The operations every socket file supports, whatever its family. The syscall layer
//! (socket, bind, connect, sendmsg, …) reaches them through
//! `FileDescription::as_socket`; defaults are what Linux answers when a protocol lacks
//! the operation (`sock_no_*` in net/core/sock.c).
//!
//! Addresses cross this interface as raw `struct sockaddr` bytes: each family parses and
//! encodes its own.

use std::sync::Arc;

use super::file::FileDescription;
use crate::abi::Errno;

/// What a receive returned.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes placed in the caller's buffer.
    pub len: usize,
    /// The message's real length (larger than `len` when a datagram was truncated).
    pub full_len: usize,
    /// The sender's address, for datagram sockets.
    pub from: Option<Vec<u8>>,
}

/// recv/send flags the socket layers look at.
pub const MSG_PEEK: i32 = 0x2;
pub const MSG_TRUNC: i32 = 0x20;
pub const MSG_DONTWAIT: i32 = 0x40;
pub const MSG_WAITALL: i32 = 0x100;
pub const MSG_NOSIGNAL: i32 = 0x4000;

/// Socket operations.
pub trait SocketOps: Send + Sync {
    /// AF_*, SOCK_*, and the protocol number, for SO_DOMAIN / SO_TYPE / SO_PROTOCOL.
    fn domain(&self) -> i32;
    fn sock_type(&self) -> i32;
    fn protocol(&self) -> i32;

    fn bind(&self, _addr: &[u8]) -> Result<(), Errno> {
        // sock_no_bind.
        Err(Errno::EOPNOTSUPP)
    }

    fn listen(&self, _backlog: i32) -> Result<(), Errno> {
        // sock_no_listen.
        Err(Errno::EOPNOTSUPP)
    }

    /// Take a pending connection (EAGAIN when none); the new socket's file with the
    /// given status flags, and the peer's address.
    fn accept(&self, _flags: u32) -> Result<(Arc<dyn FileDescription>, Vec<u8>), Errno> {
        // sock_no_accept.
        Err(Errno::EOPNOTSUPP)
    }

    /// Start a connection: Ok when established, EINPROGRESS when it goes on in the
    /// background (the caller may wait for POLLOUT and ask `connect_status`).
    fn connect(&self, _addr: &[u8]) -> Result<(), Errno> {
        // sock_no_connect.
        Err(Errno::EOPNOTSUPP)
    }

    /// After waiting for a background connect: Ok, EINPROGRESS, or why it failed.
    fn connect_status(&self) -> Result<(), Errno> {
        Ok(())
    }

    /// Send `data` (to `to` for datagram sockets). EAGAIN when it would block.
    fn send(&self, data: &[u8], to: Option<&[u8]>, flags: i32) -> Result<usize, Errno>;

    /// Receive into `buf`. EAGAIN when it would block.
    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<Received, Errno>;

    fn shutdown(&self, how: i32) -> Result<(), Errno>;

    fn sockname(&self) -> Result<Vec<u8>, Errno>;

    fn peername(&self) -> Result<Vec<u8>, Errno>;

    /// The option's value as Linux would copy it out.
    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno>;

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno>;
}

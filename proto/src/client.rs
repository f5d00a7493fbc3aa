//! The client end of the control socket: one blocking connection, request then response.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::control::{Request, Response};
use crate::framing::{recv, send, ProtoError};

/// A connection to a sandbox's control socket.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ProtoError> {
        Ok(Client::from_stream(UnixStream::connect(path)?))
    }

    /// Wraps an already connected socket.
    pub fn from_stream(sock: UnixStream) -> Client {
        Client { sock }
    }

    /// Bounds how long `call` and `next` wait for a response (`None`: forever, the
    /// default). A timeout is an `Io` error (WouldBlock or TimedOut).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), ProtoError> {
        self.sock.set_read_timeout(timeout)?;
        Ok(())
    }

    /// Sends one request with `fds` attached and returns its (first) response.
    pub fn call(&mut self, req: Request, fds: &[BorrowedFd<'_>]) -> Result<Response, ProtoError> {
        send(&self.sock, &req, fds)?;
        self.next()
    }

    /// The next response of a stream (`AclAuditRequest`); `Closed` when the server
    /// has closed the connection.
    // Not an Iterator: a stream ends with an error (`Closed`), not `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Response, ProtoError> {
        self.next_with_fds().map(|(resp, _)| resp)
    }

    /// The next response with any fds the server attached (none today; dropping them
    /// closes them).
    pub fn next_with_fds(&mut self) -> Result<(Response, Vec<OwnedFd>), ProtoError> {
        recv(&self.sock)
    }
}

//! The sandbox control API spoken between `runsc` commands and the sandbox process over
//! the sandbox's control socket: protobuf messages (`proto/control.proto`), framed by
//! [`framing`] with file descriptors attached, a blocking [`Client`] and a
//! thread-per-connection server ([`serve`]).
//!
//! Not gRPC: requests carry fds (an exec's stdio, a terminal) as SCM_RIGHTS, which HTTP/2
//! cannot. A connection carries requests one after another; each gets one [`Response`],
//! except `AclAuditRequest`, answered by a stream of `AuditLine`s (see the `.proto`).
//!
//! Unsafe code is denied; the one exception, [`framing`] taking ownership of received
//! fds, carries its own `#[allow]` and `// SAFETY:` comment.
#![deny(unsafe_code)]

pub mod client;
pub mod framing;
pub mod server;

/// The generated messages of `nanovisor.control.v1`.
pub mod control {
    include!(concat!(env!("OUT_DIR"), "/nanovisor.control.v1.rs"));
}

pub use client::Client;
pub use control::*;
pub use framing::{recv, send, ProtoError, MAX_FDS, MAX_MESSAGE};
pub use server::{serve, Responder};

/// An error response.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response {
        kind: Some(response::Kind::Error(Error {
            code: code.into(),
            message: message.into(),
        })),
    }
}

/// The response to a request that returns nothing.
pub fn empty() -> Response {
    Response {
        kind: Some(response::Kind::Empty(Empty {})),
    }
}

impl Request {
    /// The request's kind as a short name for logs and errors (`"exec"`, `"acl_add"`).
    pub fn name(&self) -> &'static str {
        use request::Kind;
        match &self.kind {
            None => "empty",
            Some(Kind::Start(_)) => "start",
            Some(Kind::Exec(_)) => "exec",
            Some(Kind::Signal(_)) => "signal",
            Some(Kind::Wait(_)) => "wait",
            Some(Kind::State(_)) => "state",
            Some(Kind::Stats(_)) => "stats",
            Some(Kind::Pause(_)) => "pause",
            Some(Kind::Resume(_)) => "resume",
            Some(Kind::Processes(_)) => "processes",
            Some(Kind::AclGet(_)) => "acl_get",
            Some(Kind::AclAdd(_)) => "acl_add",
            Some(Kind::AclRemove(_)) => "acl_remove",
            Some(Kind::AclReplace(_)) => "acl_replace",
            Some(Kind::AclAudit(_)) => "acl_audit",
            Some(Kind::CreateContainer(_)) => "create_container",
            Some(Kind::RemoveContainer(_)) => "remove_container",
            Some(Kind::Checkpoint(_)) => "checkpoint",
            Some(Kind::Listening(_)) => "listening",
        }
    }
}

impl From<request::Kind> for Request {
    fn from(kind: request::Kind) -> Self {
        Request { kind: Some(kind) }
    }
}

impl From<response::Kind> for Response {
    fn from(kind: response::Kind) -> Self {
        Response { kind: Some(kind) }
    }
}

//! The server end of the control socket: an accept thread and one thread per connection,
//! each reading requests in turn and passing them to the caller's handler.
//!
//! A connection ends when the client closes it, when a frame breaks the framing rules
//! (too long, too many fds, cut short: answered with `Error{INVALID_ARGUMENT}` if the
//! client still listens, then closed), or when the handler panics (answered with
//! `Error{INTERNAL}`, then closed). An undecodable request or one with no `kind` is
//! answered with `Error{INVALID_ARGUMENT}` and the connection goes on.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

use crate::control::{ErrorCode, Request, Response};
use crate::framing::{recv, send, ProtoError};

/// Sends a request's responses: one, or a stream for `AclAuditRequest`.
#[derive(Debug)]
pub struct Responder {
    sock: UnixStream,
    sent: usize,
}

impl Responder {
    /// Sends one response. Fails (EPIPE) once the client has gone: a streaming handler
    /// stops there.
    pub fn send(&mut self, resp: Response) -> Result<(), ProtoError> {
        send(&self.sock, &resp, &[])?;
        self.sent += 1;
        Ok(())
    }

    /// Whether the client has closed its end (or shut down its writing side). Lets a
    /// `follow` stream with nothing to send notice a client that left.
    pub fn peer_closed(&self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match nix::sys::socket::recv(
                self.sock.as_raw_fd(),
                &mut byte,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return true,
                Ok(_) | Err(Errno::EAGAIN) => return false,
                Err(Errno::EINTR) => continue,
                Err(_) => return true,
            }
        }
    }
}

/// Serve connections on `listener`, one thread per connection; `handler` gets each
/// request with its fds and a [`Responder`] to send one or more responses (streaming for
/// AclAudit follow). A handler that sends nothing has `Error{INTERNAL}` sent for it.
///
/// The returned thread accepts until the listener fails; it does not return on its own.
pub fn serve<H>(listener: UnixListener, handler: H) -> std::io::Result<JoinHandle<()>>
where
    H: Fn(Request, Vec<OwnedFd>, &mut Responder) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    std::thread::Builder::new()
        .name("control-accept".into())
        .spawn(move || accept_loop(listener, handler))
}

fn accept_loop<H>(listener: UnixListener, handler: Arc<H>)
where
    H: Fn(Request, Vec<OwnedFd>, &mut Responder) + Send + Sync + 'static,
{
    loop {
        let sock = match listener.accept() {
            Ok((sock, _)) => sock,
            Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                Some(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO) => continue,
                // Out of fds or memory: back off and let connections finish.
                Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                _ => return,
            },
        };
        let handler = Arc::clone(&handler);
        // If no thread can be spawned, the connection is dropped (closed) here.
        let _ = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || connection(sock, &*handler));
    }
}

fn connection<H>(sock: UnixStream, handler: &H)
where
    H: Fn(Request, Vec<OwnedFd>, &mut Responder),
{
    let mut responder = Responder { sock, sent: 0 };
    loop {
        let (req, fds) = match recv::<Request>(&responder.sock) {
            Ok(frame) => frame,
            Err(ProtoError::Closed) => return,
            Err(ProtoError::Decode(e)) => {
                let reply = crate::error(ErrorCode::InvalidArgument, format!("bad request: {e}"));
                if responder.send(reply).is_err() {
                    return;
                }
                continue;
            }
            Err(e) => {
                // Out of step with the client: tell it why, if it listens, and hang up.
                let _ = responder.send(crate::error(ErrorCode::InvalidArgument, e.to_string()));
                return;
            }
        };
        if req.kind.is_none() {
            let reply = crate::error(ErrorCode::InvalidArgument, "request has no kind");
            if responder.send(reply).is_err() {
                return;
            }
            continue;
        }
        responder.sent = 0;
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(req, fds, &mut responder)));
        if outcome.is_err() {
            let _ = responder.send(crate::error(
                ErrorCode::Internal,
                "request handler panicked",
            ));
            return;
        }
        if responder.sent == 0 {
            let reply = crate::error(ErrorCode::Internal, "request handler sent no response");
            if responder.send(reply).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::Mutex;

    use super::*;
    use crate::control::{request, response, AclAuditRequest, AuditLine, ContainerStatus};
    use crate::control::{ExecRequest, ExecResponse, StateRequest, StateResponse};
    use crate::Client;

    /// A fresh socket path; the directory is removed when the guard drops.
    struct SocketDir(PathBuf);

    impl SocketDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "nanovisor-proto-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("mkdir");
            SocketDir(dir)
        }

        fn path(&self) -> PathBuf {
            self.0.join("control.sock")
        }
    }

    impl Drop for SocketDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn audit_line(n: usize) -> Response {
        response::Kind::AuditLine(AuditLine {
            json: format!("{{\"n\":{n}}}"),
        })
        .into()
    }

    /// A handler like the sandbox's: state, exec (writes to the passed stdout),
    /// audit (finite or followed), and nothing for pause.
    fn start(dir: &SocketDir) -> mpsc::Receiver<usize> {
        let (done_tx, done_rx) = mpsc::channel();
        let done_tx = Mutex::new(done_tx);
        let listener = UnixListener::bind(dir.path()).expect("bind");
        serve(listener, move |req, fds, resp| match req.kind {
            Some(request::Kind::State(r)) if r.container_id == "c1" => {
                let state = StateResponse {
                    status: ContainerStatus::Running.into(),
                    init_pid: 1,
                };
                let _ = resp.send(response::Kind::State(state).into());
            }
            Some(request::Kind::State(_)) => {
                let _ = resp.send(crate::error(ErrorCode::NotFound, "no such container"));
            }
            Some(request::Kind::Exec(_)) => {
                if fds.len() != 3 {
                    let _ = resp.send(crate::error(ErrorCode::InvalidArgument, "want 3 fds"));
                    return;
                }
                let mut stdout = File::from(fds.into_iter().nth(1).expect("stdout"));
                let _ = stdout.write_all(b"hello from exec");
                let _ = resp.send(response::Kind::Exec(ExecResponse { pid: 42 }).into());
            }
            Some(request::Kind::AclAudit(AclAuditRequest { follow: false })) => {
                for n in 0..3 {
                    let _ = resp.send(audit_line(n));
                }
                let _ = resp.send(crate::empty());
            }
            Some(request::Kind::AclAudit(AclAuditRequest { follow: true })) => {
                let mut n = 0;
                while !resp.peer_closed() && resp.send(audit_line(n)).is_ok() {
                    n += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                let _ = done_tx.lock().expect("lock").send(n);
            }
            Some(request::Kind::Processes(_)) => panic!("handler bug"),
            _ => {}
        })
        .expect("serve");
        done_rx
    }

    fn kind(resp: Response) -> response::Kind {
        resp.kind.expect("response kind")
    }

    fn error_code(resp: Response) -> ErrorCode {
        match kind(resp) {
            response::Kind::Error(e) => e.code(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn end_to_end() {
        let dir = SocketDir::new();
        let follow_done = start(&dir);
        let mut client = Client::connect(&dir.path()).expect("connect");

        let state = client
            .call(
                request::Kind::State(StateRequest {
                    container_id: "c1".into(),
                })
                .into(),
                &[],
            )
            .expect("state");
        assert!(matches!(
            kind(state),
            response::Kind::State(StateResponse { init_pid: 1, status }) if status == ContainerStatus::Running as i32
        ));
        let missing = client
            .call(
                request::Kind::State(StateRequest {
                    container_id: "nope".into(),
                })
                .into(),
                &[],
            )
            .expect("state");
        assert_eq!(error_code(missing), ErrorCode::NotFound);

        // Exec with stdio fds: the handler writes to the stdout we passed.
        let (_in_r, in_w) = std::io::pipe().expect("pipe");
        let (mut out_r, out_w) = std::io::pipe().expect("pipe");
        let exec = client
            .call(
                request::Kind::Exec(ExecRequest::default()).into(),
                &[in_w.as_fd(), out_w.as_fd(), out_w.as_fd()],
            )
            .expect("exec");
        assert!(matches!(
            kind(exec),
            response::Kind::Exec(ExecResponse { pid: 42 })
        ));
        drop(out_w);
        let mut out = String::new();
        out_r.read_to_string(&mut out).expect("read");
        assert_eq!(out, "hello from exec");

        // A handler that sends nothing, and an empty request.
        let pause = client
            .call(request::Kind::Pause(Default::default()).into(), &[])
            .expect("pause");
        assert_eq!(error_code(pause), ErrorCode::Internal);
        let empty = client.call(Request::default(), &[]).expect("empty");
        assert_eq!(error_code(empty), ErrorCode::InvalidArgument);

        // A finite audit stream, then the connection goes on.
        let mut lines = vec![client
            .call(
                request::Kind::AclAudit(AclAuditRequest { follow: false }).into(),
                &[],
            )
            .expect("audit")];
        loop {
            let resp = client.next().expect("next");
            if matches!(resp.kind, Some(response::Kind::Empty(_))) {
                break;
            }
            lines.push(resp);
        }
        assert_eq!(lines, (0..3).map(audit_line).collect::<Vec<_>>());

        // A followed stream ends when the client goes.
        let mut follower = Client::connect(&dir.path()).expect("connect");
        let first = follower
            .call(
                request::Kind::AclAudit(AclAuditRequest { follow: true }).into(),
                &[],
            )
            .expect("follow");
        assert_eq!(first, audit_line(0));
        for n in 1..5 {
            assert_eq!(follower.next().expect("next"), audit_line(n));
        }
        drop(follower);
        let sent = follow_done
            .recv_timeout(Duration::from_secs(10))
            .expect("follow handler returned");
        assert!(sent >= 5);

        // The first connection still works.
        let state = client
            .call(
                request::Kind::State(StateRequest {
                    container_id: "c1".into(),
                })
                .into(),
                &[],
            )
            .expect("state");
        assert!(matches!(kind(state), response::Kind::State(_)));
    }

    #[test]
    fn broken_frames_get_an_error_and_a_hang_up() {
        let dir = SocketDir::new();
        let _ = start(&dir);

        let mut raw = UnixStream::connect(dir.path()).expect("connect");
        raw.write_all(&u32::MAX.to_le_bytes()).expect("write");
        let (resp, _) = recv::<Response>(&raw).expect("error response");
        assert_eq!(error_code(resp), ErrorCode::InvalidArgument);
        assert!(matches!(recv::<Response>(&raw), Err(ProtoError::Closed)));

        // Garbage that frames correctly is answered and the connection goes on.
        let mut raw = UnixStream::connect(dir.path()).expect("connect");
        raw.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
            .expect("write");
        let (resp, _) = recv::<Response>(&raw).expect("error response");
        assert_eq!(error_code(resp), ErrorCode::InvalidArgument);
        let mut client = Client::from_stream(raw);
        let state = client
            .call(
                request::Kind::State(StateRequest {
                    container_id: "c1".into(),
                })
                .into(),
                &[],
            )
            .expect("state");
        assert!(matches!(kind(state), response::Kind::State(_)));

        // A client that hangs up mid-frame does not take the server down.
        let mut raw = UnixStream::connect(dir.path()).expect("connect");
        raw.write_all(&[100, 0, 0, 0, 1, 2]).expect("write");
        drop(raw);

        // A panicking handler answers INTERNAL and closes only its own connection.
        let mut client = Client::connect(&dir.path()).expect("connect");
        let resp = client
            .call(request::Kind::Processes(Default::default()).into(), &[])
            .expect("processes");
        assert_eq!(error_code(resp), ErrorCode::Internal);
        assert!(matches!(client.next(), Err(ProtoError::Closed)));
        let mut client = Client::connect(&dir.path()).expect("connect");
        let state = client
            .call(
                request::Kind::State(StateRequest {
                    container_id: "c1".into(),
                })
                .into(),
                &[],
            )
            .expect("state");
        assert!(matches!(kind(state), response::Kind::State(_)));
    }
}

//! Frames on the control socket: a u32 little-endian length, then that many bytes of
//! protobuf, with any file descriptors attached (SCM_RIGHTS) to the frame's first byte.
//!
//! The reader trusts nothing: the length is checked against [`MAX_MESSAGE`] before
//! anything is allocated, at most [`MAX_FDS`] descriptors are accepted per frame, and a
//! peer that goes away mid-frame is an error. Received descriptors are close-on-exec
//! (MSG_CMSG_CLOEXEC) and owned ([`OwnedFd`]), so whatever is refused is closed.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// The largest message body a frame may carry, in either direction.
pub const MAX_MESSAGE: usize = 1 << 20;

/// The most file descriptors one frame may carry: a pod container's stdio, root and bind
/// sources (Kubernetes gives each a handful of binds; volumes add more). The kernel's own
/// limit per message is 253 (SCM_MAX_FD).
pub const MAX_FDS: usize = 64;

/// The length prefix.
const HEADER: usize = 4;

/// The most descriptors Linux passes in one message (SCM_MAX_FD, include/net/scm.h).
/// The control buffer holds that many so a receive is never truncated: on MSG_CTRUNC
/// the kernel installs the fds that fit, and nix would not let us see (and close) them.
const SCM_MAX_FD: usize = 253;

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable control message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("control message of {0} bytes exceeds the limit of {MAX_MESSAGE}")]
    TooLarge(usize),
    #[error("control connection closed")]
    Closed,
    #[error("control message carries {0} file descriptors, more than the limit of {MAX_FDS}")]
    TooManyFds(usize),
}

impl From<Errno> for ProtoError {
    fn from(errno: Errno) -> Self {
        ProtoError::Io(errno.into())
    }
}

/// Sends `msg` as one frame with `fds` attached. Blocks until the whole frame is
/// written. A message over [`MAX_MESSAGE`] bytes or more than [`MAX_FDS`] fds is
/// refused before anything is written. Never raises SIGPIPE: a gone peer is an
/// `Io` error (EPIPE).
pub fn send<M: prost::Message>(
    sock: &UnixStream,
    msg: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ProtoError> {
    let len = msg.encoded_len();
    if len > MAX_MESSAGE {
        return Err(ProtoError::TooLarge(len));
    }
    if fds.len() > MAX_FDS {
        return Err(ProtoError::TooManyFds(fds.len()));
    }
    let mut frame = Vec::with_capacity(HEADER + len);
    // MAX_MESSAGE fits in a u32.
    frame.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(&mut frame)
        .map_err(|e| std::io::Error::other(e.to_string()))?;

    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut written = 0;
    while written < frame.len() {
        // The fds go with the first sendmsg that writes anything; a sendmsg that fails
        // (EINTR) has written nothing and passed nothing.
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if written == 0 && !raw.is_empty() {
            &rights
        } else {
            &[]
        };
        match sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &[IoSlice::new(&frame[written..])],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
            Ok(n) => written += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives one frame and decodes it as `M`, with the fds that came with it.
///
/// Clean end of file before a frame is `Closed`; end of file inside a frame is an
/// `Io` error (UnexpectedEof). A length over [`MAX_MESSAGE`] is `TooLarge` and more
/// than [`MAX_FDS`] fds is `TooManyFds`: after either, the stream is out of step and
/// the connection must be dropped. After `Decode` the stream is still in step.
pub fn recv<M: prost::Message + Default>(
    sock: &UnixStream,
) -> Result<(M, Vec<OwnedFd>), ProtoError> {
    let mut reader = FrameReader::new(sock);
    let mut header = [0u8; HEADER];
    let got = reader.read_exact(&mut header)?;
    if got == 0 {
        return Err(ProtoError::Closed);
    }
    if got < HEADER {
        return Err(truncated());
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_MESSAGE {
        return Err(ProtoError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body)? < len {
        return Err(truncated());
    }
    let msg = M::decode(body.as_slice())?;
    Ok((msg, reader.fds))
}

fn truncated() -> ProtoError {
    ProtoError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "control connection closed inside a frame",
    ))
}

/// Reads the bytes of one frame, collecting the fds that arrive with any of them.
struct FrameReader<'a> {
    sock: &'a UnixStream,
    cmsg: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl<'a> FrameReader<'a> {
    fn new(sock: &'a UnixStream) -> Self {
        FrameReader {
            sock,
            cmsg: nix::cmsg_space!([RawFd; SCM_MAX_FD]),
            fds: Vec::new(),
        }
    }

    /// Fills `buf` unless the peer closes first; returns how much it filled. Never reads
    /// past `buf`, so the next frame's bytes and fds stay in the socket.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<usize, ProtoError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_some(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, ProtoError> {
        let mut iov = [IoSliceMut::new(buf)];
        let (bytes, raw) = loop {
            match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut self.cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut raw = Vec::new();
                    // ENOBUFS here means MSG_CTRUNC, which the buffer's size rules out.
                    for cmsg in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = cmsg {
                            raw.extend(fds);
                        }
                    }
                    break (msg.bytes, raw);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.fds.extend(adopt(raw));
        if self.fds.len() > MAX_FDS {
            return Err(ProtoError::TooManyFds(self.fds.len()));
        }
        Ok(bytes)
    }
}

/// Takes ownership of descriptors just received with SCM_RIGHTS.
#[allow(unsafe_code)]
fn adopt(raw: Vec<RawFd>) -> impl Iterator<Item = OwnedFd> {
    raw.into_iter().map(|fd| {
        // SAFETY: `fd` was installed in this process's fd table by the recvmsg that just
        // returned it (SCM_RIGHTS); it is open, and nothing else in the process knows its
        // number, so this OwnedFd is its only owner and closes it exactly once.
        unsafe { OwnedFd::from_raw_fd(fd) }
    })
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use super::*;
    use crate::control::{request, ExecRequest, ProcessSpec, Request};

    fn exec_request() -> Request {
        Request {
            kind: Some(request::Kind::Exec(ExecRequest {
                container_id: "c1".into(),
                process: Some(ProcessSpec {
                    args: vec![b"/bin/echo".to_vec(), b"\xffnot-utf8".to_vec()],
                    env: vec![b"PATH=/bin".to_vec()],
                    cwd: b"/".to_vec(),
                    uid: 1000,
                    ..Default::default()
                }),
            })),
        }
    }

    fn is_cloexec(fd: &OwnedFd) -> bool {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
            .expect("fdinfo");
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).expect("octal flags"))
            .expect("flags line");
        flags & 0o2000000 != 0
    }

    #[test]
    fn round_trip_with_fds() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut pipe_r, pipe_w) = std::io::pipe().expect("pipe");
        let (_null_r, null_w) = std::io::pipe().expect("pipe");
        let req = exec_request();
        send(&a, &req, &[pipe_w.as_fd(), null_w.as_fd()]).expect("send");
        drop(pipe_w);

        let (got, fds): (Request, _) = recv(&b).expect("recv");
        assert_eq!(got, req);
        assert_eq!(fds.len(), 2);
        assert!(fds.iter().all(is_cloexec));
        let mut fds = fds.into_iter();
        let mut w = File::from(fds.next().expect("fd"));
        w.write_all(b"through the socket").expect("write");
        drop(w);
        let mut out = String::new();
        pipe_r.read_to_string(&mut out).expect("read");
        assert_eq!(out, "through the socket");
    }

    #[test]
    fn frames_in_a_row_keep_their_own_fds() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (_r, w) = std::io::pipe().expect("pipe");
        send(&a, &exec_request(), &[w.as_fd()]).expect("send");
        send(&a, &Request::default(), &[]).expect("send");
        send(&a, &exec_request(), &[w.as_fd(), w.as_fd()]).expect("send");
        let counts: Vec<usize> = (0..3)
            .map(|_| recv::<Request>(&b).expect("recv").1.len())
            .collect();
        assert_eq!(counts, [1, 0, 2]);
    }

    #[test]
    fn clean_eof_is_closed() {
        let (a, b) = UnixStream::pair().expect("pair");
        drop(a);
        assert!(matches!(recv::<Request>(&b), Err(ProtoError::Closed)));
    }

    #[test]
    fn oversize_length_is_refused_before_allocating() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(&u32::MAX.to_le_bytes()).expect("write");
        match recv::<Request>(&b) {
            Err(ProtoError::TooLarge(n)) => assert_eq!(n, u32::MAX as usize),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        a.write_all(&((MAX_MESSAGE + 1) as u32).to_le_bytes())
            .expect("write");
        assert!(matches!(
            recv::<Request>(&b),
            Err(ProtoError::TooLarge(n)) if n == MAX_MESSAGE + 1
        ));
    }

    #[test]
    fn oversize_message_is_not_sent() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let big = crate::control::AuditLine {
            json: "x".repeat(MAX_MESSAGE),
        };
        assert!(matches!(send(&a, &big, &[]), Err(ProtoError::TooLarge(_))));
    }

    #[test]
    fn truncated_frames_are_errors() {
        for bytes in [&[7u8, 0][..], &[10, 0, 0, 0, 1, 2, 3][..]] {
            let (mut a, b) = UnixStream::pair().expect("pair");
            a.write_all(bytes).expect("write");
            drop(a);
            match recv::<Request>(&b) {
                Err(ProtoError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
                other => panic!("expected UnexpectedEof, got {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_a_decode_error_and_the_stream_stays_in_step() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(&[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff])
            .expect("write");
        send(&a, &exec_request(), &[]).expect("send");
        assert!(matches!(recv::<Request>(&b), Err(ProtoError::Decode(_))));
        assert_eq!(recv::<Request>(&b).expect("recv").0, exec_request());
    }

    #[test]
    fn too_many_fds() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (_r, w) = std::io::pipe().expect("pipe");
        let many = vec![w.as_fd(); MAX_FDS + 1];
        assert!(matches!(
            send(&a, &exec_request(), &many),
            Err(ProtoError::TooManyFds(n)) if n == MAX_FDS + 1
        ));

        // A peer that does not use `send` is refused too, and the fds are closed.
        let raw = vec![w.as_raw_fd(); MAX_FDS + 1];
        sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[IoSlice::new(&[0, 0, 0, 0])],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        assert!(matches!(
            recv::<Request>(&b),
            Err(ProtoError::TooManyFds(n)) if n == MAX_FDS + 1
        ));
    }
}

//! A process's stdio as containerd names it: FIFO paths (what the CRI plugin and `ctr`
//! make), `file://PATH` for a log file, or empty for none.
//!
//! stdout and stderr FIFOs are opened read-write: that never blocks, whether or not
//! containerd has its end open yet, and the reader still sees end-of-file once the sandbox
//! closes the last copy. stdin cannot be handed over the same way (a read-write FIFO never
//! reports end-of-file to the process), so it is relayed: a thread copies the FIFO into a
//! pipe whose read end the process gets, and `CloseIO` closes the pipe's write end.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::{Arc, Mutex, PoisonError};

use crate::runsc::Stdio3;

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("{stream} {uri:?}: {source}")]
    Open {
        stream: &'static str,
        uri: String,
        source: std::io::Error,
    },
    #[error("{stream} {uri:?}: this shim takes FIFO paths and file:// URIs, not {scheme}://")]
    Scheme {
        stream: &'static str,
        uri: String,
        scheme: String,
    },
    #[error("creating the stdin pipe: {0}")]
    Pipe(std::io::Error),
}

/// The write end of a relayed stdin; `close` makes the process read end-of-file.
///
/// `close` never waits for the relay: the shim calls it with its container table locked
/// (on CloseIO, and when the process exits), and the relay's write blocks for as long as
/// the process leaves a full pipe unread. The relay takes the pipe out of the shared slot
/// for each write, so the lock is never held across one; a `close` during a write leaves
/// the closing to the relay, which drops the pipe as soon as that write is done.
#[derive(Clone, Default)]
pub struct StdinRelay {
    slot: Arc<Mutex<RelaySlot>>,
}

#[derive(Default)]
struct RelaySlot {
    /// The pipe's write end, unless the relay is writing to it (or it is closed).
    writer: Option<File>,
    closed: bool,
}

impl StdinRelay {
    fn new(writer: File) -> StdinRelay {
        StdinRelay {
            slot: Arc::new(Mutex::new(RelaySlot {
                writer: Some(writer),
                closed: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelaySlot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the pipe (at once, or after the write under way): the process reads
    /// end-of-file once it has read what was written.
    pub fn close(&self) {
        let mut slot = self.lock();
        slot.closed = true;
        slot.writer.take();
    }

    /// The pipe for one write, unless the relay has been closed.
    fn take_for_write(&self) -> Option<File> {
        let mut slot = self.lock();
        if slot.closed {
            return None;
        }
        slot.writer.take()
    }

    /// Gives the pipe back after a write; drops it if `close` came meanwhile.
    fn give_back(&self, writer: File) {
        let mut slot = self.lock();
        if !slot.closed {
            slot.writer = Some(writer);
        }
    }
}

/// Opens the stdio containerd named. Returns the fds for runsc and, with a stdin, its relay.
pub fn open(
    stdin: &str,
    stdout: &str,
    stderr: &str,
) -> Result<(Stdio3, Option<StdinRelay>), StdioError> {
    let (stdin_fd, relay) = match stdin {
        "" => (None, None),
        uri => {
            let path = plain_path("stdin", uri)?.to_string();
            // Close-on-exec: a copy of the write end in any other child would keep the
            // process from ever reading end-of-file.
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| StdioError::Pipe(e.into()))?;
            let relay = StdinRelay::new(File::from(write));
            relay_stdin(path, relay.clone());
            (Some(read), Some(relay))
        }
    };
    let stdio = Stdio3 {
        stdin: stdin_fd,
        stdout: open_output("stdout", stdout)?,
        stderr: open_output("stderr", stderr)?,
    };
    Ok((stdio, relay))
}

pub(crate) fn open_output(stream: &'static str, uri: &str) -> Result<Option<OwnedFd>, StdioError> {
    if uri.is_empty() {
        return Ok(None);
    }
    let open_error = |source| StdioError::Open {
        stream,
        uri: uri.to_string(),
        source,
    };
    let file = if let Some(path) = uri.strip_prefix("file://") {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(open_error)?
    } else {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(plain_path(stream, uri)?)
            .map_err(open_error)?
    };
    Ok(Some(file.into()))
}

/// A FIFO path, refusing URI schemes other than `fifo://`.
pub(crate) fn plain_path<'a>(stream: &'static str, uri: &'a str) -> Result<&'a str, StdioError> {
    if let Some(path) = uri.strip_prefix("fifo://") {
        return Ok(path);
    }
    match uri.split_once("://") {
        Some((scheme, _)) => Err(StdioError::Scheme {
            stream,
            uri: uri.to_string(),
            scheme: scheme.to_string(),
        }),
        None => Ok(uri),
    }
}

/// Copies the stdin FIFO into the relay's pipe until either side ends. Opening the FIFO
/// blocks until containerd opens its write end, so it happens on the relay's thread.
fn relay_stdin(path: String, relay: StdinRelay) {
    let name = path.clone();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let Ok(mut fifo) = File::open(&path) else {
                relay.close();
                return;
            };
            let mut buf = [0u8; 32 * 1024];
            loop {
                let n = match fifo.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // Not under the lock: this blocks while the process leaves the pipe full.
                let Some(mut w) = relay.take_for_write() else {
                    break;
                };
                let written = w.write_all(&buf[..n]);
                relay.give_back(w);
                if written.is_err() {
                    break;
                }
            }
            relay.close();
        });
    if let Err(e) = spawned {
        containerd_shim::warn!("starting the stdin relay for {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(
            plain_path("stdout", "/run/x/stdout").ok(),
            Some("/run/x/stdout")
        );
        assert_eq!(plain_path("stdout", "fifo:///run/x").ok(), Some("/run/x"));
        let e = plain_path("stdout", "binary:///usr/bin/logger").expect_err("refused");
        assert!(e.to_string().contains("binary://"), "{e}");
    }

    #[test]
    fn outputs_open_without_a_reader_and_files_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let log = dir.path().join("log");
        let (stdio, relay) = open(
            "",
            fifo.to_str().expect("utf-8"),
            &format!("file://{}", log.display()),
        )
        .expect("opened");
        assert!(relay.is_none() && stdio.stdin.is_none());
        let mut err = File::from(stdio.stderr.expect("stderr"));
        err.write_all(b"x").expect("write");
        assert_eq!(std::fs::read(&log).expect("read"), b"x");
    }

    #[test]
    fn stdin_is_relayed_and_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let (stdio, relay) = open(fifo.to_str().expect("utf-8"), "", "").expect("opened");
        let mut writer = OpenOptions::new().write(true).open(&fifo).expect("writer");
        writer.write_all(b"hello").expect("write");
        drop(writer);
        let mut read = String::new();
        File::from(stdio.stdin.expect("stdin"))
            .read_to_string(&mut read)
            .expect("read to end-of-file");
        assert_eq!(read, "hello");
        relay.expect("relay").close();
    }

    #[test]
    fn closing_does_not_wait_for_a_process_that_does_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let (stdio, relay) = open(fifo.to_str().expect("utf-8"), "", "").expect("opened");
        let relay = relay.expect("relay");
        // More than a pipe holds: the relay blocks in a write, since nobody reads yet.
        let fifo_path = fifo.clone();
        let feeder = std::thread::spawn(move || {
            let mut writer = OpenOptions::new()
                .write(true)
                .open(&fifo_path)
                .expect("writer");
            // The relay stops reading once closed: the rest fails with EPIPE.
            let _ = writer.write_all(&vec![b'x'; 1 << 20]);
        });
        // Until the pipe holds a chunk or more (the relay's next writes fill it and block).
        let stdin = stdio.stdin.expect("stdin");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD stores one c_int through the pointer, which points at
            // `queued`; the fd is the pipe's read end, open for the whole call.
            let r = unsafe { libc::ioctl(stdin.as_raw_fd(), libc::FIONREAD, &mut queued) };
            assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
            if queued >= 32 * 1024 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the relay wrote nothing"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let closer = relay.clone();
        std::thread::spawn(move || {
            closer.close();
            let _ = done_tx.send(());
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .is_ok(),
            "close waited for the relay's blocked write"
        );
        // Once the process reads, it gets what was written, then end-of-file.
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let read = File::from(stdin).read_to_end(&mut got).map(|_| got);
            let _ = read_tx.send(read);
        });
        let got = read_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("end-of-file after the close")
            .expect("read");
        assert!(
            !got.is_empty() && got.len() < 1 << 20,
            "{} bytes",
            got.len()
        );
        assert!(got.iter().all(|&b| b == b'x'));
        feeder.join().expect("feeder");
    }
}

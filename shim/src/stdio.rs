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
#[derive(Clone, Default)]
pub struct StdinRelay {
    writer: Arc<Mutex<Option<File>>>,
}

impl StdinRelay {
    pub fn close(&self) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
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
            let relay = StdinRelay {
                writer: Arc::new(Mutex::new(Some(File::from(write)))),
            };
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
                let mut writer = relay.writer.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(w) = writer.as_mut() else { break };
                if w.write_all(&buf[..n]).is_err() {
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
}

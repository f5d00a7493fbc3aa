//! Container log files in the CRI format, written from the container's stdout and stderr
//! pipes: one line per line of output, `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, `P` for
//! a piece of a line longer than [`MAX_LINE`] (the rest follows), `F` for a line's last piece.
//! kubelet reads these files (`kubectl logs`) and rotates them, asking ReopenContainerLog.
//!
//! A log may have no path yet (a pooled sandbox's output before a pod claims it): lines are
//! kept in memory, up to [`MAX_PENDING`] bytes, and written when the path is set.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The longest piece one log line holds (containerd's default, 16 KiB).
pub const MAX_LINE: usize = 16 << 10;
/// The most output kept for a log without a path; older lines are dropped first.
const MAX_PENDING: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One CRI log line (with its newline).
pub fn format_line(time: &str, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(text.len() + 48);
    line.extend_from_slice(time.as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.name().as_bytes());
    line.extend_from_slice(if partial { b" P " } else { b" F " });
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

/// Splits output into log lines: complete lines and pieces of [`MAX_LINE`]; what remains
/// is an unfinished line, kept for the next read.
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
}

impl Splitter {
    /// Takes `data`; the (text, partial) lines it completes.
    pub fn push(&mut self, data: &[u8]) -> Vec<(Vec<u8>, bool)> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                if end <= MAX_LINE {
                    let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                    line.pop();
                    out.push((line, false));
                    continue;
                }
            }
            if self.buf.len() > MAX_LINE {
                out.push((self.buf.drain(..MAX_LINE).collect(), true));
                continue;
            }
            return out;
        }
    }

    /// At end of file: the unfinished line, if any, as a full one.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

#[derive(Default)]
struct Inner {
    path: Option<PathBuf>,
    file: Option<File>,
    pending: Vec<u8>,
}

/// A container's log file, shared by its two pumps.
#[derive(Default)]
pub struct Log {
    inner: Mutex<Inner>,
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl Log {
    pub fn new(path: Option<PathBuf>) -> std::io::Result<Arc<Log>> {
        let file = path.as_deref().map(open).transpose()?;
        Ok(Arc::new(Log {
            inner: Mutex::new(Inner {
                path,
                file,
                pending: Vec::new(),
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, line: &[u8]) {
        let mut inner = self.lock();
        if let Some(f) = inner.file.as_mut() {
            // A full disk loses log lines, not the container.
            let _ = f.write_all(line);
            return;
        }
        if inner.path.is_none() {
            inner.pending.extend_from_slice(line);
            if inner.pending.len() > MAX_PENDING {
                let cut = inner.pending.len() - MAX_PENDING;
                let cut = inner.pending[cut..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(inner.pending.len(), |p| cut + p + 1);
                inner.pending.drain(..cut);
            }
        }
    }

    /// Sets the file (a claimed pooled container's): what was kept goes there first.
    pub fn set_path(&self, path: PathBuf) -> std::io::Result<()> {
        let mut file = open(&path)?;
        let mut inner = self.lock();
        file.write_all(&inner.pending)?;
        inner.pending = Vec::new();
        inner.path = Some(path);
        inner.file = Some(file);
        Ok(())
    }

    /// Opens the file again (kubelet rotated it away).
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        let Some(path) = inner.path.clone() else {
            return Ok(());
        };
        inner.file = Some(open(&path)?);
        Ok(())
    }

    /// Copies `pipe` into the log as `stream` until end of file, on a thread of its own.
    pub fn pump(self: &Arc<Self>, stream: Stream, pipe: File) {
        let log = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("log-{}", stream.name()))
            .spawn(move || log.copy(stream, pipe));
        if let Err(e) = spawned {
            tracing::error!("starting a log pump: {e}");
        }
    }

    fn copy(&self, stream: Stream, mut pipe: File) {
        let mut split = Splitter::default();
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let time = crate::status::rfc3339_now();
            for (text, partial) in split.push(&buf[..n]) {
                self.write(&format_line(&time, stream, partial, &text));
            }
        }
        if let Some(rest) = split.finish() {
            self.write(&format_line(
                &crate::status::rfc3339_now(),
                stream,
                false,
                &rest,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_cri_format() {
        let l = format_line("2026-01-02T03:04:05.5Z", Stream::Stdout, false, b"hi there");
        assert_eq!(l, b"2026-01-02T03:04:05.5Z stdout F hi there\n");
        let l = format_line("T", Stream::Stderr, true, b"x");
        assert_eq!(l, b"T stderr P x\n");
    }

    #[test]
    fn splitting() {
        let mut s = Splitter::default();
        assert!(s.push(b"par").is_empty());
        assert_eq!(
            s.push(b"tial\nnext\nla"),
            vec![(b"partial".to_vec(), false), (b"next".to_vec(), false)]
        );
        assert_eq!(s.finish(), Some(b"la".to_vec()));
        assert_eq!(s.finish(), None);
        let long = vec![b'a'; MAX_LINE + 10];
        let mut input = long.clone();
        input.push(b'\n');
        let out = s.push(&input);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0.len(), out[0].1), (MAX_LINE, true));
        assert_eq!((out[1].0.len(), out[1].1), (10, false));
    }

    #[test]
    fn pending_lines_go_to_the_file_once_it_is_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::new(None).expect("log");
        log.write(b"early\n");
        let path = dir.path().join("c.log");
        log.set_path(path.clone()).expect("set");
        log.write(b"late\n");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "early\nlate\n"
        );
        std::fs::remove_file(&path).expect("rotate");
        log.reopen().expect("reopen");
        log.write(b"after\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "after\n");
    }
}

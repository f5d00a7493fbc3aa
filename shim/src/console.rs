//! Terminals for processes with `terminal: true`, as containerd's runc shim has them: runsc
//! makes the pty and sends its master over a console socket the shim listens on
//! ([`ConsoleSocket`]); the shim then relays containerd's stdin FIFO into the master and the
//! master into the stdout FIFO (a terminal has no stderr of its own), and sets the window
//! size on ResizePty ([`Console`]).
//!
//! Each relay is a thread that polls its source together with a "stop" pipe: closing the
//! pipe's write end wakes it. The output relay ends by itself once every slave is closed
//! (read gives EIO); when the process exits while something else still holds a slave (the
//! sandbox, a guest child), the shim stops it, and it first drains what the terminal holds,
//! so the exit the shim reports next comes after the process's output.
//!
//! End-of-file on stdin, or CloseIO, hangs the terminal up, as runc's shim does (it closes
//! the console when its stdin copy ends): the output is drained, every copy of the master is
//! closed, and the process's reads and writes on its terminal fail from then on, so an
//! interactive shell whose `kubectl exec -it` went away ends instead of waiting forever.
//!
//! Lock order: a [`Console`]'s fds are each behind their own mutex, taken one at a time.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::stdio::{self, StdioError};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("making the console socket in {dir}: {source}")]
    Socket { dir: PathBuf, source: io::Error },
    #[error("runsc sent no terminal to the console socket")]
    NoMaster,
    #[error("receiving the terminal from runsc: {0}")]
    Receive(io::Error),
    #[error("what runsc sent to the console socket is not a terminal")]
    NotATerminal,
    #[error(transparent)]
    Stdio(#[from] StdioError),
    #[error("starting the terminal's {what} relay: {source}")]
    Thread {
        what: &'static str,
        source: io::Error,
    },
}

/// Tells console sockets of one shim apart.
static SOCKETS: AtomicU64 = AtomicU64::new(0);

/// A unix socket for `runsc create|exec --console-socket`, in a private directory under
/// the temporary directory (a bundle path is often too long for a socket address), removed
/// when dropped.
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket, ConsoleError> {
        let base = std::env::temp_dir();
        let socket_error = |source| ConsoleError::Socket {
            dir: base.clone(),
            source,
        };
        // mkdir fails on any existing name (a symlink included), so a name someone else
        // made in a shared /tmp is never used; try another.
        let mut tries = 0;
        let dir = loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            let dir = base.join(format!(
                "nanovisor-console-{}-{}-{nanos}",
                std::process::id(),
                SOCKETS.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(socket_error(e)),
            }
        };
        let path = dir.join("console.sock");
        let listener = UnixListener::bind(&path).map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            socket_error(e)
        })?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master runsc sent. Call after runsc has returned: it sends before it exits, so
    /// its connection and message are queued by then, and waiting could only hang.
    pub fn receive_master(&self) -> Result<OwnedFd, ConsoleError> {
        self.listener
            .set_nonblocking(true)
            .map_err(ConsoleError::Receive)?;
        let stream = match self.listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(ConsoleError::NoMaster),
            Err(e) => return Err(ConsoleError::Receive(e)),
        };
        // The accepted socket does not inherit O_NONBLOCK; a timeout still bounds a peer
        // that connected and never sent.
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(ConsoleError::Receive)?;
        receive_fd(stream.as_fd())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Takes the first fd of one SCM_RIGHTS message (runc's `utils.SendFile` format: the
/// terminal's name as data, the master as the one fd) and checks it is a terminal.
fn receive_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, ConsoleError> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    // Room for a few fds: a peer that sends more gets them closed, not leaked or cut.
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ConsoleError::Receive(e.into()))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs().map_err(|e| ConsoleError::Receive(e.into()))? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel has just installed these fds in our table for this
            // message; nothing else in the process knows them, so each gets one owner.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let master = fds.into_iter().next().ok_or(ConsoleError::NoMaster)?;
    nix::sys::termios::tcgetattr(&master).map_err(|_| ConsoleError::NotATerminal)?;
    Ok(master)
}

/// A process's terminal: the master (for ResizePty) and the relays.
pub struct Console {
    shared: Arc<Shared>,
    /// Disconnected once the output relay has ended.
    output_done: Option<mpsc::Receiver<()>>,
}

/// What hanging up takes away; shared with the stdin relay, which hangs up at end-of-file.
struct Shared {
    /// The shim's own copy of the master, for ResizePty.
    master: Mutex<Option<OwnedFd>>,
    /// Closing it stops the stdin relay.
    stop_input: Mutex<Option<OwnedFd>>,
    /// Closing it has the output relay drain the terminal and end.
    stop_output: Mutex<Option<OwnedFd>>,
}

impl Shared {
    /// Closes the terminal as runc's shim does when stdin ends: no more input, the output
    /// drained, and the master closed, so the process's terminal is hung up (reads and
    /// writes on it fail) once the output relay has let go of its copy.
    fn hang_up(&self) {
        for fd in [&self.stop_input, &self.stop_output, &self.master] {
            fd.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

impl Console {
    /// Starts relaying containerd's `stdin` FIFO (if any) into `master` and `master` into
    /// `stdout` (a FIFO or `file://` path; if empty, the output is read and dropped, so a
    /// full terminal never blocks the process).
    pub fn start(master: OwnedFd, stdin: &str, stdout: &str) -> Result<Console, ConsoleError> {
        let out = stdio::open_output("stdout", stdout)?.map(File::from);
        // Opened before any thread starts, so that a bad path leaves nothing running.
        let fifo = match stdin {
            "" => None,
            uri => {
                let path = stdio::plain_path("stdin", uri)?;
                // Non-blocking, so opening never waits for containerd's end; poll then
                // reports end-of-file only after a writer has come and gone.
                let fifo = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|source| StdioError::Open {
                        stream: "stdin",
                        uri: uri.to_string(),
                        source,
                    })?;
                Some(fifo)
            }
        };
        let thread_error = |what| move |source| ConsoleError::Thread { what, source };

        let (stop_read, stop) = stop_pipe().map_err(thread_error("output"))?;
        let (done_tx, output_done) = mpsc::channel();
        let from_master = File::from(master.try_clone().map_err(thread_error("output"))?);
        std::thread::Builder::new()
            .name("tty-out".into())
            .spawn(move || {
                relay_output(from_master, out, stop_read);
                // The receiver learns the relay is done when this sender goes.
                drop(done_tx);
            })
            .map_err(thread_error("output"))?;
        let to_master = match fifo {
            Some(_) => Some(File::from(
                master.try_clone().map_err(thread_error("input"))?,
            )),
            None => None,
        };
        let console = Console {
            shared: Arc::new(Shared {
                master: Mutex::new(Some(master)),
                stop_input: Mutex::new(None),
                stop_output: Mutex::new(Some(stop)),
            }),
            output_done: Some(output_done),
        };

        if let (Some(fifo), Some(to_master)) = (fifo, to_master) {
            let (stop_read, stop) = stop_pipe().map_err(thread_error("input"))?;
            let shared = Arc::clone(&console.shared);
            std::thread::Builder::new()
                .name("tty-in".into())
                .spawn(move || {
                    if relay_input(fifo, to_master, stop_read) == InputEnd::EndOfFile {
                        shared.hang_up();
                    }
                })
                .map_err(thread_error("input"))?;
            *console
                .shared
                .stop_input
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(stop);
        }
        Ok(console)
    }

    /// Sets the terminal's window size (TIOCSWINSZ on the master; values beyond a `u16`
    /// saturate). True if the size changed: Linux then sends SIGWINCH to the terminal's
    /// foreground processes, which for a guest's terminal is the caller's job (the guest's
    /// processes are not host processes in the pty's session). False after a hang-up.
    pub fn resize(&self, width: u32, height: u32) -> io::Result<bool> {
        let master = self
            .shared
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(master) = master.as_ref() else {
            return Ok(false);
        };
        let size = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let before = window_size(master.as_fd())?;
        // SAFETY: TIOCSWINSZ reads one `struct winsize` from the pointer, which points to
        // a live local of that type; the fd is ours.
        let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((before.ws_row, before.ws_col) != (size.ws_row, size.ws_col))
    }

    /// CloseIO, or the process has exited: hangs the terminal up (see [`Shared::hang_up`]).
    pub fn hang_up(&self) {
        self.shared.hang_up();
    }

    /// For the caller to wait on the output relay once it has hung up (the process exited).
    pub fn take_output(&mut self) -> Option<OutputRelay> {
        self.output_done.take().map(|done| OutputRelay { done })
    }
}

impl Drop for Console {
    /// Whatever is still running ends: a process deleted before its exit was seen.
    fn drop(&mut self) {
        self.shared.hang_up();
    }
}

/// The running master → stdout relay.
pub struct OutputRelay {
    done: mpsc::Receiver<()>,
}

impl OutputRelay {
    /// Waits up to `limit` for the relay, once told to stop, to drain the terminal and end
    /// (a reader that never reads could hold it). False if it had not ended by then.
    pub fn finish(self, limit: Duration) -> bool {
        matches!(
            self.done.recv_timeout(limit),
            Err(mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

/// The window size of the terminal on `fd` (TIOCGWINSZ).
fn window_size(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the pointer, which points to a
    // live local of that type.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// A pipe whose write end's closing wakes a relay (its read end then polls readable).
fn stop_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// poll(2) until something is ready (or, with `wait` false, just looks); EINTR retried.
fn poll(fds: &mut [libc::pollfd], wait: bool) -> io::Result<()> {
    loop {
        // SAFETY: `fds` is an exclusively borrowed array of `fds.len()` pollfd structs,
        // of which the kernel writes only `revents`.
        let r = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                if wait { -1 } else { 0 },
            )
        };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

const READY: libc::c_short = libc::POLLIN | libc::POLLHUP | libc::POLLERR;

/// master → `out` until every slave is closed (EIO), or, once `stop` is readable, until
/// the terminal holds nothing more.
fn relay_output(mut master: File, mut out: Option<File>, stop: OwnedFd) {
    let mut buf = [0u8; 32 * 1024];
    let mut stopping = false;
    loop {
        let mut fds = [pollfd(master.as_fd()), pollfd(stop.as_fd())];
        // Once stopping, only look: the stop pipe stays readable. (poll on a pty flushes
        // the kernel's pending input work first, so what the process wrote is seen.)
        if poll(&mut fds, !stopping).is_err() {
            return;
        }
        stopping |= fds[1].revents != 0;
        if fds[0].revents & READY == 0 {
            if stopping {
                return;
            }
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Some(o) = out.as_mut() {
                    if o.write_all(&buf[..n]).is_err() {
                        // The reader went away: keep draining so the process never blocks.
                        out = None;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            // EIO: every slave is closed, the process and its children are gone.
            Err(_) => return,
        }
    }
}

/// Why the stdin relay ended.
#[derive(Debug, PartialEq, Eq)]
enum InputEnd {
    /// containerd's end of the FIFO closed: runc's shim then hangs the terminal up.
    EndOfFile,
    /// Told to, or the terminal is gone.
    Stopped,
}

/// stdin FIFO → master until end-of-file, an error, or `stop`.
fn relay_input(mut fifo: File, mut master: File, stop: OwnedFd) -> InputEnd {
    let mut buf = [0u8; 32 * 1024];
    loop {
        let mut fds = [pollfd(fifo.as_fd()), pollfd(stop.as_fd())];
        if poll(&mut fds, true).is_err() || fds[1].revents != 0 {
            return InputEnd::Stopped;
        }
        if fds[0].revents & READY == 0 {
            continue;
        }
        match fifo.read(&mut buf) {
            Ok(0) => return InputEnd::EndOfFile,
            Ok(n) => {
                if master.write_all(&buf[..n]).is_err() {
                    return InputEnd::Stopped;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(_) => return InputEnd::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    fn fifo(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        path
    }

    /// What runsc does: connect, send the name and the master, close.
    fn send(socket: &Path, fd: BorrowedFd<'_>) {
        let stream = UnixStream::connect(socket).expect("connect");
        let fds = [fd.as_raw_fd()];
        let iov = [IoSlice::new(b"/dev/ptmx")];
        sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
    }

    #[test]
    fn receives_a_master_sent_before_the_accept() {
        let socket = ConsoleSocket::new().expect("socket");
        assert!(matches!(
            socket.receive_master(),
            Err(ConsoleError::NoMaster)
        ));
        let pty = nix::pty::openpty(None, None).expect("pty");
        send(socket.path(), pty.master.as_fd());
        let master = socket.receive_master().expect("received");
        let console = Console::start(master, "", "").expect("console");
        assert!(console.resize(132, 43).expect("resize"), "a new size");
        assert!(!console.resize(132, 43).expect("resize"), "the same size");
        let size = window_size(pty.slave.as_fd()).expect("the slave's size");
        assert_eq!((size.ws_col, size.ws_row), (132, 43));
        assert!(console.resize(100_000, 1).expect("resize"));
        let size = window_size(pty.slave.as_fd()).expect("the slave's size");
        assert_eq!((size.ws_col, size.ws_row), (u16::MAX, 1));
        let dir = socket.dir.clone();
        drop(socket);
        assert!(!dir.exists(), "the socket's directory is removed");
    }

    #[test]
    fn refuses_what_is_not_a_terminal() {
        let socket = ConsoleSocket::new().expect("socket");
        let (read, _write) = stop_pipe().expect("pipe");
        send(socket.path(), read.as_fd());
        assert!(matches!(
            socket.receive_master(),
            Err(ConsoleError::NotATerminal)
        ));
    }

    #[test]
    fn relays_both_ways_and_drains_before_finishing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stdin, stdout) = (fifo(dir.path(), "in"), fifo(dir.path(), "out"));
        let pty = nix::pty::openpty(None, None).expect("pty");
        let mut console = Console::start(
            pty.master,
            stdin.to_str().expect("utf-8"),
            stdout.to_str().expect("utf-8"),
        )
        .expect("console");
        let mut reader = File::open(&stdout).expect("stdout reader");
        let mut writer = OpenOptions::new().write(true).open(&stdin).expect("writer");

        // stdin → the process's terminal (echoed back on the master, as a tty does).
        writer.write_all(b"typed\n").expect("write");
        let mut slave = File::from(pty.slave);
        let mut buf = [0u8; 64];
        let n = slave.read(&mut buf).expect("read the slave");
        assert_eq!(&buf[..n], b"typed\n");

        // The process writes and exits while the slave is still open elsewhere: the
        // hang-up drains it all, then the stdout FIFO reaches end-of-file.
        slave.write_all(b"bye\n").expect("write the slave");
        console.hang_up();
        let output = console.take_output().expect("output relay");
        assert!(output.finish(Duration::from_secs(5)), "the relay ended");
        let mut got = String::new();
        reader
            .read_to_string(&mut got)
            .expect("stdout to end-of-file");
        assert_eq!(got, "typed\r\nbye\r\n");
        assert!(!console.resize(80, 24).expect("resize"), "nothing to size");

        // Hung up: the process's terminal fails once the stdin relay, which may still be
        // on its way out, has let the master go; and stdin goes nowhere.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while slave.write_all(b"late\n").is_ok() {
            assert!(std::time::Instant::now() < deadline, "the slave is hung up");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = writer.write_all(b"late\n");
    }

    #[test]
    fn end_of_stdin_hangs_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stdin, stdout) = (fifo(dir.path(), "in"), fifo(dir.path(), "out"));
        let pty = nix::pty::openpty(None, None).expect("pty");
        let mut console = Console::start(
            pty.master,
            stdin.to_str().expect("utf-8"),
            stdout.to_str().expect("utf-8"),
        )
        .expect("console");
        let mut reader = File::open(&stdout).expect("stdout reader");
        let mut slave = File::from(pty.slave);
        slave.write_all(b"prompt$ ").expect("write the slave");
        let writer = OpenOptions::new().write(true).open(&stdin).expect("writer");
        drop(writer);
        let mut got = String::new();
        reader
            .read_to_string(&mut got)
            .expect("stdout to end-of-file");
        assert_eq!(got, "prompt$ ");
        let output = console.take_output().expect("output relay");
        assert!(output.finish(Duration::from_secs(5)));
        let mut buf = [0u8; 8];
        assert!(
            matches!(slave.read(&mut buf), Ok(0) | Err(_)),
            "a read on the hung-up terminal ends"
        );
    }

    #[test]
    fn output_ends_by_itself_when_the_slave_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout = fifo(dir.path(), "out");
        let pty = nix::pty::openpty(None, None).expect("pty");
        let mut console =
            Console::start(pty.master, "", stdout.to_str().expect("utf-8")).expect("console");
        let mut reader = File::open(&stdout).expect("stdout reader");
        let mut slave = File::from(pty.slave);
        slave.write_all(b"last words").expect("write");
        drop(slave);
        let mut got = String::new();
        reader
            .read_to_string(&mut got)
            .expect("stdout to end-of-file");
        assert_eq!(got, "last words");
        let output = console.take_output().expect("output relay");
        assert!(output.finish(Duration::from_secs(5)));
    }
}

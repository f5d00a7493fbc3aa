//! Terminals for containers whose process has `terminal: true`: making a pty, handing its
//! master to the caller's `--console-socket` the way runc does (one `sendmsg` carrying
//! the master's name and the fd in `SCM_RIGHTS`), or, in the foreground, relaying between
//! our own terminal and the master.

use std::fs::File;
use std::io::{self, IoSlice, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;

use nix::pty::{openpty, Winsize};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

/// The name runc sends with the master (containerd/console opens `/dev/ptmx`).
pub const MASTER_NAME: &str = "/dev/ptmx";

/// A new pseudo-terminal; both ends close on exec.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own; no pointers involved.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a pty, sized like `size` when given.
pub fn open_pty(size: Option<Winsize>) -> io::Result<Pty> {
    let pty = openpty(size.as_ref(), None).map_err(io::Error::from)?;
    set_cloexec(pty.master.as_fd())?;
    set_cloexec(pty.slave.as_fd())?;
    Ok(Pty {
        master: pty.master,
        slave: pty.slave,
    })
}

/// The window size of the terminal on `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` (which `Winsize` is) to the pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

/// Connects to `socket` and sends `master` over it, as runc's `utils.SendFile` does.
pub fn send_master(socket: &Path, master: BorrowedFd<'_>) -> io::Result<()> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("console socket {}: {e}", socket.display()),
        )
    })?;
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(MASTER_NAME.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("sending the console to {}: {e}", socket.display()),
        )
    })?;
    Ok(())
}

/// Our terminal in raw mode while the value lives (so keys reach the container as
/// typed); restored when dropped.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode; `None` if `fd` is not a terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Copies between our stdin/stdout and a pty master, in the foreground (`run` or `exec`
/// with a terminal and no console socket).
pub struct Relay {
    output: JoinHandle<()>,
    _raw: Option<RawMode>,
}

impl Relay {
    /// Starts copying stdin → `master` and `master` → stdout.
    pub fn start(master: OwnedFd) -> io::Result<Relay> {
        let raw = RawMode::enter(io::stdin().as_fd());
        let mut to_master = File::from(master.try_clone()?);
        let mut from_master = File::from(master);
        // The input thread is never joined: it may sit in read(stdin) when the process
        // ends, and goes away with us.
        std::thread::spawn(move || {
            // SAFETY: fd 0 stays open for the life of the process; the File is forgotten
            // below so it never closes it.
            let mut stdin = unsafe { File::from_raw_fd(0) };
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_master.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            std::mem::forget(stdin);
        });
        let output = std::thread::spawn(move || {
            let mut stdout = io::stdout();
            let mut buf = [0u8; 4096];
            // EIO once every slave is closed: the process has ended.
            while let Ok(n) = from_master.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        });
        Ok(Relay { output, _raw: raw })
    }

    /// Waits until the output has been copied (the last slave closed), then restores
    /// the terminal.
    pub fn finish(self) {
        let _ = self.output.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::io::IoSliceMut;
    use std::os::unix::net::UnixListener;

    #[test]
    fn sends_the_master_like_runc() {
        let dir = std::env::temp_dir().join(format!("runsc-console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("file system");
        let path = dir.join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let pty = open_pty(Some(Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }))
        .expect("pty");
        assert_eq!(window_size(pty.slave.as_fd()).map(|w| w.ws_col), Some(80));
        let sender = {
            let path = path.clone();
            let master = pty.master.try_clone().expect("dup");
            std::thread::spawn(move || send_master(&path, master.as_fd()))
        };
        let (conn, _) = listener.accept().expect("accept");
        let mut name = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let fds: Vec<_> = msg
            .cmsgs()
            .expect("cmsgs")
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        let n = msg.bytes;
        assert_eq!(&name[..n], MASTER_NAME.as_bytes());
        assert_eq!(fds.len(), 1);
        // SAFETY: the fd just arrived in SCM_RIGHTS and is ours.
        let received = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        assert!(termios::tcgetattr(&received).is_ok(), "a terminal arrived");
        sender.join().expect("thread").expect("sent");
        // Writing to the received master comes out of the slave.
        let mut master = File::from(received);
        master.write_all(b"hi\n").expect("write");
        let mut slave = File::from(pty.slave);
        let mut buf = [0u8; 16];
        let n = slave.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"hi\n");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn missing_console_socket_is_named() {
        let pty = open_pty(None).expect("pty");
        let e = send_master(Path::new("/nonexistent/console.sock"), pty.master.as_fd())
            .expect_err("refused");
        assert!(e.to_string().contains("/nonexistent/console.sock"), "{e}");
    }
}

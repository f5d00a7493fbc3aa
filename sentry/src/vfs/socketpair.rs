//! Connected AF_UNIX stream sockets from socketpair(2): each end reads one pipe buffer
//! and writes the other, so data, end-of-file and EPIPE behave as a pipe does in each
//! direction. shutdown(2) closes one direction. (Named AF_UNIX sockets and datagram
//! pairs are not built yet.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::file::{FileDescription, Stat, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP};
use super::pipe::{new_pipe, PipeEnd};
use super::socket::{Received, SocketOps, MSG_PEEK};
use crate::abi::Errno;
use crate::waiter::Waiter;

/// st_dev of sockets (sockfs, an anonymous device).
const SOCKFS_DEV: u64 = 8;

/// One end of a connected stream socket pair.
pub struct StreamSocket {
    rx: Mutex<Option<Arc<PipeEnd>>>,
    tx: Mutex<Option<Arc<PipeEnd>>>,
    ino: u64,
    flags: AtomicU32,
}

/// Make a connected pair; `flags` may hold O_NONBLOCK.
pub fn new_pair(flags: u32) -> (Arc<StreamSocket>, Arc<StreamSocket>) {
    let (a_rx, b_tx) = new_pipe(0);
    let (b_rx, a_tx) = new_pipe(0);
    let ino = a_rx.stat().map(|s| s.ino).unwrap_or(0);
    let nb = flags & libc::O_NONBLOCK as u32;
    let end = |rx, tx, ino| {
        Arc::new(StreamSocket {
            rx: Mutex::new(Some(rx)),
            tx: Mutex::new(Some(tx)),
            ino,
            flags: AtomicU32::new(libc::O_RDWR as u32 | nb),
        })
    };
    (end(a_rx, a_tx, ino), end(b_rx, b_tx, ino + 1))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamSocket {
    /// shutdown(2): SHUT_RD (0), SHUT_WR (1) or SHUT_RDWR (2).
    pub fn shutdown(&self, how: u64) -> Result<(), Errno> {
        match how {
            0 => drop(lock(&self.rx).take()),
            1 => drop(lock(&self.tx).take()),
            2 => {
                drop(lock(&self.rx).take());
                drop(lock(&self.tx).take());
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    fn rx(&self) -> Option<Arc<PipeEnd>> {
        lock(&self.rx).clone()
    }

    fn tx(&self) -> Option<Arc<PipeEnd>> {
        lock(&self.tx).clone()
    }
}

impl FileDescription for StreamSocket {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        match self.rx() {
            Some(rx) => rx.read(buf, None),
            // After SHUT_RD, reads see end of file.
            None => Ok(0),
        }
    }

    fn write(&self, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        match self.tx() {
            Some(tx) => tx.write(buf, None),
            None => Err(Errno::EPIPE),
        }
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            dev: SOCKFS_DEV,
            ino: self.ino,
            nlink: 1,
            mode: libc::S_IFSOCK | 0o777,
            blksize: 4096,
            ..Stat::default()
        })
    }

    fn ioctl(&self, cmd: u32, arg: u64, mm: &crate::mm::MemoryManager) -> Result<u64, Errno> {
        match self.rx() {
            Some(rx) => rx.ioctl(cmd, arg, mm),
            None => Err(Errno::ENOTTY),
        }
    }

    fn poll(&self) -> i16 {
        let mut r = 0;
        match self.rx() {
            Some(rx) => {
                let p = rx.poll();
                r |= p & POLLIN;
                if p & POLLHUP != 0 {
                    // The peer will write no more.
                    r |= POLLIN | POLLRDHUP;
                }
            }
            None => r |= POLLIN | POLLRDHUP,
        }
        if let Some(tx) = self.tx() {
            let p = tx.poll();
            r |= p & POLLOUT;
            if p & POLLERR != 0 {
                r |= POLLHUP;
            }
        }
        if self.rx().is_none() && self.tx().is_none() {
            r |= POLLHUP;
        }
        r
    }

    fn pollable(&self) -> bool {
        true
    }

    fn register_waiter(&self, w: &Arc<Waiter>, events: i16) {
        if let Some(rx) = self.rx() {
            rx.register_waiter(w, events);
        }
        if let Some(tx) = self.tx() {
            tx.register_waiter(w, events);
        }
    }

    fn unregister_waiter(&self, w: &Arc<Waiter>) {
        if let Some(rx) = self.rx() {
            rx.unregister_waiter(w);
        }
        if let Some(tx) = self.tx() {
            tx.unregister_waiter(w);
        }
    }

    fn path(&self) -> String {
        format!("socket:[{}]", self.ino)
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn as_socket(&self) -> Option<&dyn SocketOps> {
        Some(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// SOL_SOCKET options of a stream pair.
const SOL_SOCKET: i32 = 1;
const AF_UNIX: i32 = 1;
const SOCK_STREAM: i32 = 1;

impl SocketOps for StreamSocket {
    fn domain(&self) -> i32 {
        AF_UNIX
    }

    fn sock_type(&self) -> i32 {
        SOCK_STREAM
    }

    fn protocol(&self) -> i32 {
        0
    }

    fn connect(&self, _addr: &[u8]) -> Result<(), Errno> {
        // unix_stream_connect on a connected socket.
        Err(Errno::EISCONN)
    }

    fn send(&self, data: &[u8], _to: Option<&[u8]>, _flags: i32) -> Result<usize, Errno> {
        self.write(data, None)
    }

    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<Received, Errno> {
        if flags & MSG_PEEK != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let n = self.read(buf, None)?;
        Ok(Received {
            len: n,
            full_len: n,
            from: None,
        })
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        StreamSocket::shutdown(self, how as u64)
    }

    fn sockname(&self) -> Result<Vec<u8>, Errno> {
        // An unnamed AF_UNIX socket: just the family.
        Ok((AF_UNIX as u16).to_le_bytes().to_vec())
    }

    fn peername(&self) -> Result<Vec<u8>, Errno> {
        Ok((AF_UNIX as u16).to_le_bytes().to_vec())
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let v: i32 = match name {
            3 => SOCK_STREAM,                           // SO_TYPE
            39 => AF_UNIX,                              // SO_DOMAIN
            38 | 4 | 30 => 0,                           // SO_PROTOCOL, SO_ERROR, SO_ACCEPTCONN
            7 | 8 => super::pipe::PIPE_CAPACITY as i32, // SO_SNDBUF, SO_RCVBUF
            _ => return Err(Errno::ENOPROTOOPT),
        };
        Ok(v.to_le_bytes().to_vec())
    }

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        match name {
            // SO_REUSEADDR, SO_KEEPALIVE, SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_SNDBUFFORCE,
            // SO_RCVBUFFORCE: accepted, no effect on a pair.
            2 | 9 | 7 | 8 | 16 | 32 | 33 if value.len() >= 4 => Ok(()),
            2 | 9 | 7 | 8 | 16 | 32 | 33 => Err(Errno::EINVAL),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_and_shutdown() {
        let (a, b) = new_pair(libc::O_NONBLOCK as u32);
        assert_eq!(a.write(b"ping", None), Ok(4));
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf, None), Ok(4));
        assert_eq!(b.write(b"pong", None), Ok(4));
        assert_eq!(a.read(&mut buf, None), Ok(4));
        assert_eq!(a.read(&mut buf, None), Err(Errno::EAGAIN));
        a.shutdown(1).expect("shutdown");
        assert_eq!(
            b.read(&mut buf, None),
            Ok(0),
            "EOF after the peer's SHUT_WR"
        );
        assert_eq!(a.write(b"x", None), Err(Errno::EPIPE));
        assert_eq!(
            b.write(b"still", None),
            Ok(5),
            "the other direction stays open"
        );
    }
}

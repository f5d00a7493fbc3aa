//! Host connections relayed into the sandbox over its loopback interface: `runsc do -p`
//! without a network namespace. The host side is a std `TcpStream`; the sandbox side is a
//! TCP connection from 127.0.0.1 to the guest's port, made inside the stack, so the guest
//! sees an ordinary local client. Two threads per connection, one per direction, with
//! half-close passed through.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{SockError, Stack, TcpSocket};

/// Wakes the relay threads when the sandbox-side socket's readiness changes.
#[derive(Default)]
struct Event {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Event {
    fn notify(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_all();
    }

    fn current(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until the generation moves past `seen` (or a second passes: a safety net).
    fn wait_past(&self, seen: u64) {
        let g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .cv
            .wait_timeout_while(g, Duration::from_secs(1), |g| *g == seen);
    }
}

/// Run `op` on the sandbox socket until it stops answering EAGAIN/EINPROGRESS.
fn retry<T>(ev: &Event, mut op: impl FnMut() -> Result<T, SockError>) -> Result<T, SockError> {
    loop {
        let seen = ev.current();
        match op() {
            Err(SockError::EAGAIN) | Err(SockError::EINPROGRESS) => ev.wait_past(seen),
            r => return r,
        }
    }
}

impl Stack {
    /// Relay `conn` to `127.0.0.1:port` inside the sandbox until both directions end.
    /// Returns once the relay threads are started; a refused connection closes `conn`.
    pub fn relay_to_guest(&self, conn: TcpStream, port: u16) -> io::Result<()> {
        let sock = Arc::new(self.tcp_socket(false));
        let ev = Arc::new(Event::default());
        let e = ev.clone();
        sock.set_notify(Arc::new(move || e.notify()));
        let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let (s, e) = (sock.clone(), ev.clone());
        std::thread::Builder::new()
            .name(format!("relay-{port}"))
            .spawn(move || {
                let connected = match s.connect(target) {
                    Err(SockError::EINPROGRESS) => retry(&e, || s.connect_status()),
                    r => r,
                };
                if let Err(err) = connected {
                    tracing::debug!("relay to guest port {port}: {err}");
                    let _ = conn.shutdown(Shutdown::Both);
                    return;
                }
                let Ok(mut host_in) = conn.try_clone() else {
                    return;
                };
                let (s2, e2) = (s.clone(), e.clone());
                let inbound = std::thread::spawn(move || host_to_guest(&mut host_in, &s2, &e2));
                guest_to_host(&s, &e, conn);
                let _ = inbound.join();
            })?;
        Ok(())
    }
}

fn host_to_guest(host: &mut TcpStream, sock: &TcpSocket, ev: &Event) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match host.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = sock.shutdown(false, true);
                return;
            }
            Ok(n) => n,
        };
        let mut off = 0;
        while off < n {
            match retry(ev, || sock.send(&buf[off..n])) {
                Ok(k) => off += k,
                Err(_) => {
                    let _ = host.shutdown(Shutdown::Read);
                    return;
                }
            }
        }
    }
}

fn guest_to_host(sock: &TcpSocket, ev: &Event, mut host: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match retry(ev, || sock.recv(&mut buf, false)) {
            Ok(0) | Err(_) => {
                let _ = host.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if host.write_all(&buf[..n]).is_err() {
                    let _ = sock.shutdown(true, true);
                    return;
                }
            }
        }
    }
}

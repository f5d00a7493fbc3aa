//! `-p HOST:GUEST`: [`PortForward`] relays TCP connections accepted on `127.0.0.1:HOST` in the
//! host's namespace to the sandbox's `GUEST` port, through the sandbox's veth.
//!
//! Threads: one accepts; each connection gets two, one per direction. When one side stops
//! sending (EOF), the relay half-closes the other (`shutdown(Write)`), so request/response
//! protocols that signal the end of a request with a half-close keep working. Dropping the
//! `PortForward` stops listening and shuts down the connections still open.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context as _};

/// How long a connection to the guest may take before the client's connection is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parse `-p HOST:GUEST` (e.g. `8080:80`) into `(host_port, guest_port)`.
pub fn parse_port_mapping(s: &str) -> anyhow::Result<(u16, u16)> {
    let bad = |why: &str| {
        anyhow!("invalid port mapping {s:?}: {why} (expected HOST:GUEST, e.g. 8080:80)")
    };
    let parts: Vec<&str> = s.split(':').collect();
    let [host, guest] = parts[..] else {
        if parts.len() == 3 {
            return Err(bad(
                "a host address is not supported; forwarded ports listen on 127.0.0.1",
            ));
        }
        return Err(bad("need exactly one ':'"));
    };
    let port = |p: &str, which: &str| -> anyhow::Result<u16> {
        match p.parse::<u16>() {
            Ok(0) => Err(bad(&format!("{which} port must not be 0"))),
            Ok(n) => Ok(n),
            Err(_) => Err(bad(&format!(
                "{which} port {p:?} is not a number from 1 to 65535"
            ))),
        }
    };
    Ok((port(host, "host")?, port(guest, "guest")?))
}

/// Open relayed connections, by id: both streams, kept so `Drop` can shut them down.
type Conns = Mutex<HashMap<u64, [TcpStream; 2]>>;

/// A listener on `127.0.0.1:HOST` relaying every connection to the guest.
pub struct PortForward {
    local_addr: SocketAddr,
    listener: Arc<TcpListener>,
    stopping: Arc<AtomicBool>,
    conns: Arc<Conns>,
    acceptor: Option<JoinHandle<()>>,
}

impl PortForward {
    /// Listen on `127.0.0.1:host_port` (0 picks a free port; see [`PortForward::local_addr`])
    /// and relay each connection to `guest`. Call it from a thread in the host's namespace.
    pub fn start(host_port: u16, guest: SocketAddr) -> anyhow::Result<PortForward> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, host_port))
            .with_context(|| format!("listening on 127.0.0.1:{host_port} to forward to {guest}"))?;
        let local_addr = listener.local_addr().context("listener address")?;
        let listener = Arc::new(listener);
        let stopping = Arc::new(AtomicBool::new(false));
        let conns: Arc<Conns> = Arc::default();
        let acceptor = {
            let (listener, stopping, conns) = (listener.clone(), stopping.clone(), conns.clone());
            std::thread::Builder::new()
                .name(format!("fwd-{}", local_addr.port()))
                .spawn(move || accept_loop(&listener, guest, &stopping, &conns))
                .context("spawning the port-forward thread")?
        };
        tracing::debug!(%local_addr, %guest, "forwarding port");
        Ok(PortForward {
            local_addr,
            listener,
            stopping,
            conns,
            acceptor: Some(acceptor),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // On Linux, shutting a listening socket down leaves the LISTEN state (new connections
        // are refused) and wakes a blocked accept() with EINVAL.
        // SAFETY: plain syscall on the fd the listener owns, which lives until after the join.
        let rc = unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if rc != 0 {
            tracing::warn!(
                "shutting down forwarded port {}: {}",
                self.local_addr,
                io::Error::last_os_error()
            );
        }
        if let Some(acceptor) = self.acceptor.take() {
            if acceptor.join().is_err() {
                tracing::warn!("the port-forward thread for {} panicked", self.local_addr);
            }
        }
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        for [client, guest] in conns.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = guest.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    guest: SocketAddr,
    stopping: &AtomicBool,
    conns: &Arc<Conns>,
) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let (client, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!("accepting a forwarded connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let conns = conns.clone();
        let spawned = std::thread::Builder::new()
            .name("fwd-conn".to_owned())
            .spawn(move || {
                if let Err(e) = relay(id, client, guest, &conns) {
                    tracing::warn!("forwarding {peer} -> {guest}: {e:#}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("spawning a thread for a forwarded connection: {e}");
        }
    }
}

/// Connect to the guest and copy both ways until both directions are finished.
fn relay(id: u64, client: TcpStream, guest: SocketAddr, conns: &Conns) -> anyhow::Result<()> {
    let upstream = TcpStream::connect_timeout(&guest, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {guest}"))?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    {
        let mut conns = conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.insert(id, [client.try_clone()?, upstream.try_clone()?]);
    }
    let result = (|| {
        let back = {
            let (from, to) = (upstream.try_clone()?, client.try_clone()?);
            std::thread::Builder::new()
                .name("fwd-conn".to_owned())
                .spawn(move || pump(&from, &to))?
        };
        let forth = pump(&client, &upstream);
        let back = back.join().map_err(|_| anyhow!("relay thread panicked"))?;
        forth.context("client to guest")?;
        back.context("guest to client")?;
        anyhow::Ok(())
    })();
    conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    result
}

/// Copy `from` to `to` until EOF, then half-close `to`. On an error, shut both down so the
/// other direction's thread stops too.
fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    match io::copy(&mut &*from, &mut &*to) {
        Ok(_) => {
            // The peer may already be gone; nothing to tell anyone then.
            let _ = to.shutdown(Shutdown::Write);
            Ok(())
        }
        Err(e) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotConnected
            ) {
                // The other end went away abruptly: normal for TCP, not worth a warning.
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn parses_port_mappings() {
        assert_eq!(parse_port_mapping("8080:80").expect("valid"), (8080, 80));
        assert_eq!(parse_port_mapping("1:65535").expect("valid"), (1, 65535));
        for bad in [
            "",
            "80",
            "8080:",
            ":80",
            "0:80",
            "80:0",
            "65536:80",
            "a:b",
            "127.0.0.1:8080:80",
            "1:2:3:4",
        ] {
            let err = parse_port_mapping(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    /// A stand-in for the guest: echoes everything it reads, then closes once the client
    /// half-closes.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = conn.shutdown(Shutdown::Write);
                });
            }
        });
        addr
    }

    #[test]
    fn relays_both_ways_with_half_close() {
        let fwd = PortForward::start(0, echo_server()).expect("start");
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut conn = TcpStream::connect(fwd.local_addr()).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let writer = {
            let (mut conn, data) = (conn.try_clone().expect("clone"), data.clone());
            std::thread::spawn(move || {
                conn.write_all(&data).expect("write");
                conn.shutdown(Shutdown::Write).expect("half-close");
            })
        };
        let mut echoed = Vec::new();
        conn.read_to_end(&mut echoed).expect("read to EOF");
        writer.join().expect("writer");
        assert_eq!(echoed, data);
    }

    #[test]
    fn drop_stops_listening_and_closes_connections() {
        let fwd = PortForward::start(0, echo_server()).expect("start");
        let addr = fwd.local_addr();
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).expect("echo");
        assert_eq!(&buf, b"ping");

        drop(fwd);
        let err = TcpStream::connect(addr).expect_err("still listening");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let mut rest = Vec::new();
        // EOF (or a reset): the open connection was shut down, not left hanging.
        let _ = conn.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }

    #[test]
    fn unreachable_guest_closes_the_client() {
        // A port nothing listens on: bind one, note it, close it.
        let dead = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let fwd = PortForward::start(0, dead).expect("start");
        let mut conn = TcpStream::connect(fwd.local_addr()).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }
}

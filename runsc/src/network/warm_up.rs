//! Warm-up requests for `runsc image build --warm-up N`: N requests of `GET /` over
//! HTTP/1.1, one connection each, sent to the app before it is checkpointed.
//!
//! Why: V8 compiles a function when it first runs (and optimizes it after it has run a
//! while), and a page of the image is first touched when code needs it. A server
//! checkpointed right after `listen()` has compiled none of its request path, so every
//! restored sandbox would compile it again on its first request. Served once before the
//! checkpoint, the compiled code and the touched pages are in the image.
//!
//! Each request says `Connection: close` and is read to the end, so the app has closed
//! its side of every connection (an established connection would come back reset in a
//! restored sandbox) before the checkpoint is taken.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The default request count: enough for the request path to be compiled (the first one
/// compiles it) and for V8's baseline compiler to take the hot functions, a few
/// milliseconds of build time in all.
pub const DEFAULT_REQUESTS: u32 = 20;

/// Of the warm-up requests, how many are served after the app's first checkpoint has
/// been restored, to record what a restored guest touches first (its working set, see
/// `runsc image build`): the first request after a restore touches most of it.
pub const RECORDING_REQUESTS: u32 = 3;

/// Split `count` warm-up requests into those served before the first checkpoint and
/// those that record the working set after a restore of it. The first request compiles
/// the request path, so it is never a recording one: it would record the compiler.
pub fn split(count: u32) -> (u32, u32) {
    let recording = RECORDING_REQUESTS.min(count.saturating_sub(1));
    (count - recording, recording)
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response read (the rest is not needed to warm anything).
const MAX_RESPONSE: usize = 16 << 20;
/// How long the app gets, after the last response ended, to close its side.
const SETTLE: Duration = Duration::from_millis(50);

/// What the warm-up did, for the progress line.
pub struct Report {
    pub requests: u32,
    /// Responses by status class: 2xx, and anything else.
    pub ok: u32,
    pub first: Duration,
    pub last: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} answered 2xx; the first took {:.1} ms, the last {:.1} ms",
            self.requests,
            self.ok,
            self.first.as_secs_f64() * 1e3,
            self.last.as_secs_f64() * 1e3
        )
    }
}

/// Send `count` requests of `GET /` to `to`, one after the other. Fails on the first
/// request that cannot be made; a response that is not 2xx still warms, and is counted.
pub fn run(to: SocketAddr, count: u32) -> anyhow::Result<Report> {
    let mut report = Report {
        requests: 0,
        ok: 0,
        first: Duration::ZERO,
        last: Duration::ZERO,
    };
    for i in 0..count {
        let start = Instant::now();
        let status = get(to).with_context(|| format!("request {} of {count}", i + 1))?;
        let took = start.elapsed();
        if i == 0 {
            report.first = took;
        }
        report.last = took;
        report.requests += 1;
        if (200..300).contains(&status) {
            report.ok += 1;
        }
    }
    std::thread::sleep(SETTLE);
    Ok(report)
}

/// One `GET /` on a connection of its own, read to the end; the status code.
fn get(to: SocketAddr) -> anyhow::Result<u16> {
    let mut conn = TcpStream::connect_timeout(&to, REQUEST_TIMEOUT)
        .with_context(|| format!("connecting to {to}"))?;
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let host = match to {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    // One write, so the request leaves in one segment, as a client's usually does.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nanovisor-warm-up\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .context("sending the request")?;
    let mut response = Vec::new();
    (&mut conn)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut response)
        .context("reading the response")?;
    status_of(&response)
}

/// The status code of an HTTP/1.x response (`HTTP/1.1 200 OK`).
fn status_of(response: &[u8]) -> anyhow::Result<u16> {
    let line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") => Ok(code),
        _ if response.is_empty() => bail!("the connection closed without a response"),
        _ => bail!("not an HTTP/1.x response: {:?}", line.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_first_request_is_never_a_recording_one() {
        assert_eq!(split(0), (0, 0));
        assert_eq!(split(1), (1, 0));
        assert_eq!(split(2), (1, 1));
        assert_eq!(split(4), (1, 3));
        assert_eq!(split(20), (17, 3));
    }

    #[test]
    fn reads_the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\nhi").expect("200"), 200);
        assert_eq!(status_of(b"HTTP/1.0 404 Not Found\r\n").expect("404"), 404);
        assert!(status_of(b"").is_err());
        assert!(status_of(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status_of(b"HTTP/1.1 abc\r\n").is_err());
    }

    #[test]
    fn sends_the_requests_and_counts_the_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let to = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for i in 0..3 {
                let (mut c, _) = listener.accept().expect("accept");
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = c.read(&mut buf).expect("request");
                    assert!(n > 0, "the request ended early");
                    req.extend_from_slice(&buf[..n]);
                }
                seen.push(String::from_utf8_lossy(&req).into_owned());
                let status = if i == 1 { "500 Oops" } else { "200 OK" };
                write!(c, "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").expect("answer");
            }
            seen
        });
        let report = run(to, 3).expect("warm-up");
        assert_eq!((report.requests, report.ok), (3, 2));
        let seen = server.join().expect("server");
        assert!(seen[0].starts_with("GET / HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].contains("Connection: close\r\n"), "{}", seen[0]);
    }

    #[test]
    fn a_refused_connection_stops_it() {
        let to = TcpListener::bind("127.0.0.1:0")
            .expect("listen")
            .local_addr()
            .expect("address");
        // The listener is gone: nothing listens on `to` now.
        assert!(run(to, 2).is_err());
    }
}

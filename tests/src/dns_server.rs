//! A tiny DNS server for end-to-end tests: answers A and AAAA questions from a fixed table
//! over UDP and records every name it is asked, so that a test can check that a name the
//! sandbox denies never reached it.
//!
//! The wire format is written by hand (RFC 1035 §4.1), and only as much of it as the tests
//! need: a header, one question without compression, and answers whose owner is a
//! compression pointer to that question (`0xc00c`).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// TTL of every answer, in seconds.
pub const TTL: u32 = 60;

/// How often the serving thread looks at its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Largest datagram read (EDNS-sized queries fit).
const MAX_MESSAGE_LEN: usize = 4096;
const HEADER_LEN: usize = 12;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_AUTHORITATIVE: u16 = 0x0400;
const FLAG_RECURSION_AVAILABLE: u16 = 0x0080;
/// The opcode and RD bits, copied from query to response.
const FLAGS_COPIED: u16 = 0x7900;
const RCODE_NXDOMAIN: u16 = 3;
/// Pointer to the question name, which always starts right after the header.
const POINTER_TO_QUESTION: [u8; 2] = [0xc0, 0x0c];

/// A DNS server on a background thread; stops (and frees its port) when dropped.
#[derive(Debug)]
pub struct TestDnsServer {
    addr: SocketAddr,
    queries: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestDnsServer {
    /// Serves `records` on `bind` (port 0 picks a free one; see [`TestDnsServer::addr`]).
    /// Names match without regard to case or a trailing dot.
    pub fn start(bind: SocketAddr, records: &[(&str, IpAddr)]) -> io::Result<TestDnsServer> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(POLL_INTERVAL))?;
        let addr = socket.local_addr()?;
        let zone = Zone {
            records: records
                .iter()
                .map(|(name, ip)| (normalize(name), *ip))
                .collect(),
        };
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("test-dns-{}", addr.port()))
            .spawn({
                let queries = Arc::clone(&queries);
                let stop = Arc::clone(&stop);
                move || serve(&socket, &zone, &queries, &stop)
            })?;
        Ok(TestDnsServer {
            addr,
            queries,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The names it was asked so far, in order (lower-case, no trailing dot).
    pub fn queries(&self) -> Vec<String> {
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Zone {
    records: Vec<(String, IpAddr)>,
}

impl Zone {
    /// The reply to `packet`, or `None` if it is not a query this server understands.
    fn answer(&self, packet: &[u8], queries: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
        let query = Query::parse(packet)?;
        queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(query.name.clone());
        let mut known = false;
        let mut addrs = Vec::new();
        for (name, ip) in &self.records {
            if *name != query.name {
                continue;
            }
            known = true;
            let wanted = match ip {
                IpAddr::V4(_) => TYPE_A,
                IpAddr::V6(_) => TYPE_AAAA,
            };
            if query.qclass == CLASS_IN && query.qtype == wanted {
                addrs.push(*ip);
            }
        }
        let rcode = if known { 0 } else { RCODE_NXDOMAIN };
        Some(query.response(rcode, &addrs))
    }
}

fn serve(socket: &UdpSocket, zone: &Zone, queries: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            // The read timeout (WouldBlock or TimedOut, depending on the platform), or an
            // ICMP error from an earlier reply: look at the stop flag and go on.
            Err(_) => continue,
        };
        if let Some(reply) = buf.get(..len).and_then(|q| zone.answer(q, queries)) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

/// A standard query with one question, as far as the server reads it.
struct Query<'a> {
    id: u16,
    flags: u16,
    /// Lower-case, labels joined by dots, no trailing dot.
    name: String,
    qtype: u16,
    qclass: u16,
    /// The question on the wire (name, type, class), echoed in the response.
    question: &'a [u8],
}

impl<'a> Query<'a> {
    fn parse(packet: &'a [u8]) -> Option<Query<'a>> {
        let id = read_u16(packet, 0)?;
        let flags = read_u16(packet, 2)?;
        if flags & FLAG_RESPONSE != 0 || read_u16(packet, 4)? != 1 {
            return None;
        }
        let mut labels = Vec::new();
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*packet.get(pos)?);
            pos += 1;
            if len == 0 {
                break;
            }
            if len > 63 {
                return None; // a compression pointer or an extended label
            }
            let label = packet.get(pos..pos + len)?;
            labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
            pos += len;
        }
        let qtype = read_u16(packet, pos)?;
        let qclass = read_u16(packet, pos + 2)?;
        Some(Query {
            id,
            flags,
            name: labels.join("."),
            qtype,
            qclass,
            question: packet.get(HEADER_LEN..pos + 4)?,
        })
    }

    /// The authoritative response: the question echoed, then one record per address.
    fn response(&self, rcode: u16, addrs: &[IpAddr]) -> Vec<u8> {
        let flags = FLAG_RESPONSE
            | (self.flags & FLAGS_COPIED)
            | FLAG_AUTHORITATIVE
            | FLAG_RECURSION_AVAILABLE
            | rcode;
        // At most a few records per name in a test table: the count always fits.
        let answers = u16::try_from(addrs.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + self.question.len() + 28 * addrs.len());
        for field in [self.id, flags, 1, answers, 0, 0] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        out.extend_from_slice(self.question);
        for ip in addrs.iter().take(usize::from(answers)) {
            let (rtype, rdata) = match ip {
                IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
                IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
            };
            out.extend_from_slice(&POINTER_TO_QUESTION);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&TTL.to_be_bytes());
            // 4 or 16 octets.
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(&rdata);
        }
        out
    }
}

fn read_u16(packet: &[u8], at: usize) -> Option<u16> {
    let bytes = packet.get(at..at + 2)?;
    bytes.try_into().ok().map(u16::from_be_bytes)
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for field in [id, 0x0100, 1, 0, 0, 0] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        for label in name.trim_end_matches('.').split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out
    }

    struct Response {
        id: u16,
        flags: u16,
        question: Vec<u8>,
        answers: Vec<(u16, u32, IpAddr)>,
    }

    fn decode_response(packet: &[u8]) -> Response {
        let field = |at| read_u16(packet, at).expect("header");
        let (id, flags, qdcount, ancount) = (field(0), field(2), field(4), field(6));
        assert_eq!(qdcount, 1);
        let mut pos = HEADER_LEN;
        while packet[pos] != 0 {
            pos += 1 + usize::from(packet[pos]);
        }
        pos += 5;
        let question = packet[HEADER_LEN..pos].to_vec();
        let mut answers = Vec::new();
        for _ in 0..ancount {
            assert_eq!(packet[pos..pos + 2], POINTER_TO_QUESTION);
            let rtype = field(pos + 2);
            assert_eq!(field(pos + 4), CLASS_IN);
            let ttl = u32::from_be_bytes(packet[pos + 6..pos + 10].try_into().expect("ttl"));
            let len = usize::from(field(pos + 10));
            let rdata = &packet[pos + 12..pos + 12 + len];
            let ip = match rdata.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(rdata).expect("v4")),
                16 => IpAddr::from(<[u8; 16]>::try_from(rdata).expect("v6")),
                n => panic!("rdata of {n} octets"),
            };
            answers.push((rtype, ttl, ip));
            pos += 12 + len;
        }
        assert_eq!(pos, packet.len());
        Response {
            id,
            flags,
            question,
            answers,
        }
    }

    fn ask(client: &UdpSocket, server: SocketAddr, id: u16, name: &str, qtype: u16) -> Response {
        let query = encode_query(id, name, qtype);
        client.send_to(&query, server).expect("send");
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let (len, from) = client.recv_from(&mut buf).expect("reply");
        assert_eq!(from, server);
        let response = decode_response(&buf[..len]);
        assert_eq!(response.id, id);
        assert_eq!(response.question, query[HEADER_LEN..]);
        response
    }

    #[test]
    fn answers_over_udp() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let v4b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let server = TestDnsServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            &[
                ("Example.TEST.", v4),
                ("example.test", v6),
                ("example.test", v4b),
            ],
        )
        .expect("start");
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");

        let a = ask(&client, addr, 1, "example.test", TYPE_A);
        assert_eq!(a.flags & 0x800f, 0x8000, "a NOERROR response");
        assert_ne!(a.flags & FLAG_AUTHORITATIVE, 0);
        assert_ne!(a.flags & 0x0100, 0, "RD copied");
        assert_eq!(a.answers, [(TYPE_A, TTL, v4), (TYPE_A, TTL, v4b)]);

        let aaaa = ask(&client, addr, 2, "EXAMPLE.test.", TYPE_AAAA);
        assert_eq!(aaaa.answers, [(TYPE_AAAA, TTL, v6)]);

        let mx = ask(&client, addr, 3, "example.test", 15);
        assert_eq!(mx.flags & 0x000f, 0);
        assert!(mx.answers.is_empty());

        let unknown = ask(&client, addr, 4, "denied.test", TYPE_A);
        assert_eq!(unknown.flags & 0x000f, RCODE_NXDOMAIN);
        assert!(unknown.answers.is_empty());

        // Garbage gets no reply and does not stop the server.
        client.send_to(&[0xff; 5], addr).expect("send");
        ask(&client, addr, 5, "example.test", TYPE_A);

        assert_eq!(
            server.queries(),
            [
                "example.test",
                "example.test",
                "example.test",
                "denied.test",
                "example.test"
            ]
        );

        drop(server);
        UdpSocket::bind(addr).expect("the port is free once the server is dropped");
    }
}

//! The DNS proxy's state machine: checks each guest question against the [`NamePolicy`],
//! answers denied ones itself, forwards allowed ones upstream under a fresh random id,
//! relays the matching answer back under the guest's id (teaching the policy its
//! addresses), and retries or gives up as the clock advances.
//!
//! Invariants: `pending` holds at most [`MAX_PENDING`] queries, keyed by the id each one
//! carries upstream; no key is the id of another pending query. A query leaves `pending`
//! when its answer is relayed or when it is answered SERVFAIL after [`GIVE_UP_AFTER`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use simple_dns::RCODE;
use tracing::debug;

use super::message::{self, Compression, Header, Question, Record, RecordData, CLASS_IN};
use super::NamePolicy;

/// Largest datagram accepted from either side: 512 octets without EDNS (RFC 1035 §4.2.1),
/// 4096 with it (the common EDNS buffer size, RFC 6891 §6.2.5).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Most queries waiting for an upstream answer; beyond it new ones get SERVFAIL.
pub const MAX_PENDING: usize = 1024;
/// A query unanswered this long is sent again, once, to the next upstream.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// A query unanswered this long (since it was first sent) is answered SERVFAIL.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5);
/// Most CNAME hops followed from the question name when learning addresses.
const MAX_ALIASES: usize = 16;
/// Attempts at drawing an id that no pending query uses.
const ID_ATTEMPTS: usize = 64;

/// A datagram the proxy wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A reply to the guest's resolver, from the proxy's address.
    ToGuest { to: SocketAddr, packet: Vec<u8> },
    /// A query to an upstream resolver, from the stack's own address.
    ToUpstream { to: SocketAddr, packet: Vec<u8> },
}

/// A query forwarded upstream and not yet answered.
struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The flags of the guest's query (its RD bit and opcode go into our own replies).
    client_flags: u16,
    name: String,
    qtype: u16,
    /// The question as the guest sent it, to echo and to match the answer against.
    question: Vec<u8>,
    first_sent: Instant,
    /// The upstreams it was sent to: an answer from any of them is accepted.
    sent_to: Vec<SocketAddr>,
    retried: bool,
    /// The query as forwarded (with our id), for the retry.
    packet: Vec<u8>,
}

impl Pending {
    /// When the timer next has something to do for this query.
    fn deadline(&self) -> Option<Instant> {
        let after = if self.retried {
            GIVE_UP_AFTER
        } else {
            RETRY_AFTER
        };
        self.first_sent.checked_add(after)
    }

    fn reply(&self, rcode: RCODE) -> Outgoing {
        Outgoing::ToGuest {
            to: self.client,
            packet: message::reply(
                self.client_id,
                self.client_flags,
                Some(&self.question),
                rcode,
            ),
        }
    }
}

/// Query ids that an off-path attacker cannot guess from earlier ones: SipHash, keyed
/// once from the OS by std's `RandomState`, over a counter. Not cryptographic, and need
/// not be (16 bits are guessable by brute force anyway; the id is one check of several).
struct IdSource {
    keys: RandomState,
    counter: u64,
}

impl IdSource {
    fn new() -> IdSource {
        IdSource {
            keys: RandomState::new(),
            counter: 0,
        }
    }

    fn next(&mut self) -> u16 {
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(self.counter);
        self.counter = self.counter.wrapping_add(1);
        let [low, high, ..] = hasher.finish().to_le_bytes();
        u16::from_le_bytes([low, high])
    }
}

/// The proxy: one per sandbox, driven by the stack's poll loop.
pub struct DnsProxy {
    policy: Arc<dyn NamePolicy>,
    upstreams: Vec<SocketAddr>,
    pending: HashMap<u16, Pending>,
    ids: IdSource,
}

impl fmt::Debug for DnsProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsProxy")
            .field("upstreams", &self.upstreams)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl DnsProxy {
    /// A proxy that checks names against `policy` and forwards to `upstreams` (the first
    /// one first; the next one on a retry).
    pub fn new(policy: Arc<dyn NamePolicy>, upstreams: Vec<SocketAddr>) -> DnsProxy {
        DnsProxy {
            policy,
            upstreams,
            pending: HashMap::new(),
            ids: IdSource::new(),
        }
    }

    /// Replaces the upstream resolvers. Queries already pending still accept an answer
    /// from the upstreams they were sent to; their retry goes to the new list.
    pub fn set_upstreams(&mut self, upstreams: Vec<SocketAddr>) {
        self.upstreams = upstreams;
    }

    /// A query from the guest at `client`.
    pub fn on_query(&mut self, client: SocketAddr, packet: &[u8], now: Instant) -> Vec<Outgoing> {
        if packet.len() > MAX_MESSAGE_LEN {
            debug!(%client, len = packet.len(), "dns: oversized query dropped");
            return Vec::new();
        }
        let Ok(header) = Header::parse(packet) else {
            debug!(%client, "dns: query without a header dropped");
            return Vec::new();
        };
        // Never answer a response: two resolvers answering each other's errors would loop.
        if header.is_response() {
            debug!(%client, "dns: response sent to the proxy dropped");
            return Vec::new();
        }
        let reply = |question: Option<&[u8]>, rcode: RCODE| {
            vec![Outgoing::ToGuest {
                to: client,
                packet: message::reply(header.id, header.flags, question, rcode),
            }]
        };
        if header.opcode() != 0 || header.question_count != 1 {
            debug!(%client, opcode = header.opcode(), questions = header.question_count,
                "dns: not a standard query with one question");
            return reply(None, RCODE::FormatError);
        }
        let question = match Question::parse(packet, Compression::Forbidden) {
            Ok((question, _)) => question,
            Err(error) => {
                debug!(%client, %error, "dns: malformed question");
                return reply(None, RCODE::FormatError);
            }
        };
        let qtype = message::qtype_name(question.qtype);
        if !self.policy.allow_name(&question.name, &qtype) {
            debug!(%client, name = %question.name, %qtype, "dns: name denied");
            return reply(Some(question.raw), RCODE::NameError);
        }
        let Some(&upstream) = self.upstreams.first() else {
            debug!(%client, name = %question.name, "dns: no upstream resolver");
            return reply(Some(question.raw), RCODE::ServerFailure);
        };
        if self.pending.len() >= MAX_PENDING {
            debug!(%client, name = %question.name, "dns: too many pending queries");
            return reply(Some(question.raw), RCODE::ServerFailure);
        }
        let Some(id) = self.fresh_id(header.id) else {
            return reply(Some(question.raw), RCODE::ServerFailure);
        };
        let mut forwarded = packet.to_vec();
        message::set_id(&mut forwarded, id);
        self.pending.insert(
            id,
            Pending {
                client,
                client_id: header.id,
                client_flags: header.flags,
                name: question.name,
                qtype: question.qtype,
                question: question.raw.to_vec(),
                first_sent: now,
                sent_to: vec![upstream],
                retried: false,
                packet: forwarded.clone(),
            },
        );
        vec![Outgoing::ToUpstream {
            to: upstream,
            packet: forwarded,
        }]
    }

    /// A datagram from an upstream resolver `from`. It is relayed only if it answers a
    /// pending query: same id, sent to `from`, same question; anything else is dropped.
    pub fn on_response(&mut self, from: SocketAddr, packet: &[u8], now: Instant) -> Vec<Outgoing> {
        if packet.len() > MAX_MESSAGE_LEN {
            debug!(%from, len = packet.len(), "dns: oversized response dropped");
            return Vec::new();
        }
        let Ok(header) = Header::parse(packet) else {
            return Vec::new();
        };
        let Some(pending) = self.pending.get(&header.id) else {
            debug!(%from, id = header.id, "dns: response to no pending query dropped");
            return Vec::new();
        };
        if !pending.sent_to.contains(&from) {
            debug!(%from, id = header.id, "dns: response from the wrong address dropped");
            return Vec::new();
        }
        if !header.is_response() || header.opcode() != 0 || header.question_count != 1 {
            debug!(%from, id = header.id, "dns: not a response to a standard query");
            return Vec::new();
        }
        let (question, answers_start) = match Question::parse(packet, Compression::Allowed) {
            Ok(parsed) => parsed,
            Err(error) => {
                debug!(%from, id = header.id, %error, "dns: malformed response dropped");
                return Vec::new();
            }
        };
        if !same_question(question.raw, &pending.question) {
            debug!(%from, id = header.id, "dns: response to another question dropped");
            return Vec::new();
        }
        let Some(pending) = self.pending.remove(&header.id) else {
            return Vec::new();
        };
        if header.rcode() == RCODE::NoError {
            match message::answer_records(packet, &header, answers_start) {
                Ok(records) => self.learn(&pending.name, &records),
                // Relayed all the same: the guest's resolver judges it, and nothing learned
                // means nothing newly allowed.
                Err(error) => debug!(name = %pending.name, %error, "dns: unreadable answers"),
            }
        }
        debug!(name = %pending.name, qtype = pending.qtype, rcode = ?header.rcode(),
            elapsed = ?now.saturating_duration_since(pending.first_sent), "dns: answer relayed");
        let mut relayed = packet.to_vec();
        message::set_id(&mut relayed, pending.client_id);
        vec![Outgoing::ToGuest {
            to: pending.client,
            packet: relayed,
        }]
    }

    /// Retries queries pending for [`RETRY_AFTER`] once on the next upstream, and answers
    /// SERVFAIL to those pending for [`GIVE_UP_AFTER`].
    pub fn on_timer(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (&id, pending) in &mut self.pending {
            let age = now.saturating_duration_since(pending.first_sent);
            if age >= GIVE_UP_AFTER {
                expired.push(id);
            } else if age >= RETRY_AFTER && !pending.retried {
                pending.retried = true;
                let first = pending.sent_to.first().copied();
                if let Some(next) = first.and_then(|first| next_upstream(&self.upstreams, first)) {
                    debug!(name = %pending.name, upstream = %next, "dns: query retried");
                    pending.sent_to.push(next);
                    out.push(Outgoing::ToUpstream {
                        to: next,
                        packet: pending.packet.clone(),
                    });
                }
            }
        }
        for id in expired {
            if let Some(pending) = self.pending.remove(&id) {
                debug!(name = %pending.name, "dns: query timed out");
                out.push(pending.reply(RCODE::ServerFailure));
            }
        }
        out
    }

    /// When [`DnsProxy::on_timer`] next needs to run (`None` when nothing is pending).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().filter_map(Pending::deadline).min()
    }

    /// A random id that is neither `avoid` nor the id of a pending query.
    fn fresh_id(&mut self, avoid: u16) -> Option<u16> {
        (0..ID_ATTEMPTS)
            .map(|_| self.ids.next())
            .find(|id| *id != avoid && !self.pending.contains_key(id))
    }

    /// Teaches the policy the addresses of an answer to `qname`: those of `qname` itself
    /// and of the names its CNAME chain leads to, each under `qname` and under its own name.
    /// Records for names outside the chain are ignored (a resolver has no reason to send
    /// them, and they must not open addresses the question never led to).
    fn learn(&self, qname: &str, records: &[Record]) {
        let mut chain = vec![qname];
        while chain.len() <= MAX_ALIASES {
            let next = records.iter().find_map(|record| match &record.data {
                RecordData::Alias(target)
                    if record.class == CLASS_IN
                        && chain.contains(&record.owner.as_str())
                        && !chain.contains(&target.as_str()) =>
                {
                    Some(target.as_str())
                }
                _ => None,
            });
            match next {
                Some(target) => chain.push(target),
                None => break,
            }
        }
        for record in records {
            let RecordData::Address(addr) = record.data else {
                continue;
            };
            if record.class != CLASS_IN || !chain.contains(&record.owner.as_str()) {
                debug!(name = qname, owner = %record.owner, "dns: record outside the chain");
                continue;
            }
            self.policy.learned(qname, addr, record.ttl);
            if record.owner != qname {
                self.policy.learned(&record.owner, addr, record.ttl);
            }
        }
    }
}

/// The upstream after `first` in `upstreams` (wrapping), or the first one if `first` is
/// no longer listed.
fn next_upstream(upstreams: &[SocketAddr], first: SocketAddr) -> Option<SocketAddr> {
    match upstreams.iter().position(|u| *u == first) {
        Some(i) => upstreams.get((i + 1) % upstreams.len()).copied(),
        None => upstreams.first().copied(),
    }
}

/// Whether two wire-form questions are the same: the name compared without regard to ASCII
/// case (a resolver may echo it in another case), type and class exactly.
fn same_question(a: &[u8], b: &[u8]) -> bool {
    match (a.split_last_chunk::<4>(), b.split_last_chunk::<4>()) {
        (Some((a_name, a_rest)), Some((b_name, b_rest))) => {
            a_rest == b_rest && a_name.eq_ignore_ascii_case(b_name)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns as sd;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Mutex;

    const CLIENT: &str = "10.0.2.15:40000";
    const UPSTREAM_A: &str = "192.0.2.53:53";
    const UPSTREAM_B: &str = "198.51.100.53:53";

    #[derive(Default)]
    struct Recorder {
        denied: Vec<&'static str>,
        asked: Mutex<Vec<(String, String)>>,
        learned: Mutex<Vec<(String, IpAddr, u32)>>,
    }

    impl NamePolicy for Recorder {
        fn allow_name(&self, name: &str, qtype: &str) -> bool {
            self.asked
                .lock()
                .expect("lock")
                .push((name.to_owned(), qtype.to_owned()));
            !self.denied.contains(&name)
        }

        fn learned(&self, name: &str, addr: IpAddr, ttl: u32) {
            self.learned
                .lock()
                .expect("lock")
                .push((name.to_owned(), addr, ttl));
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn proxy(denied: Vec<&'static str>, upstreams: &[&str]) -> (DnsProxy, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            denied,
            ..Recorder::default()
        });
        let upstreams = upstreams.iter().map(|u| addr(u)).collect();
        (DnsProxy::new(recorder.clone(), upstreams), recorder)
    }

    fn query(id: u16, name: &str, qtype: sd::TYPE) -> Vec<u8> {
        let mut packet = sd::Packet::new_query(id);
        packet.set_flags(sd::PacketFlag::RECURSION_DESIRED);
        packet.questions.push(sd::Question::new(
            sd::Name::new(name).expect("name"),
            qtype.into(),
            sd::CLASS::IN.into(),
            false,
        ));
        packet.build_bytes_vec().expect("build")
    }

    /// An upstream's answer to `forwarded` (echoing its id and question).
    fn answer(forwarded: &[u8], records: &[(&str, sd::rdata::RData<'static>)]) -> Vec<u8> {
        let asked = sd::Packet::parse(forwarded).expect("forwarded query parses");
        let mut packet = sd::Packet::new_reply(asked.id());
        packet.set_flags(sd::PacketFlag::RECURSION_DESIRED | sd::PacketFlag::RECURSION_AVAILABLE);
        packet.questions = asked.questions.clone();
        for (owner, rdata) in records {
            packet.answers.push(sd::ResourceRecord::new(
                sd::Name::new(owner).expect("name"),
                sd::CLASS::IN,
                300,
                rdata.clone(),
            ));
        }
        packet.build_bytes_vec_compressed().expect("build")
    }

    fn a(ip: [u8; 4]) -> sd::rdata::RData<'static> {
        sd::rdata::RData::A(Ipv4Addr::from(ip).into())
    }

    fn aaaa(ip: Ipv6Addr) -> sd::rdata::RData<'static> {
        sd::rdata::RData::AAAA(ip.into())
    }

    fn cname(target: &'static str) -> sd::rdata::RData<'static> {
        sd::rdata::RData::CNAME(sd::rdata::CNAME(sd::Name::new(target).expect("name")))
    }

    fn single(out: Vec<Outgoing>) -> Outgoing {
        assert_eq!(out.len(), 1, "expected one datagram, got {out:?}");
        out.into_iter().next().expect("one datagram")
    }

    fn to_upstream(out: Vec<Outgoing>) -> (SocketAddr, Vec<u8>) {
        match single(out) {
            Outgoing::ToUpstream { to, packet } => (to, packet),
            other => panic!("expected a forwarded query, got {other:?}"),
        }
    }

    fn to_guest(out: Vec<Outgoing>) -> (SocketAddr, Vec<u8>) {
        match single(out) {
            Outgoing::ToGuest { to, packet } => (to, packet),
            other => panic!("expected a reply to the guest, got {other:?}"),
        }
    }

    fn id_of(packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[0], packet[1]])
    }

    #[test]
    fn denied_name_gets_nxdomain_with_the_question_echoed() {
        let (mut proxy, policy) = proxy(vec!["blocked.example.com"], &[UPSTREAM_A]);
        let q = query(0x1234, "Blocked.Example.COM.", sd::TYPE::AAAA);
        let (to, reply) = to_guest(proxy.on_query(addr(CLIENT), &q, Instant::now()));
        assert_eq!(to, addr(CLIENT));
        let reply = sd::Packet::parse(&reply).expect("reply parses");
        assert_eq!(reply.id(), 0x1234);
        assert!(reply.has_flags(sd::PacketFlag::RESPONSE | sd::PacketFlag::RECURSION_AVAILABLE));
        assert!(reply.has_flags(sd::PacketFlag::RECURSION_DESIRED));
        assert_eq!(reply.rcode(), sd::RCODE::NameError);
        assert_eq!(reply.questions.len(), 1);
        assert_eq!(reply.questions[0].qname.to_string(), "Blocked.Example.COM");
        assert_eq!(reply.questions[0].qtype, sd::TYPE::AAAA.into());
        assert!(reply.answers.is_empty());
        assert_eq!(
            *policy.asked.lock().expect("lock"),
            [("blocked.example.com".to_owned(), "AAAA".to_owned())]
        );
        assert_eq!(proxy.next_deadline(), None);
    }

    #[test]
    fn allowed_name_is_forwarded_relayed_and_learned_through_a_cname() {
        let (mut proxy, policy) = proxy(vec![], &[UPSTREAM_A, UPSTREAM_B]);
        let now = Instant::now();
        let q = query(0x4242, "www.example.com", sd::TYPE::A);
        let (to, forwarded) = to_upstream(proxy.on_query(addr(CLIENT), &q, now));
        assert_eq!(to, addr(UPSTREAM_A));
        assert_ne!(id_of(&forwarded), 0x4242);
        assert_eq!(forwarded[2..], q[2..]);
        assert_eq!(proxy.next_deadline(), Some(now + RETRY_AFTER));

        let v6: Ipv6Addr = "2001:db8::7".parse().expect("v6");
        let response = answer(
            &forwarded,
            &[
                ("www.example.com", cname("edge.cdn.example.net")),
                ("edge.cdn.example.net", a([203, 0, 113, 7])),
                ("edge.cdn.example.net", aaaa(v6)),
                ("www.example.com", a([203, 0, 113, 8])),
                ("unrelated.example.org", a([203, 0, 113, 9])),
            ],
        );
        let (to, relayed) = to_guest(proxy.on_response(addr(UPSTREAM_A), &response, now));
        assert_eq!(to, addr(CLIENT));
        assert_eq!(id_of(&relayed), 0x4242);
        assert_eq!(relayed[2..], response[2..]);
        assert_eq!(proxy.next_deadline(), None);

        let learned = policy.learned.lock().expect("lock").clone();
        let v4 = |d: u8| IpAddr::from([203, 0, 113, d]);
        assert_eq!(
            learned,
            [
                ("www.example.com".to_owned(), v4(7), 300),
                ("edge.cdn.example.net".to_owned(), v4(7), 300),
                ("www.example.com".to_owned(), IpAddr::from(v6), 300),
                ("edge.cdn.example.net".to_owned(), IpAddr::from(v6), 300),
                ("www.example.com".to_owned(), v4(8), 300),
            ]
        );

        // A duplicate of the answer no longer matches anything.
        assert!(proxy
            .on_response(addr(UPSTREAM_A), &response, now)
            .is_empty());
    }

    #[test]
    fn spoofed_responses_are_ignored() {
        let (mut proxy, policy) = proxy(vec![], &[UPSTREAM_A]);
        let now = Instant::now();
        let q = query(7, "api.example.com", sd::TYPE::A);
        let (_, forwarded) = to_upstream(proxy.on_query(addr(CLIENT), &q, now));
        let response = answer(&forwarded, &[("api.example.com", a([192, 0, 2, 1]))]);

        // From an address that is not the upstream (even the guest itself).
        assert!(proxy
            .on_response(addr(UPSTREAM_B), &response, now)
            .is_empty());
        assert!(proxy.on_response(addr(CLIENT), &response, now).is_empty());
        // With another id.
        let mut wrong_id = response.clone();
        message::set_id(&mut wrong_id, id_of(&forwarded).wrapping_add(1));
        assert!(proxy
            .on_response(addr(UPSTREAM_A), &wrong_id, now)
            .is_empty());
        // With the right id but another question.
        let other = query(id_of(&forwarded), "evil.example.com", sd::TYPE::A);
        let other = answer(&other, &[("evil.example.com", a([192, 0, 2, 66]))]);
        assert!(proxy.on_response(addr(UPSTREAM_A), &other, now).is_empty());
        // The query itself echoed back (QR clear).
        assert!(proxy
            .on_response(addr(UPSTREAM_A), &forwarded, now)
            .is_empty());
        assert!(policy.learned.lock().expect("lock").is_empty());

        // The real answer still gets through; the question may come back in another case.
        let mut recased = response.clone();
        recased[13..16].copy_from_slice(b"API");
        let (_, relayed) = to_guest(proxy.on_response(addr(UPSTREAM_A), &recased, now));
        assert_eq!(id_of(&relayed), 7);
        assert_eq!(policy.learned.lock().expect("lock").len(), 1);
    }

    #[test]
    fn timeout_retries_on_the_next_upstream_then_answers_servfail() {
        let (mut proxy, _) = proxy(vec![], &[UPSTREAM_A, UPSTREAM_B]);
        let t0 = Instant::now();
        let q = query(0xaaaa, "slow.example.com", sd::TYPE::A);
        let (to, forwarded) = to_upstream(proxy.on_query(addr(CLIENT), &q, t0));
        assert_eq!(to, addr(UPSTREAM_A));

        assert!(proxy.on_timer(t0 + Duration::from_secs(1)).is_empty());
        let (to, retried) = to_upstream(proxy.on_timer(t0 + RETRY_AFTER));
        assert_eq!((to, &retried), (addr(UPSTREAM_B), &forwarded));
        assert_eq!(proxy.next_deadline(), Some(t0 + GIVE_UP_AFTER));
        assert!(proxy.on_timer(t0 + Duration::from_secs(4)).is_empty());

        let (to, reply) = to_guest(proxy.on_timer(t0 + GIVE_UP_AFTER));
        assert_eq!(to, addr(CLIENT));
        let reply = sd::Packet::parse(&reply).expect("reply parses");
        assert_eq!(reply.id(), 0xaaaa);
        assert_eq!(reply.rcode(), sd::RCODE::ServerFailure);
        assert_eq!(reply.questions[0].qname.to_string(), "slow.example.com");
        assert_eq!(proxy.next_deadline(), None);
        assert!(proxy.on_timer(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn after_a_retry_either_upstream_may_answer() {
        for answering in [UPSTREAM_A, UPSTREAM_B] {
            let (mut proxy, _) = proxy(vec![], &[UPSTREAM_A, UPSTREAM_B]);
            let t0 = Instant::now();
            let q = query(9, "late.example.com", sd::TYPE::A);
            let (_, forwarded) = to_upstream(proxy.on_query(addr(CLIENT), &q, t0));
            to_upstream(proxy.on_timer(t0 + RETRY_AFTER));
            let response = answer(&forwarded, &[]);
            let (_, relayed) = to_guest(proxy.on_response(addr(answering), &response, t0));
            assert_eq!(id_of(&relayed), 9);
        }
    }

    #[test]
    fn servfail_without_upstream_or_beyond_the_pending_cap() {
        let (mut proxy, _) = proxy(vec![], &[]);
        let q = query(1, "example.com", sd::TYPE::A);
        let (_, reply) = to_guest(proxy.on_query(addr(CLIENT), &q, Instant::now()));
        assert_eq!(
            sd::Packet::parse(&reply).expect("parse").rcode(),
            sd::RCODE::ServerFailure
        );

        proxy.set_upstreams(vec![addr(UPSTREAM_A)]);
        let now = Instant::now();
        for id in 0..MAX_PENDING {
            let q = query(id as u16, "example.com", sd::TYPE::A);
            to_upstream(proxy.on_query(addr(CLIENT), &q, now));
        }
        let (_, reply) = to_guest(proxy.on_query(addr(CLIENT), &q, now));
        assert_eq!(
            sd::Packet::parse(&reply).expect("parse").rcode(),
            sd::RCODE::ServerFailure
        );
    }

    #[test]
    fn formerr_for_two_questions_or_another_opcode() {
        let (mut proxy, policy) = proxy(vec![], &[UPSTREAM_A]);
        let mut two = sd::Packet::new_query(0x0b0b);
        for name in ["a.example.com", "b.example.com"] {
            two.questions.push(sd::Question::new(
                sd::Name::new(name).expect("name"),
                sd::TYPE::A.into(),
                sd::CLASS::IN.into(),
                false,
            ));
        }
        let two = two.build_bytes_vec().expect("build");
        let (_, reply) = to_guest(proxy.on_query(addr(CLIENT), &two, Instant::now()));
        let reply = sd::Packet::parse(&reply).expect("parse");
        assert_eq!(
            (reply.id(), reply.rcode()),
            (0x0b0b, sd::RCODE::FormatError)
        );
        assert!(reply.has_flags(sd::PacketFlag::RESPONSE));

        let mut notify = query(0x0c0c, "example.com", sd::TYPE::SOA);
        notify[2] |= 4 << 3; // opcode 4, NOTIFY
        let (_, reply) = to_guest(proxy.on_query(addr(CLIENT), &notify, Instant::now()));
        let reply = sd::Packet::parse(&reply).expect("parse");
        assert_eq!(
            (reply.id(), reply.rcode()),
            (0x0c0c, sd::RCODE::FormatError)
        );

        // A truncated question is a format error too; a response is never answered.
        let q = query(0x0d0d, "example.com", sd::TYPE::A);
        let (_, reply) = to_guest(proxy.on_query(addr(CLIENT), &q[..q.len() - 1], Instant::now()));
        assert_eq!(id_of(&reply), 0x0d0d);
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(proxy
            .on_query(addr(CLIENT), &response, Instant::now())
            .is_empty());
        assert!(policy.asked.lock().expect("lock").is_empty());
    }

    #[test]
    fn unknown_types_are_forwarded_and_size_is_capped() {
        let (mut proxy, policy) = proxy(vec![], &[UPSTREAM_A]);
        let mut q = query(3, "example.com", sd::TYPE::A);
        let len = q.len();
        q[len - 4..len - 2].copy_from_slice(&65_280u16.to_be_bytes());
        to_upstream(proxy.on_query(addr(CLIENT), &q, Instant::now()));
        assert_eq!(policy.asked.lock().expect("lock")[0].1, "TYPE65280");

        // EDNS-sized (trailing bytes are the guest's business) up to 4096 octets.
        let mut big = query(4, "example.com", sd::TYPE::A);
        big.resize(MAX_MESSAGE_LEN, 0);
        to_upstream(proxy.on_query(addr(CLIENT), &big, Instant::now()));
        big.push(0);
        assert!(proxy
            .on_query(addr(CLIENT), &big, Instant::now())
            .is_empty());
    }

    /// xorshift64*: deterministic noise for the fuzz-like test.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn malformed_input_never_panics() {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let (mut proxy, _) = proxy(vec!["denied.example.com"], &[UPSTREAM_A]);
        let now = Instant::now();
        let client = addr(CLIENT);
        let upstream = addr(UPSTREAM_A);

        // Random bytes of every small length, both ways.
        for _ in 0..20_000 {
            let len = noise.below(600);
            let bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
            let _ = proxy.on_query(client, &bytes, now);
            let _ = proxy.on_response(upstream, &bytes, now);
        }

        // Every truncation of a valid query and of a valid answer, and mutations of the
        // answer that keep the pending id so that they reach the answer parser.
        let mut valid_query = query(5, "www.example.com", sd::TYPE::A);
        valid_query.extend_from_slice(&[0; 3]);
        for end in 0..valid_query.len() {
            let _ = proxy.on_query(client, &valid_query[..end], now);
        }
        let mut answered = 0;
        for round in 0..20_000 {
            let q = query(5, "www.example.com", sd::TYPE::A);
            let (_, forwarded) = to_upstream(proxy.on_query(client, &q, now));
            let response = answer(
                &forwarded,
                &[
                    ("www.example.com", cname("cdn.example.net")),
                    ("cdn.example.net", a([192, 0, 2, 1])),
                    ("cdn.example.net", aaaa(Ipv6Addr::LOCALHOST)),
                ],
            );
            let mut mutated = response.clone();
            if round % 2 == 0 {
                mutated.truncate(noise.below(response.len() + 1));
            }
            for _ in 0..noise.below(4) + 1 {
                if mutated.len() > 2 {
                    let at = 2 + noise.below(mutated.len() - 2);
                    mutated[at] = noise.next() as u8;
                }
            }
            if !proxy.on_response(upstream, &mutated, now).is_empty() {
                answered += 1;
            }
            let _ = proxy.on_response(upstream, &response, now);
        }
        assert!(answered > 0);
        let _ = proxy.on_timer(now + Duration::from_secs(3600));
        assert_eq!(proxy.next_deadline(), None);
    }

    #[test]
    fn pointer_loops_in_answers_do_not_hang() {
        let (mut proxy, policy) = proxy(vec![], &[UPSTREAM_A]);
        let now = Instant::now();
        let q = query(6, "loop.example.com", sd::TYPE::A);
        let (_, forwarded) = to_upstream(proxy.on_query(addr(CLIENT), &q, now));
        let mut response = answer(&forwarded, &[]);
        response[7] = 1; // one answer, whose owner name points at itself
        let at = response.len();
        response.extend_from_slice(&[0xc0, at as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        let (_, relayed) = to_guest(proxy.on_response(addr(UPSTREAM_A), &response, now));
        assert_eq!(id_of(&relayed), 6);
        assert!(policy.learned.lock().expect("lock").is_empty());
    }
}

//! The DNS wire format, as little of it as the proxy needs (RFC 1035 §4): the header, the
//! one question, the answer records, and a reply made of a header and the echoed question.
//!
//! Reading is hand-written rather than done with `simple_dns::Packet::parse` on purpose:
//! that parser rejects whole messages for a question type or class it does not know and
//! for any record it cannot decode, while the proxy must forward every question the
//! policy allows and learn addresses from any well-formed answer section. Every read is
//! bounds-checked, names are capped at 255 octets and compression pointers at
//! [`MAX_POINTER_HOPS`] hops, so no input panics or loops.
//!
//! Names handed to the policy are in presentation form (RFC 1035 §5.1), lower-cased: a
//! byte other than a letter, digit, `-` or `_` is written `\DDD`, so a label holding a dot
//! (`evil\046com`) can never pass for two labels (`evil.com`).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::{QTYPE, RCODE, TYPE};

/// Length of the fixed message header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;
/// Most compression pointers followed while reading one name.
pub const MAX_POINTER_HOPS: usize = 128;

/// The QR bit: set in responses.
const FLAG_RESPONSE: u16 = 0x8000;
/// The RD bit: recursion desired, copied from query to response.
const FLAG_RECURSION_DESIRED: u16 = 0x0100;
/// The RA bit: recursion available.
const FLAG_RECURSION_AVAILABLE: u16 = 0x0080;
const OPCODE_SHIFT: u16 = 11;
const OPCODE_MASK: u16 = 0x0f;
const RCODE_MASK: u16 = 0x000f;

/// Type codes the proxy looks at in answers.
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
/// The Internet class.
pub const CLASS_IN: u16 = 1;

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated")]
    Truncated,
    #[error("name longer than {MAX_NAME_LEN} octets")]
    NameTooLong,
    #[error("unsupported label type {0:#04x}")]
    LabelType(u8),
    #[error("compression pointer where none may be")]
    UnexpectedPointer,
    #[error("more than {MAX_POINTER_HOPS} compression pointers in a name")]
    PointerLoop,
}

/// Whether a name may use compression pointers (RFC 1035 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A query's question: there is no earlier name to point to, and refusing pointers
    /// keeps what the policy checks byte-for-byte what the upstream will read.
    Forbidden,
    /// Anything in a response.
    Allowed,
}

/// The fixed 12-octet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub question_count: u16,
    pub answer_count: u16,
    pub authority_count: u16,
    pub additional_count: u16,
}

impl Header {
    /// Reads the header at the start of `packet`.
    pub fn parse(packet: &[u8]) -> Result<Header, WireError> {
        let field = |i: usize| -> Result<u16, WireError> { read_u16(packet, 2 * i) };
        Ok(Header {
            id: field(0)?,
            flags: field(1)?,
            question_count: field(2)?,
            answer_count: field(3)?,
            authority_count: field(4)?,
            additional_count: field(5)?,
        })
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The 4-bit operation code (0 is a standard query).
    pub fn opcode(&self) -> u16 {
        (self.flags >> OPCODE_SHIFT) & OPCODE_MASK
    }

    /// The 4-bit response code.
    pub fn rcode(&self) -> RCODE {
        RCODE::from(self.flags & RCODE_MASK)
    }
}

/// The question of a message (the first, which for the proxy is the only one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question<'a> {
    /// The question as it is on the wire (name, type, class), for echoing and matching.
    pub raw: &'a [u8],
    /// The name in lower-case presentation form, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

impl<'a> Question<'a> {
    /// Reads the question that follows the header; returns it and the offset after it.
    pub fn parse(
        packet: &'a [u8],
        compression: Compression,
    ) -> Result<(Question<'a>, usize), WireError> {
        let (name, after_name) = read_name(packet, HEADER_LEN, compression)?;
        let qtype = read_u16(packet, after_name)?;
        let qclass = read_u16(packet, after_name + 2)?;
        let end = after_name + 4;
        let raw = packet.get(HEADER_LEN..end).ok_or(WireError::Truncated)?;
        Ok((
            Question {
                raw,
                name,
                qtype,
                qclass,
            },
            end,
        ))
    }
}

/// What an answer record says, as far as the proxy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// An A or AAAA record of the right length.
    Address(IpAddr),
    /// A CNAME record: the owner is an alias of this name (presentation form).
    Alias(String),
    /// Anything else.
    Other,
}

/// One record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name in lower-case presentation form.
    pub owner: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RecordData,
}

/// Reads the answer section, which starts at `offset` (just after the question).
pub fn answer_records(
    packet: &[u8],
    header: &Header,
    mut offset: usize,
) -> Result<Vec<Record>, WireError> {
    let mut records = Vec::new();
    for _ in 0..header.answer_count {
        let (owner, after_name) = read_name(packet, offset, Compression::Allowed)?;
        let rtype = read_u16(packet, after_name)?;
        let class = read_u16(packet, after_name + 2)?;
        let ttl = read_u32(packet, after_name + 4)?;
        let rdata_len = usize::from(read_u16(packet, after_name + 8)?);
        let rdata_start = after_name + 10;
        let rdata_end = rdata_start + rdata_len;
        let rdata = packet
            .get(rdata_start..rdata_end)
            .ok_or(WireError::Truncated)?;
        let data = match rtype {
            TYPE_A => <[u8; 4]>::try_from(rdata)
                .map(|octets| RecordData::Address(Ipv4Addr::from(octets).into()))
                .unwrap_or(RecordData::Other),
            TYPE_AAAA => <[u8; 16]>::try_from(rdata)
                .map(|octets| RecordData::Address(Ipv6Addr::from(octets).into()))
                .unwrap_or(RecordData::Other),
            TYPE_CNAME => {
                let (target, target_end) = read_name(packet, rdata_start, Compression::Allowed)?;
                if target_end != rdata_end {
                    return Err(WireError::Truncated);
                }
                RecordData::Alias(target)
            }
            _ => RecordData::Other,
        };
        records.push(Record {
            owner,
            rtype,
            class,
            ttl,
            data,
        });
        offset = rdata_end;
    }
    Ok(records)
}

/// Reads the name at `start`; returns it in lower-case presentation form (no trailing dot,
/// the root is `""`) and the offset just after it where it is written (after its first
/// compression pointer, if any).
pub fn read_name(
    packet: &[u8],
    start: usize,
    compression: Compression,
) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut pos = start;
    let mut end = None;
    let mut wire_len = 1; // the root label
    let mut hops = 0;
    loop {
        let len = *packet.get(pos).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok((name, end.unwrap_or(pos + 1))),
            0x00 => {
                let len = usize::from(len);
                wire_len += 1 + len;
                if wire_len > MAX_NAME_LEN {
                    return Err(WireError::NameTooLong);
                }
                let label = packet
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(WireError::Truncated)?;
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + len;
            }
            0xc0 => {
                if compression == Compression::Forbidden {
                    return Err(WireError::UnexpectedPointer);
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(WireError::PointerLoop);
                }
                let low = *packet.get(pos + 1).ok_or(WireError::Truncated)?;
                end.get_or_insert(pos + 2);
                pos = usize::from(u16::from_be_bytes([len & 0x3f, low]));
            }
            _ => return Err(WireError::LabelType(len)),
        }
    }
}

/// Appends one label in lower-case presentation form.
fn push_label(name: &mut String, label: &[u8]) {
    for &byte in label {
        let byte = byte.to_ascii_lowercase();
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            name.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(name, "\\{byte:03}");
        }
    }
}

/// The mnemonic of a question type: `"A"`, `"AAAA"`, `"ANY"`, … or `"TYPE<n>"` (RFC 3597).
pub fn qtype_name(qtype: u16) -> String {
    match QTYPE::try_from(qtype) {
        Ok(QTYPE::TYPE(TYPE::RouteThrough)) => "RT".to_owned(),
        Ok(QTYPE::TYPE(TYPE::NSAP_PTR)) => "NSAP-PTR".to_owned(),
        Ok(QTYPE::TYPE(TYPE::NULL)) => "NULL".to_owned(),
        Ok(QTYPE::TYPE(TYPE::Unknown(_))) | Err(_) => format!("TYPE{qtype}"),
        Ok(QTYPE::TYPE(known)) => format!("{known:?}"),
        Ok(special) => format!("{special:?}"),
    }
}

/// A reply made of a header and, if given, the echoed question; no records.
///
/// `query_flags` are the flags of the query: its opcode and RD bit are copied (RFC 1035
/// §4.1.1), QR and RA are set.
pub fn reply(id: u16, query_flags: u16, question: Option<&[u8]>, rcode: RCODE) -> Vec<u8> {
    let flags = FLAG_RESPONSE
        | (query_flags & ((OPCODE_MASK << OPCODE_SHIFT) | FLAG_RECURSION_DESIRED))
        | FLAG_RECURSION_AVAILABLE
        | (rcode as u16 & RCODE_MASK);
    let question_count = u16::from(question.is_some());
    let question = question.unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + question.len());
    for field in [id, flags, question_count, 0, 0, 0] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(question);
    out
}

/// Overwrites the id of a message (a no-op on anything shorter than an id).
pub fn set_id(packet: &mut [u8], id: u16) {
    if let Some(bytes) = packet.get_mut(0..2) {
        bytes.copy_from_slice(&id.to_be_bytes());
    }
}

fn read_u16(packet: &[u8], at: usize) -> Result<u16, WireError> {
    packet
        .get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_be_bytes)
        .ok_or(WireError::Truncated)
}

fn read_u32(packet: &[u8], at: usize) -> Result<u32, WireError> {
    packet
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or(WireError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(qdcount: u16) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x01, 0x00];
        out.extend_from_slice(&qdcount.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        out
    }

    #[test]
    fn names_are_lower_cased_and_escaped() {
        let mut packet = header(1);
        packet.extend_from_slice(b"\x03WwW\x08evil.com\x03Co_\x00\x00\x01\x00\x01");
        let (question, end) = Question::parse(&packet, Compression::Forbidden).expect("parse");
        assert_eq!(question.name, "www.evil\\046com.co_");
        assert_eq!((question.qtype, question.qclass), (1, 1));
        assert_eq!(end, packet.len());
        assert_eq!(question.raw, &packet[HEADER_LEN..]);
    }

    #[test]
    fn root_name_is_empty() {
        let mut packet = header(1);
        packet.extend_from_slice(b"\x00\x00\x02\x00\x01");
        let (question, _) = Question::parse(&packet, Compression::Forbidden).expect("parse");
        assert_eq!(question.name, "");
    }

    #[test]
    fn pointers_are_refused_in_queries_and_loops_are_caught() {
        let mut packet = header(1);
        packet.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
        assert_eq!(
            Question::parse(&packet, Compression::Forbidden),
            Err(WireError::UnexpectedPointer)
        );
        assert_eq!(
            Question::parse(&packet, Compression::Allowed),
            Err(WireError::PointerLoop)
        );
    }

    #[test]
    fn long_names_and_bad_labels_are_refused() {
        let mut packet = header(1);
        for _ in 0..5 {
            packet.push(63);
            packet.extend_from_slice(&[b'a'; 63]);
        }
        packet.extend_from_slice(b"\x00\x00\x01\x00\x01");
        assert_eq!(
            Question::parse(&packet, Compression::Forbidden),
            Err(WireError::NameTooLong)
        );
        let mut packet = header(1);
        packet.extend_from_slice(b"\x41a\x00\x00\x01\x00\x01");
        assert_eq!(
            Question::parse(&packet, Compression::Forbidden),
            Err(WireError::LabelType(0x41))
        );
    }

    #[test]
    fn qtype_mnemonics() {
        assert_eq!(qtype_name(1), "A");
        assert_eq!(qtype_name(28), "AAAA");
        assert_eq!(qtype_name(5), "CNAME");
        assert_eq!(qtype_name(65), "HTTPS");
        assert_eq!(qtype_name(255), "ANY");
        assert_eq!(qtype_name(21), "RT");
        assert_eq!(qtype_name(65_280), "TYPE65280");
    }

    #[test]
    fn reply_copies_rd_and_opcode() {
        let out = reply(
            0xbeef,
            0x0100,
            Some(b"\x00\x00\x01\x00\x01"),
            RCODE::NameError,
        );
        let header = Header::parse(&out).expect("header");
        assert_eq!(header.id, 0xbeef);
        assert_eq!(header.flags, 0x8183);
        assert_eq!(header.question_count, 1);
        assert_eq!(header.rcode(), RCODE::NameError);
        assert_eq!(&out[HEADER_LEN..], b"\x00\x00\x01\x00\x01");
    }
}

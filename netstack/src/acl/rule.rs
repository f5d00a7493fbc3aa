//! One ACL rule: its id, what it matches (an egress or ingress flow, DNS names, a listening
//! port), its action, and its (de)serialization with every value validated where it is
//! read, so that a bad value is reported at its line.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::names::NamePattern;

/// The id of a rule: `[a-z0-9][a-z0-9-_.]{0,62}`. Cheap to clone (verdicts carry it).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(Arc<str>);

impl RuleId {
    /// Longest id.
    pub const MAX_LEN: usize = 63;

    /// Validates an id.
    pub fn new(text: &str) -> Result<RuleId, String> {
        let bad = |why: &str| format!("invalid rule id {text:?}: {why}");
        let Some(first) = text.bytes().next() else {
            return Err(bad("empty"));
        };
        if text.len() > Self::MAX_LEN {
            return Err(bad(&format!("longer than {} characters", Self::MAX_LEN)));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(bad("must start with a-z or 0-9"));
        }
        if let Some(c) = text.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        }) {
            return Err(bad(&format!(
                "character {c:?} is not allowed (use a-z, 0-9, '-', '_' and '.')"
            )));
        }
        Ok(RuleId(text.into()))
    }

    /// The id given to the rule without one: `rule-N`.
    pub(crate) fn auto(n: u64) -> RuleId {
        RuleId(format!("rule-{n}").into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RuleId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RuleId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RuleId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<RuleId> for String {
    fn from(id: RuleId) -> String {
        id.0.to_string()
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("a rule id", RuleId::new))
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    /// Allow, and always write the verdict to the audit log (Cilium's audit mode).
    Audit,
}

impl Action {
    /// Whether the flow, name or port goes through.
    pub fn allows(self) -> bool {
        !matches!(self, Action::Deny)
    }

    /// The word used in policies and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Audit => "audit",
        }
    }
}

/// The transport of a flow. `Any` appears only in rules; flows are `Tcp`, `Udp` or `Icmp`
/// (ICMPv4 and ICMPv6 alike).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    #[default]
    Any,
}

impl Protocol {
    /// Whether a rule for `self` covers a flow of `flow`. A flow of `Any` (not a real flow)
    /// is covered only by `Any` rules.
    pub fn covers(self, flow: Protocol) -> bool {
        self == Protocol::Any || self == flow
    }

    /// The word used in policies and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }

    fn is_any(&self) -> bool {
        *self == Protocol::Any
    }
}

/// The kind of a rule, which is also the direction of the checks it takes part in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Egress,
    Ingress,
    Dns,
    Listen,
}

impl Direction {
    /// The word used in policies and audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
            Direction::Dns => "dns",
            Direction::Listen => "listen",
        }
    }
}

/// An inclusive range of ports, `lo..=hi`, with `1 <= lo <= hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// A range of one port.
    pub fn single(port: u16) -> Result<PortRange, String> {
        PortRange::new(port, port)
    }

    /// `lo..=hi`; port 0 is not a port a rule can name.
    pub fn new(lo: u16, hi: u16) -> Result<PortRange, String> {
        if lo == 0 {
            return Err("port 0 is not valid (ports are 1-65535)".to_string());
        }
        if lo > hi {
            return Err(format!(
                "invalid port range \"{lo}-{hi}\": {lo} is greater than {hi}"
            ));
        }
        Ok(PortRange { lo, hi })
    }

    /// Parses `"80"` or `"8000-8100"`.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let port = |part: &str| -> Result<u16, String> {
            let part = part.trim();
            let n: u64 = part.parse().map_err(|_| {
                format!("invalid port {text:?}: expected a port (1-65535) or a range \"lo-hi\"")
            })?;
            u16::try_from(n).map_err(|_| format!("port {n} is out of range (ports are 1-65535)"))
        };
        match text.split_once('-') {
            Some((lo, hi)) => PortRange::new(port(lo)?, port(hi)?),
            None => PortRange::single(port(text)?),
        }
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// The first port.
    pub fn lo(self) -> u16 {
        self.lo
    }

    /// The last port.
    pub fn hi(self) -> u16 {
        self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            serializer.serialize_u16(self.lo)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (1-65535) or a port range \"lo-hi\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                let port = u16::try_from(v).map_err(|_| {
                    E::custom(format!("port {v} is out of range (ports are 1-65535)"))
                })?;
                PortRange::single(port).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "port {v} is out of range (ports are 1-65535)"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                PortRange::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// Parses a CIDR or a bare address (a /32 or /128). Host bits must be clear; an
/// IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes its IPv4 network, since flows
/// from such addresses are matched as IPv4.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let bad = |why: String| format!("invalid CIDR {text:?}: {why}");
    let (addr_text, len_text) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| bad(format!("{addr_text:?} is not an IPv4 or IPv6 address")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max,
        Some(len) => {
            let n: u32 = len
                .parse()
                .map_err(|_| bad(format!("prefix length {len:?} is not a number")))?;
            if n > u32::from(max) {
                return Err(bad(format!("prefix length {n} exceeds {max}")));
            }
            u8::try_from(n).map_err(|_| bad(format!("prefix length {n} exceeds {max}")))?
        }
    };
    let net = IpNet::new(addr, len).map_err(|e| bad(e.to_string()))?;
    if net.network() != addr {
        return Err(bad(format!(
            "host bits are set (the network is {})",
            net.trunc()
        )));
    }
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len4)) = (v6.network().to_ipv4_mapped(), len.checked_sub(96)) {
            if let Ok(v4net) = Ipv4Net::new(v4, len4) {
                return Ok(IpNet::V4(v4net));
            }
        }
    }
    Ok(net)
}

/// `addr`, or its IPv4 address if it is IPv4-mapped (`::ffff:a.b.c.d`).
pub fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// A CIDR in a policy file (serialized as text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr(IpNet);

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("a CIDR or an IP address", |text| {
            parse_cidr(text).map(Cidr)
        }))
    }
}

/// What an egress or ingress rule matches. Empty lists mean "any" (the file format rejects
/// empty lists, so an empty list here always comes from an omitted key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMatch {
    pub(crate) protocol: Protocol,
    /// `to` (egress) or `from` (ingress).
    pub(crate) peers: Vec<IpNet>,
    pub(crate) except: Vec<IpNet>,
    /// `to_fqdn` (egress only).
    pub(crate) fqdn: Vec<NamePattern>,
    /// Remote port for egress, local port for ingress.
    pub(crate) ports: Vec<PortRange>,
}

impl FlowMatch {
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    pub fn peers(&self) -> &[IpNet] {
        &self.peers
    }
    pub fn except(&self) -> &[IpNet] {
        &self.except
    }
    pub fn fqdn(&self) -> &[NamePattern] {
        &self.fqdn
    }
    pub fn ports(&self) -> &[PortRange] {
        &self.ports
    }
}

/// What a listen rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenMatch {
    pub(crate) protocol: Protocol,
    pub(crate) ports: Vec<PortRange>,
}

impl ListenMatch {
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    pub fn ports(&self) -> &[PortRange] {
        &self.ports
    }
}

/// What a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Egress(FlowMatch),
    Ingress(FlowMatch),
    Dns(Vec<NamePattern>),
    Listen(ListenMatch),
}

impl RuleKind {
    /// The checks this rule takes part in.
    pub fn direction(&self) -> Direction {
        match self {
            RuleKind::Egress(_) => Direction::Egress,
            RuleKind::Ingress(_) => Direction::Ingress,
            RuleKind::Dns(_) => Direction::Dns,
            RuleKind::Listen(_) => Direction::Listen,
        }
    }
}

/// One validated rule. Rules of a [`Policy`](super::Policy) always have an id; a rule from
/// [`parse_rule`](super::parse_rule) may not, and gets one when it is added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub(crate) id: Option<RuleId>,
    pub(crate) kind: RuleKind,
    pub(crate) action: Action,
}

impl Rule {
    pub fn id(&self) -> Option<&RuleId> {
        self.id.as_ref()
    }
    pub fn kind(&self) -> &RuleKind {
        &self.kind
    }
    pub fn action(&self) -> Action {
        self.action
    }
}

// The file format. Leaf values validate themselves while they are read, so their errors
// carry their own line; `Rule::try_from_raw` checks what spans fields, and runs inside the
// rule's map visitor so that its errors carry the rule's line.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<RuleId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    egress: Option<RawEgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ingress: Option<RawIngress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns: Option<Vec<NamePattern>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen: Option<RawListen>,
    action: Action,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    #[serde(default, skip_serializing_if = "Protocol::is_any")]
    protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<Vec<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    except: Option<Vec<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_fqdn: Option<Vec<NamePattern>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<PortRange>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngress {
    #[serde(default, skip_serializing_if = "Protocol::is_any")]
    protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<Vec<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    except: Option<Vec<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<PortRange>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    #[serde(default, skip_serializing_if = "Protocol::is_any")]
    protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<PortRange>>,
}

/// A present list must not be empty: an empty list would silently mean "any".
fn non_empty<T>(list: Option<Vec<T>>, key: &str) -> Result<Vec<T>, String> {
    match list {
        Some(list) if list.is_empty() => Err(format!(
            "`{key}` is an empty list; omit `{key}` to match any"
        )),
        list => Ok(list.unwrap_or_default()),
    }
}

fn cidrs(list: Vec<Cidr>) -> Vec<IpNet> {
    list.into_iter().map(|c| c.0).collect()
}

fn optional<T: Clone, U>(list: &[T], f: impl Fn(T) -> U) -> Option<Vec<U>> {
    (!list.is_empty()).then(|| list.iter().cloned().map(f).collect())
}

fn flow_match(
    kind: &str,
    peer_key: &str,
    protocol: Protocol,
    peers: Option<Vec<Cidr>>,
    except: Option<Vec<Cidr>>,
    fqdn: Option<Vec<NamePattern>>,
    ports: Option<Vec<PortRange>>,
) -> Result<FlowMatch, String> {
    let peers = cidrs(non_empty(peers, &format!("{kind}.{peer_key}"))?);
    let except = cidrs(non_empty(except, &format!("{kind}.except"))?);
    let fqdn = non_empty(fqdn, &format!("{kind}.to_fqdn"))?;
    let ports = non_empty(ports, &format!("{kind}.ports"))?;
    for net in &except {
        if !peers.iter().any(|p| p.contains(net)) {
            return Err(format!(
                "{kind}.except: {net} is not inside any `{peer_key}` CIDR"
            ));
        }
    }
    if protocol == Protocol::Icmp && !ports.is_empty() {
        return Err(format!(
            "{kind}.ports: not allowed with protocol icmp (ICMP has no ports)"
        ));
    }
    Ok(FlowMatch {
        protocol,
        peers,
        except,
        fqdn,
        ports,
    })
}

impl Rule {
    fn try_from_raw(raw: RawRule) -> Result<Rule, String> {
        let kind = match (raw.egress, raw.ingress, raw.dns, raw.listen) {
            (Some(e), None, None, None) => RuleKind::Egress(flow_match(
                "egress", "to", e.protocol, e.to, e.except, e.to_fqdn, e.ports,
            )?),
            (None, Some(i), None, None) => RuleKind::Ingress(flow_match(
                "ingress", "from", i.protocol, i.from, i.except, None, i.ports,
            )?),
            (None, None, Some(names), None) => RuleKind::Dns(non_empty(Some(names), "dns")?),
            (None, None, None, Some(l)) => {
                if l.protocol == Protocol::Icmp {
                    return Err(
                        "listen.protocol: icmp has no ports to listen on (use tcp, udp or any)"
                            .to_string(),
                    );
                }
                RuleKind::Listen(ListenMatch {
                    protocol: l.protocol,
                    ports: non_empty(l.ports, "listen.ports")?,
                })
            }
            (e, i, d, l) => {
                let present: Vec<&str> = [
                    ("`egress`", e.is_some()),
                    ("`ingress`", i.is_some()),
                    ("`dns`", d.is_some()),
                    ("`listen`", l.is_some()),
                ]
                .into_iter()
                .filter_map(|(key, present)| present.then_some(key))
                .collect();
                let has = if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(" and ")
                };
                return Err(format!(
                    "a rule needs exactly one of `egress`, `ingress`, `dns` or `listen` (this one has {has})"
                ));
            }
        };
        Ok(Rule {
            id: raw.id,
            kind,
            action: raw.action,
        })
    }

    fn to_raw(&self) -> RawRule {
        let mut raw = RawRule {
            id: self.id.clone(),
            egress: None,
            ingress: None,
            dns: None,
            listen: None,
            action: self.action,
        };
        match &self.kind {
            RuleKind::Egress(m) => {
                raw.egress = Some(RawEgress {
                    protocol: m.protocol,
                    to: optional(&m.peers, Cidr),
                    except: optional(&m.except, Cidr),
                    to_fqdn: optional(&m.fqdn, |p| p),
                    ports: optional(&m.ports, |p| p),
                })
            }
            RuleKind::Ingress(m) => {
                raw.ingress = Some(RawIngress {
                    protocol: m.protocol,
                    from: optional(&m.peers, Cidr),
                    except: optional(&m.except, Cidr),
                    ports: optional(&m.ports, |p| p),
                })
            }
            RuleKind::Dns(names) => raw.dns = Some(names.clone()),
            RuleKind::Listen(m) => {
                raw.listen = Some(RawListen {
                    protocol: m.protocol,
                    ports: optional(&m.ports, |p| p),
                })
            }
        }
        raw
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_raw().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RuleVisitor { seen: None })
    }
}

/// Reads one rule as a map so that errors found after its fields are read still carry the
/// line of the rule; when `seen` is given, also rejects an id used by an earlier rule.
struct RuleVisitor<'a> {
    seen: Option<&'a HashMap<RuleId, usize>>,
}

impl<'de> Visitor<'de> for RuleVisitor<'_> {
    type Value = Rule;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a rule (a mapping with `action` and one of `egress`, `ingress`, `dns`, `listen`)",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Rule, A::Error> {
        let raw = RawRule::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let rule = Rule::try_from_raw(raw).map_err(de::Error::custom)?;
        if let (Some(seen), Some(id)) = (self.seen, &rule.id) {
            if let Some(first) = seen.get(id) {
                return Err(de::Error::custom(format!(
                    "duplicate rule id \"{id}\" (already used by rules[{first}])"
                )));
            }
        }
        Ok(rule)
    }
}

/// The `rules` list of a policy: rules in order, ids unique.
#[derive(Default)]
pub(crate) struct RuleList(pub(crate) Vec<Rule>);

impl<'de> Deserialize<'de> for RuleList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = RuleList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RuleList, A::Error> {
                let mut rules = Vec::new();
                let mut seen = HashMap::new();
                while let Some(rule) = seq.next_element_seed(RuleSeed { seen: &seen })? {
                    if let Some(id) = &rule.id {
                        seen.insert(id.clone(), rules.len());
                    }
                    rules.push(rule);
                }
                Ok(RuleList(rules))
            }
            /// `rules:` with nothing after it.
            fn visit_unit<E: de::Error>(self) -> Result<RuleList, E> {
                Ok(RuleList(Vec::new()))
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

struct RuleSeed<'a> {
    seen: &'a HashMap<RuleId, usize>,
}

impl<'de> DeserializeSeed<'de> for RuleSeed<'_> {
    type Value = Rule;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Rule, D::Error> {
        deserializer.deserialize_map(RuleVisitor {
            seen: Some(self.seen),
        })
    }
}

/// A visitor for values written as one string, parsed and validated inside the visitor so
/// that the deserializer attaches the value's own position to the error.
pub(crate) struct ParseVisitor<T, F> {
    expecting: &'static str,
    parse: F,
    _value: PhantomData<fn() -> T>,
}

impl<T, F: FnOnce(&str) -> Result<T, String>> ParseVisitor<T, F> {
    pub(crate) fn new(expecting: &'static str, parse: F) -> Self {
        ParseVisitor {
            expecting,
            parse,
            _value: PhantomData,
        }
    }
}

impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for ParseVisitor<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.0.0.0/8").expect("valid").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_cidr("192.168.1.5").expect("valid").to_string(),
            "192.168.1.5/32"
        );
        assert_eq!(
            parse_cidr("2001:db8::1").expect("valid").to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104")
                .expect("valid")
                .to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_cidr("10.0.0.0/33").expect_err("rejected"),
            "invalid CIDR \"10.0.0.0/33\": prefix length 33 exceeds 32"
        );
        assert!(parse_cidr("2001:db8::/129")
            .expect_err("rejected")
            .contains("exceeds 128"));
        assert!(parse_cidr("10.0.0.1/8")
            .expect_err("rejected")
            .contains("10.0.0.0/8"));
        assert!(parse_cidr("10.0.0/8")
            .expect_err("rejected")
            .contains("not an IPv4 or IPv6"));
        assert!(parse_cidr("10.0.0.0/x")
            .expect_err("rejected")
            .contains("not a number"));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("80").expect("valid"),
            PortRange::single(80).expect("valid")
        );
        let r = PortRange::parse("8000-8100").expect("valid");
        assert!(r.contains(8000) && r.contains(8100) && !r.contains(8101) && !r.contains(7999));
        assert_eq!(
            PortRange::parse("10-5").expect_err("rejected"),
            "invalid port range \"10-5\": 10 is greater than 5"
        );
        assert!(PortRange::parse("0")
            .expect_err("rejected")
            .contains("port 0"));
        assert!(PortRange::parse("0-10")
            .expect_err("rejected")
            .contains("port 0"));
        assert!(PortRange::parse("65536")
            .expect_err("rejected")
            .contains("out of range"));
        assert!(PortRange::parse("http").is_err());
    }

    #[test]
    fn rule_ids() {
        assert!(RuleId::new("web").is_ok());
        assert!(RuleId::new("0a-b_c.d").is_ok());
        assert!(RuleId::new(&"a".repeat(63)).is_ok());
        assert!(RuleId::new(&"a".repeat(64)).is_err());
        assert!(RuleId::new("").is_err());
        assert!(RuleId::new("-a").is_err());
        assert!(RuleId::new("Web").is_err());
        assert!(RuleId::new("a b").is_err());
        assert_eq!(RuleId::auto(3), "rule-3");
    }

    #[test]
    fn unmapping() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("valid address");
        assert_eq!(unmap(mapped), "10.0.0.1".parse::<IpAddr>().expect("valid"));
        let v6: IpAddr = "2001:db8::1".parse().expect("valid address");
        assert_eq!(unmap(v6), v6);
    }
}

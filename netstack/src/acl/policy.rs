//! A whole ACL policy (version 1): defaults, audit mode, DNS upstreams and the ordered
//! rules; reading it from YAML or JSON with errors that name the line and the rule,
//! writing it back, and editing its rule list.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::audit::AuditMode;
use super::rule::{ParseVisitor, Rule, RuleId, RuleList};

/// Largest policy text accepted (a file, an annotation or one rule).
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// The only policy format version this build reads and writes.
pub const VERSION: u64 = 1;

/// An error in a policy or in a change to one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a valid policy or rule: a syntax error, an unknown key, a bad value,
    /// or a rule that breaks a rule spanning fields.
    #[error("{}", join_invalid(.context, .location, .message))]
    Invalid {
        /// Where: `rules[2] (id "web")`, `rule` for a single rule, a key path such as
        /// `defaults.egress`, or empty for the document as a whole.
        context: String,
        /// The index of the rule in `rules`, if the error is inside one.
        rule: Option<usize>,
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("policy is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    /// Reading a policy file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The policy file `path` is invalid.
    #[error("{}: {source}", .path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<PolicyError>,
    },
    #[error("duplicate rule id {0:?}")]
    DuplicateId(String),
    #[error("no rule with id {0:?}")]
    UnknownId(String),
    #[error("cannot insert a rule at position {position}: the policy has {len} rules")]
    Position { position: usize, len: usize },
}

fn join_invalid(context: &str, location: &Option<(usize, usize)>, message: &str) -> String {
    let mut parts = Vec::with_capacity(3);
    if !context.is_empty() {
        parts.push(context.to_string());
    }
    if let Some((line, column)) = location {
        parts.push(format!("line {line} column {column}"));
    }
    parts.push(message.to_string());
    parts.join(": ")
}

/// What happens to a flow, name or port no rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

impl DefaultAction {
    pub fn allows(self) -> bool {
        self == DefaultAction::Allow
    }
}

/// The default of each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    pub egress: DefaultAction,
    pub ingress: DefaultAction,
    pub dns: DefaultAction,
    pub listen: DefaultAction,
}

/// A validated policy.
///
/// Invariants: every rule has an id and ids are unique; `next_auto` is the next `N` tried
/// for an automatic `rule-N` id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    defaults: Defaults,
    audit: AuditMode,
    dns_upstream: Vec<SocketAddr>,
    rules: Vec<Rule>,
    next_auto: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::allow_all()
    }
}

impl Policy {
    /// No rules, everything allowed, denies audited (so nothing is written).
    pub fn allow_all() -> Policy {
        Policy {
            defaults: Defaults::default(),
            audit: AuditMode::default(),
            dns_upstream: Vec::new(),
            rules: Vec::new(),
            next_auto: 1,
        }
    }

    /// Reads a policy from YAML (or JSON, which YAML reads too).
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        check_size(text)?;
        // JSON indented with tabs is not YAML; read it as the JSON it is.
        if text.contains('\t') && serde_json::from_str::<de::IgnoredAny>(text).is_ok() {
            return Policy::from_json(text);
        }
        Policy::parse(text)
    }

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy =
            serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, text, Within::Policy))?;
        Ok(Policy::from_raw(raw))
    }

    /// Reads a policy from JSON. The syntax is checked as strict JSON; the content is then
    /// read like YAML, so errors name the line, column and rule the same way.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        check_size(text)?;
        Policy::parse(&json_as_yaml(text)?)
    }

    /// Reads a policy file: JSON if its name ends in `.json`, else YAML (which reads JSON
    /// too). Errors start with the path.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let io_err = |source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_POLICY_BYTES as u64 + 1)
                    .read_to_string(&mut text)
            })
            .map_err(io_err)?;
        let in_file = |source| PolicyError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        if path.extension().is_some_and(|e| e == "json") {
            Policy::from_json(&text).map_err(in_file)
        } else {
            Policy::from_yaml(&text).map_err(in_file)
        }
    }

    /// The policy as YAML; [`Policy::from_yaml`] reads it back to an equal policy.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .unwrap_or_else(|e| format!("# cannot write the policy as YAML: {e}\n"))
    }

    /// The policy as pretty JSON; [`Policy::from_json`] reads it back to an equal policy.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The rules, in order; each has an id.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with `id`.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id.as_deref() == Some(id))
    }

    pub fn defaults(&self) -> Defaults {
        self.defaults
    }

    pub fn set_defaults(&mut self, defaults: Defaults) {
        self.defaults = defaults;
    }

    /// Where the DNS proxy forwards questions; empty means the proxy's own default.
    pub fn dns_upstream(&self) -> &[SocketAddr] {
        &self.dns_upstream
    }

    pub fn audit_mode(&self) -> AuditMode {
        self.audit
    }

    pub fn set_audit_mode(&mut self, mode: AuditMode) {
        self.audit = mode;
    }

    /// Inserts `rule` at `position` in the rule list (the end when `None`), giving it a
    /// `rule-N` id if it has none. Returns its id.
    pub fn insert(
        &mut self,
        mut rule: Rule,
        position: Option<usize>,
    ) -> Result<RuleId, PolicyError> {
        let position = position.unwrap_or(self.rules.len());
        if position > self.rules.len() {
            return Err(PolicyError::Position {
                position,
                len: self.rules.len(),
            });
        }
        let id = match rule.id.clone() {
            Some(id) if self.rule(&id).is_some() => {
                return Err(PolicyError::DuplicateId(id.to_string()))
            }
            Some(id) => id,
            None => loop {
                let id = RuleId::auto(self.next_auto);
                self.next_auto += 1;
                if self.rule(&id).is_none() {
                    break id;
                }
            },
        };
        rule.id = Some(id.clone());
        self.rules.insert(position, rule);
        Ok(id)
    }

    /// Removes the rule with `id` and returns it.
    pub fn remove(&mut self, id: &str) -> Result<Rule, PolicyError> {
        match self.rules.iter().position(|r| r.id.as_deref() == Some(id)) {
            Some(i) => Ok(self.rules.remove(i)),
            None => Err(PolicyError::UnknownId(id.to_string())),
        }
    }

    fn from_raw(raw: RawPolicy) -> Policy {
        let mut rules = raw.rules.0;
        let mut taken: HashSet<RuleId> = rules.iter().filter_map(|r| r.id.clone()).collect();
        let mut next_auto = rules.len() as u64 + 1;
        for (i, rule) in rules.iter_mut().enumerate() {
            if rule.id.is_none() {
                let mut id = RuleId::auto(i as u64 + 1);
                while taken.contains(&id) {
                    id = RuleId::auto(next_auto);
                    next_auto += 1;
                }
                taken.insert(id.clone());
                rule.id = Some(id);
            }
        }
        Policy {
            defaults: raw.defaults,
            audit: raw.audit,
            dns_upstream: raw.dns_upstream.into_iter().map(|u| u.0).collect(),
            rules,
            next_auto,
        }
    }
}

/// Parses one rule (a YAML or JSON mapping, e.g.
/// `{id: x, egress: {to: [1.2.3.4/32]}, action: deny}`), as `runsc acl add` sends it.
pub fn parse_rule(text: &str) -> Result<Rule, PolicyError> {
    check_size(text)?;
    let text = if text.trim_start().starts_with('{') {
        // JSON text may hold tabs that YAML does not take; see `json_as_yaml`.
        match json_as_yaml(text) {
            Ok(yaml) => yaml,
            Err(_) => text.to_string(), // flow-style YAML: `{id: x, …}`
        }
    } else {
        text.to_string()
    };
    serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(&e, &text, Within::Rule))
}

fn check_size(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            len: text.len(),
            max: MAX_POLICY_BYTES,
        });
    }
    Ok(())
}

/// Checks that `text` is strict JSON and returns it ready for the YAML reader. Tabs are
/// whitespace in JSON but not always in YAML; strict JSON has no raw tab inside a string,
/// so every tab can become a space, which keeps lines and columns.
fn json_as_yaml(text: &str) -> Result<String, PolicyError> {
    if let Err(err) = serde_json::from_str::<de::IgnoredAny>(text) {
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        return Err(PolicyError::Invalid {
            context: String::new(),
            rule: None,
            location: (err.line() > 0).then(|| (err.line(), err.column())),
            message,
        });
    }
    Ok(text.replace('\t', " "))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Within {
    Policy,
    Rule,
}

/// Turns a YAML error into [`PolicyError::Invalid`]: the location apart, the key path
/// reduced to the rule it is in (named by index and id, the location pins the key).
fn yaml_error(err: &serde_yaml_ng::Error, text: &str, within: Within) -> PolicyError {
    let location = err.location().map(|l| (l.line(), l.column()));
    let mut message = err.to_string();
    if let Some((line, column)) = location {
        let at = format!(" at line {line} column {column}");
        if let Some(i) = message.find(&at) {
            message.replace_range(i..i + at.len(), "");
        }
    }
    // serde_yaml_ng writes "path: message" when the error has a path.
    let mut path = String::new();
    if let Some((head, rest)) = message.split_once(": ") {
        let is_path = !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]?".contains(c));
        if is_path {
            path = head.to_string();
            message = rest.to_string();
        }
    }
    let (context, rule) = match within {
        Within::Policy => match rule_index(&path) {
            Some(index) => {
                let id =
                    document_value(text).and_then(|doc| rule_id(doc.get("rules")?.get(index)?));
                (name_rule(&format!("rules[{index}]"), id), Some(index))
            }
            None => (path, None),
        },
        Within::Rule => {
            let id = document_value(text).and_then(|doc| rule_id(&doc));
            (name_rule("rule", id), None)
        }
    };
    PolicyError::Invalid {
        context,
        rule,
        location,
        message,
    }
}

/// `N` if `path` is `rules[N]` or below it.
fn rule_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("rules[")?;
    rest[..rest.find(']')?].parse().ok()
}

fn document_value(text: &str) -> Option<serde_yaml_ng::Value> {
    serde_yaml_ng::from_str(text).ok()
}

fn rule_id(rule: &serde_yaml_ng::Value) -> Option<String> {
    match rule.get("id")? {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn name_rule(base: &str, id: Option<String>) -> String {
    match id {
        Some(id) => format!("{base} (id {id:?})"),
        None => base.to_string(),
    }
}

// The file format.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "version")]
    _version: Version,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    audit: AuditMode,
    #[serde(default)]
    dns_upstream: Vec<Upstream>,
    #[serde(default)]
    rules: RuleList,
}

/// The `version` key: only [`VERSION`] is accepted.
struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl Visitor<'_> for VersionVisitor {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "the policy format version ({VERSION})")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Version, E> {
                if v == VERSION {
                    Ok(Version)
                } else {
                    Err(E::custom(format!(
                        "unsupported policy version {v} (this build reads version {VERSION})"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Version, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "unsupported policy version {v} (this build reads version {VERSION})"
                    ))),
                }
            }
        }
        deserializer.deserialize_u64(VersionVisitor)
    }
}

/// An entry of `dns_upstream`: `ip:port`, `[v6]:port`, or a bare address (port 53).
struct Upstream(SocketAddr);

fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let bare = text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(text);
            let ip: IpAddr = bare.parse().map_err(|_| {
                format!("invalid DNS upstream {text:?}: expected ip, ip:port or [ipv6]:port")
            })?;
            SocketAddr::new(ip, 53)
        }
    };
    if addr.port() == 0 {
        return Err(format!("invalid DNS upstream {text:?}: port 0"));
    }
    Ok(Upstream(addr))
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new("ip:port", parse_upstream))
    }
}

#[derive(Serialize)]
struct PolicyOut<'a> {
    version: u64,
    defaults: &'a Defaults,
    audit: AuditMode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns_upstream: Vec<String>,
    rules: &'a [Rule],
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PolicyOut {
            version: VERSION,
            defaults: &self.defaults,
            audit: self.audit,
            dns_upstream: self.dns_upstream.iter().map(|a| a.to_string()).collect(),
            rules: &self.rules,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::rule::{Action, Direction, PortRange, Protocol, RuleKind};

    /// The example of `docs/acl.md`.
    pub(crate) const EXAMPLE: &str = r#"version: 1
defaults:
  egress: deny
  ingress: deny
  dns: allow
  listen: allow
audit: all
dns_upstream: ["10.0.0.1", "[2001:db8::53]:5353"]
rules:
  - id: web
    egress:
      protocol: tcp
      to: [10.0.0.0/8, "2001:db8::/32", 192.168.1.5]
      except: [10.1.0.0/16]
      to_fqdn: ["api.example.test", "*.example.test"]
      ports: [80, "8000-8100"]
    action: allow
  - id: in-http
    ingress:
      protocol: tcp
      from: [0.0.0.0/0]
      ports: [8080]
    action: allow
  - id: no-evil
    dns: ["*.evil.test", "evil.test"]
    action: deny
  - id: http-listen
    listen: { protocol: tcp, ports: [8080, "3000-3999"] }
    action: allow
"#;

    fn err(text: &str) -> String {
        Policy::from_yaml(text).expect_err("rejected").to_string()
    }

    /// A policy whose only rule is `rule` (indented as a list item).
    fn one_rule(rule: &str) -> String {
        format!("version: 1\nrules:\n{rule}")
    }

    #[test]
    fn parses_the_example() {
        let p = Policy::from_yaml(EXAMPLE).expect("valid policy");
        assert_eq!(p.defaults().egress, DefaultAction::Deny);
        assert_eq!(p.defaults().ingress, DefaultAction::Deny);
        assert_eq!(p.defaults().dns, DefaultAction::Allow);
        assert_eq!(p.audit_mode(), AuditMode::All);
        assert_eq!(
            p.dns_upstream(),
            [
                "10.0.0.1:53".parse().expect("valid address"),
                "[2001:db8::53]:5353".parse().expect("valid address")
            ]
        );
        let ids: Vec<&str> = p
            .rules()
            .iter()
            .map(|r| r.id().expect("has an id").as_str())
            .collect();
        assert_eq!(ids, ["web", "in-http", "no-evil", "http-listen"]);
        let RuleKind::Egress(web) = p.rules()[0].kind() else {
            panic!("not egress")
        };
        assert_eq!(web.protocol(), Protocol::Tcp);
        assert_eq!(web.peers().len(), 3);
        assert_eq!(web.peers()[2].to_string(), "192.168.1.5/32");
        assert_eq!(web.except()[0].to_string(), "10.1.0.0/16");
        assert_eq!(web.fqdn().len(), 2);
        assert_eq!(
            web.ports(),
            [
                PortRange::single(80).expect("valid"),
                PortRange::new(8000, 8100).expect("valid")
            ]
        );
        assert_eq!(p.rules()[0].action(), Action::Allow);
        assert_eq!(p.rules()[1].kind().direction(), Direction::Ingress);
        assert_eq!(p.rules()[2].action(), Action::Deny);
        assert_eq!(p.rules()[3].kind().direction(), Direction::Listen);
    }

    #[test]
    fn defaults_when_omitted() {
        let p = Policy::from_yaml("version: 1\n").expect("valid policy");
        assert_eq!(p, Policy::allow_all());
        assert_eq!(p.audit_mode(), AuditMode::Denies);
        assert!(Policy::from_yaml("version: 1\nrules:\n")
            .expect("valid policy")
            .rules()
            .is_empty());
    }

    #[test]
    fn leaf_errors_name_rule_line_and_column() {
        let text =
            one_rule("  - id: web\n    egress:\n      to: [10.0.0.0/33]\n    action: allow\n");
        assert_eq!(
            err(&text),
            "rules[0] (id \"web\"): line 5 column 12: invalid CIDR \"10.0.0.0/33\": prefix length 33 exceeds 32"
        );
        for (value, message) in [
            (
                "\"10-5\"",
                "invalid port range \"10-5\": 10 is greater than 5",
            ),
            ("0", "port 0 is not valid (ports are 1-65535)"),
            ("70000", "port 70000 is out of range (ports are 1-65535)"),
            ("-1", "port -1 is out of range (ports are 1-65535)"),
            ("http", "invalid port \"http\""),
        ] {
            let text = one_rule(&format!(
                "  - action: deny\n    listen:\n      ports: [22, {value}]\n"
            ));
            let e = err(&text);
            assert!(
                e.starts_with("rules[0]: line 5 column 19: ") && e.contains(message),
                "{value}: {e}"
            );
        }
        let text = one_rule("  - id: x\n    dns: [\"ok.test\", \"a.*.test\"]\n    action: deny\n");
        let e = err(&text);
        assert!(
            e.starts_with(
                "rules[0] (id \"x\"): line 4 column 22: invalid name pattern \"a.*.test\""
            ),
            "{e}"
        );
        let text = one_rule("  - id: Web\n    dns: [a.test]\n    action: deny\n");
        let e = err(&text);
        assert!(
            e.starts_with("rules[0] (id \"Web\"): line 3 column 9: invalid rule id \"Web\""),
            "{e}"
        );
        let text = one_rule("  - dns: [a.test]\n    action: maybe\n");
        let e = err(&text);
        assert!(
            e.starts_with("rules[0]: line 4 column 13: unknown variant `maybe`"),
            "{e}"
        );
        let e = err("version: 1\ndefaults:\n  egress: audit\n");
        assert!(
            e.starts_with("defaults.egress: line 3 column 11: unknown variant `audit`"),
            "{e}"
        );
        let e = err("version: 1\ndns_upstream: [\"10.0.0.1:0\"]\n");
        assert!(
            e.starts_with("dns_upstream[0]: line 2 column 16: invalid DNS upstream"),
            "{e}"
        );
        let e = err("version: 1\naudit: sometimes\n");
        assert!(
            e.starts_with("audit: line 2 column 8: unknown variant `sometimes`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = err("version: 1\nrule: []\n");
        assert!(
            e.starts_with("line 2 column 1: unknown field `rule`"),
            "{e}"
        );
        let text = one_rule("  - id: a\n    egress: {prots: [80]}\n    action: deny\n");
        let e = err(&text);
        assert!(
            e.starts_with("rules[0] (id \"a\"): line 4 column 14: unknown field `prots`"),
            "{e}"
        );
        let text = one_rule("  - id: a\n    dns: [a.test]\n    actions: deny\n");
        let e = err(&text);
        assert!(
            e.starts_with("rules[0] (id \"a\"): line 5 column 5: unknown field `actions`"),
            "{e}"
        );
    }

    #[test]
    fn cross_field_errors_name_the_rule() {
        let cases = [
            (
                "  - id: both\n    egress: {}\n    dns: [a.test]\n    action: deny\n",
                "rules[0] (id \"both\"): line 3 column 5: a rule needs exactly one of `egress`, `ingress`, `dns` or `listen` (this one has `egress` and `dns`)",
            ),
            (
                "  - id: none\n    action: deny\n",
                "rules[0] (id \"none\"): line 3 column 5: a rule needs exactly one of `egress`, `ingress`, `dns` or `listen` (this one has none)",
            ),
            (
                "  - id: ex\n    egress: {to: [10.0.0.0/8], except: [11.0.0.0/16]}\n    action: deny\n",
                "rules[0] (id \"ex\"): line 3 column 5: egress.except: 11.0.0.0/16 is not inside any `to` CIDR",
            ),
            (
                "  - id: ex\n    ingress: {except: [11.0.0.0/16]}\n    action: deny\n",
                "rules[0] (id \"ex\"): line 3 column 5: ingress.except: 11.0.0.0/16 is not inside any `from` CIDR",
            ),
            (
                "  - id: ping\n    egress: {protocol: icmp, ports: [1]}\n    action: deny\n",
                "rules[0] (id \"ping\"): line 3 column 5: egress.ports: not allowed with protocol icmp (ICMP has no ports)",
            ),
            (
                "  - id: empty\n    egress: {to: []}\n    action: deny\n",
                "rules[0] (id \"empty\"): line 3 column 5: `egress.to` is an empty list; omit `egress.to` to match any",
            ),
            (
                "  - id: l\n    listen: {protocol: icmp}\n    action: deny\n",
                "rules[0] (id \"l\"): line 3 column 5: listen.protocol: icmp has no ports to listen on (use tcp, udp or any)",
            ),
            (
                "  - id: noaction\n    dns: [a.test]\n",
                "rules[0] (id \"noaction\"): line 3 column 5: missing field `action`",
            ),
        ];
        for (rule, want) in cases {
            assert_eq!(err(&one_rule(rule)), want);
        }
    }

    #[test]
    fn duplicate_ids() {
        let text = one_rule(
            "  - id: a\n    dns: [a.test]\n    action: deny\n  - dns: [b.test]\n    action: deny\n  - id: a\n    dns: [c.test]\n    action: deny\n",
        );
        assert_eq!(
            err(&text),
            "rules[2] (id \"a\"): line 8 column 5: duplicate rule id \"a\" (already used by rules[0])"
        );
    }

    #[test]
    fn version_errors() {
        assert_eq!(
            err("version: 2\n"),
            "version: line 1 column 10: unsupported policy version 2 (this build reads version 1)"
        );
        assert_eq!(
            err("rules: []\n"),
            "line 1 column 1: missing field `version`"
        );
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e =
            Policy::from_yaml("version: 1\nrules:\n  - id: a\n\t- id: b\n").expect_err("rejected");
        let PolicyError::Invalid { location, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(location.map(|l| l.0), Some(4), "{e}");
        assert!(e.to_string().starts_with("line 4 column"), "{e}");
    }

    #[test]
    fn json_input() {
        let json = "{\n\t\"version\": 1,\n\t\"defaults\": {\"egress\": \"deny\"},\n\t\"rules\": [\n\t\t{\"id\": \"web\", \"egress\": {\"protocol\": \"tcp\", \"to\": [\"10.0.0.0/8\"], \"ports\": [443, \"8000-8100\"]}, \"action\": \"allow\"},\n\t\t{\"dns\": [\"*.evil.test\"], \"action\": \"deny\"}\n\t]\n}\n";
        for p in [
            Policy::from_json(json).expect("valid policy"),
            Policy::from_yaml(json).expect("valid policy"),
        ] {
            assert_eq!(p.defaults().egress, DefaultAction::Deny);
            assert_eq!(p.rules().len(), 2);
            assert_eq!(p.rules()[1].id().expect("has an id"), "rule-2");
        }
        let bad = json.replace("10.0.0.0/8", "10.0.0.0/99");
        let e = Policy::from_json(&bad).expect_err("rejected").to_string();
        assert!(
            e.starts_with("rules[0] (id \"web\"): line 5 column 54: invalid CIDR"),
            "{e}"
        );
        let e = Policy::from_json("{\"version\": 1,}")
            .expect_err("rejected")
            .to_string();
        assert_eq!(e, "line 1 column 15: key must be a string");
    }

    #[test]
    fn round_trips() {
        let p = Policy::from_yaml(EXAMPLE).expect("valid policy");
        let yaml = p.to_yaml();
        assert_eq!(Policy::from_yaml(&yaml).expect("valid policy"), p, "{yaml}");
        assert_eq!(Policy::from_json(&p.to_json()).expect("valid policy"), p);
        let auto = Policy::from_yaml(&one_rule("  - dns: [a.test]\n    action: deny\n"))
            .expect("valid policy");
        let again = Policy::from_yaml(&auto.to_yaml()).expect("valid policy");
        assert_eq!(again.rules()[0].id().expect("has an id"), "rule-1");
        assert_eq!(
            Policy::from_yaml(&Policy::allow_all().to_yaml()).expect("valid policy"),
            Policy::allow_all()
        );
    }

    #[test]
    fn automatic_ids_avoid_explicit_ones() {
        let text = one_rule(
            "  - dns: [a.test]\n    action: deny\n  - id: rule-1\n    dns: [b.test]\n    action: deny\n  - dns: [c.test]\n    action: deny\n",
        );
        let mut p = Policy::from_yaml(&text).expect("valid policy");
        let ids: Vec<&str> = p
            .rules()
            .iter()
            .map(|r| r.id().expect("has an id").as_str())
            .collect();
        assert_eq!(ids, ["rule-4", "rule-1", "rule-3"]);
        let rule = parse_rule("{dns: [d.test], action: deny}").expect("valid rule");
        assert_eq!(p.insert(rule, None).expect("valid"), "rule-5");
    }

    #[test]
    fn insert_and_remove() {
        let mut p = Policy::from_yaml(EXAMPLE).expect("valid policy");
        let rule = parse_rule("{id: first, egress: {to: [1.2.3.4/32]}, action: deny}")
            .expect("valid rule");
        assert_eq!(p.insert(rule.clone(), Some(0)).expect("valid"), "first");
        assert_eq!(p.rules()[0].id().expect("has an id"), "first");
        assert!(
            matches!(p.insert(rule.clone(), None), Err(PolicyError::DuplicateId(id)) if id == "first")
        );
        assert!(matches!(
            p.insert(
                parse_rule("{dns: [a.test], action: deny}").expect("valid rule"),
                Some(99)
            ),
            Err(PolicyError::Position {
                position: 99,
                len: 5
            })
        ));
        assert_eq!(p.remove("first").expect("valid"), rule);
        assert_eq!(p, Policy::from_yaml(EXAMPLE).expect("valid policy"));
        assert_eq!(
            p.remove("first").expect_err("rejected").to_string(),
            "no rule with id \"first\""
        );
    }

    #[test]
    fn single_rules() {
        let rule =
            parse_rule("{id: x, egress: {to: [1.2.3.4/32]}, action: deny}").expect("valid rule");
        assert_eq!(rule.id().expect("has an id"), "x");
        let json = parse_rule("{\"egress\": {\"to\": [\"1.2.3.4\"]},\t\"action\": \"deny\"}")
            .expect("valid rule");
        assert_eq!(json.id(), None);
        assert_eq!(json.kind(), rule.kind());
        let e =
            parse_rule("{id: x, egress: {to: [1.2.3.4/40]}, action: deny}").expect_err("rejected");
        assert_eq!(
            e.to_string(),
            "rule (id \"x\"): line 1 column 23: invalid CIDR \"1.2.3.4/40\": prefix length 40 exceeds 32"
        );
        let e = parse_rule("action: deny\n")
            .expect_err("rejected")
            .to_string();
        assert!(
            e.starts_with("rule: line 1 column 1: a rule needs exactly one of"),
            "{e}"
        );
    }

    #[test]
    fn load_prefixes_the_path() {
        let dir = std::env::temp_dir().join(format!("acl-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("file system");
        let path = dir.join("policy.yaml");
        std::fs::write(&path, EXAMPLE.replace("192.168.1.5", "10.0.0.0/33")).expect("file system");
        let e = Policy::load(&path).expect_err("rejected").to_string();
        assert_eq!(
            e,
            format!(
                "{}: rules[0] (id \"web\"): line 13 column 41: invalid CIDR \"10.0.0.0/33\": prefix length 33 exceeds 32",
                path.display()
            )
        );
        std::fs::write(&path, EXAMPLE).expect("file system");
        assert_eq!(
            Policy::load(&path).expect("valid policy"),
            Policy::from_yaml(EXAMPLE).expect("valid policy")
        );
        let json = dir.join("policy.json");
        std::fs::write(
            &json,
            Policy::from_yaml(EXAMPLE).expect("file system").to_json(),
        )
        .expect("file system");
        assert_eq!(
            Policy::load(&json).expect("valid policy"),
            Policy::from_yaml(EXAMPLE).expect("valid policy")
        );
        let missing = dir.join("missing.yaml");
        let e = Policy::load(&missing).expect_err("rejected");
        assert!(matches!(e, PolicyError::Io { .. }), "{e}");
        std::fs::remove_dir_all(&dir).expect("file system");
    }

    #[test]
    fn size_is_capped() {
        let big = format!("version: 1\n#{}\n", "x".repeat(MAX_POLICY_BYTES));
        assert!(matches!(
            Policy::from_yaml(&big),
            Err(PolicyError::TooLarge { .. })
        ));
    }
}

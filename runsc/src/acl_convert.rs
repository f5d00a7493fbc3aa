//! ACL policies and rules between netstack's types and the control API's messages.
//!
//! Towards netstack, a message is first written as the documented policy format
//! (docs/acl.md, as JSON) and then read by netstack's own parser, so a policy that
//! arrives over the control socket is checked exactly as one read from a file, with the
//! same error messages. Towards messages, the typed accessors are read.

use netstack::acl::{
    AuditMode, DefaultAction, Policy, PolicyError, PortRange, Protocol, Rule, RuleKind,
};
use serde_json::{json, Map, Value};

use nanovisor_proto::control::{
    acl_rule, AclDefaults, AclPolicy, AclRule, Action as ProtoAction, AuditMode as ProtoAuditMode,
    Direction as ProtoDirection, DnsRule, FlowRule, ListenRule, PortRange as ProtoPortRange,
    Protocol as ProtoProtocol,
};

/// The policy format version messages carry.
const VERSION: u32 = 1;

fn invalid(context: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        context: context.to_string(),
        rule: None,
        location: None,
        message: message.into(),
    }
}

fn action_to_proto(action: netstack::acl::Action) -> i32 {
    (match action {
        netstack::acl::Action::Allow => ProtoAction::Allow,
        netstack::acl::Action::Deny => ProtoAction::Deny,
        netstack::acl::Action::Audit => ProtoAction::Audit,
    }) as i32
}

fn default_to_proto(action: DefaultAction) -> i32 {
    (match action {
        DefaultAction::Allow => ProtoAction::Allow,
        DefaultAction::Deny => ProtoAction::Deny,
    }) as i32
}

fn protocol_to_proto(protocol: Protocol) -> i32 {
    (match protocol {
        Protocol::Tcp => ProtoProtocol::Tcp,
        Protocol::Udp => ProtoProtocol::Udp,
        Protocol::Icmp => ProtoProtocol::Icmp,
        Protocol::Any => ProtoProtocol::Any,
    }) as i32
}

fn ports_to_proto(ports: &[PortRange]) -> Vec<ProtoPortRange> {
    ports
        .iter()
        .map(|p| ProtoPortRange {
            first: u32::from(p.lo()),
            last: u32::from(p.hi()),
        })
        .collect()
}

/// A rule as a message.
pub fn rule_to_proto(rule: &Rule) -> AclRule {
    let strings = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect();
    let flow = |direction: ProtoDirection, m: &netstack::acl::rule::FlowMatch| FlowRule {
        direction: direction as i32,
        protocol: protocol_to_proto(m.protocol()),
        cidrs: strings(m.peers()),
        except: strings(m.except()),
        fqdns: m.fqdn().iter().map(ToString::to_string).collect(),
        ports: ports_to_proto(m.ports()),
    };
    let kind = match rule.kind() {
        RuleKind::Egress(m) => acl_rule::Kind::Flow(flow(ProtoDirection::Egress, m)),
        RuleKind::Ingress(m) => acl_rule::Kind::Flow(flow(ProtoDirection::Ingress, m)),
        RuleKind::Dns(patterns) => acl_rule::Kind::Dns(DnsRule {
            patterns: patterns.iter().map(ToString::to_string).collect(),
        }),
        RuleKind::Listen(m) => acl_rule::Kind::Listen(ListenRule {
            protocol: protocol_to_proto(m.protocol()),
            ports: ports_to_proto(m.ports()),
        }),
    };
    AclRule {
        id: rule.id().map(|id| id.to_string()).unwrap_or_default(),
        action: action_to_proto(rule.action()),
        kind: Some(kind),
    }
}

/// A policy as a message.
pub fn policy_to_proto(policy: &Policy) -> AclPolicy {
    let d = policy.defaults();
    AclPolicy {
        version: VERSION,
        defaults: Some(AclDefaults {
            egress: default_to_proto(d.egress),
            ingress: default_to_proto(d.ingress),
            dns: default_to_proto(d.dns),
            listen: default_to_proto(d.listen),
        }),
        audit: (match policy.audit_mode() {
            AuditMode::Off => ProtoAuditMode::AuditOff,
            AuditMode::Denies => ProtoAuditMode::AuditDenies,
            AuditMode::All => ProtoAuditMode::AuditAll,
        }) as i32,
        dns_upstream: policy
            .dns_upstream()
            .iter()
            .map(ToString::to_string)
            .collect(),
        rules: policy.rules().iter().map(rule_to_proto).collect(),
    }
}

/// The word for an action; `None` when unset (the key is then left out).
fn action_word(action: i32, context: &str) -> Result<Option<&'static str>, PolicyError> {
    match ProtoAction::try_from(action) {
        Ok(ProtoAction::Unspecified) => Ok(None),
        Ok(ProtoAction::Allow) => Ok(Some("allow")),
        Ok(ProtoAction::Deny) => Ok(Some("deny")),
        Ok(ProtoAction::Audit) => Ok(Some("audit")),
        Err(_) => Err(invalid(context, format!("unknown action {action}"))),
    }
}

fn protocol_word(protocol: i32, context: &str) -> Result<Option<&'static str>, PolicyError> {
    match ProtoProtocol::try_from(protocol) {
        Ok(ProtoProtocol::Any) => Ok(None),
        Ok(ProtoProtocol::Tcp) => Ok(Some("tcp")),
        Ok(ProtoProtocol::Udp) => Ok(Some("udp")),
        Ok(ProtoProtocol::Icmp) => Ok(Some("icmp")),
        Err(_) => Err(invalid(context, format!("unknown protocol {protocol}"))),
    }
}

fn ports_json(ports: &[ProtoPortRange]) -> Value {
    ports
        .iter()
        .map(|p| {
            if p.first == p.last {
                json!(p.first)
            } else {
                json!(format!("{}-{}", p.first, p.last))
            }
        })
        .collect()
}

/// Puts `key: list` in `map` unless the list is empty (an omitted key means "any").
fn put_list(map: &mut Map<String, Value>, key: &str, list: Value) {
    if list.as_array().is_some_and(|a| !a.is_empty()) {
        map.insert(key.to_string(), list);
    }
}

/// A rule message in the documented format.
fn rule_json(rule: &AclRule, context: &str) -> Result<Value, PolicyError> {
    let mut map = Map::new();
    if !rule.id.is_empty() {
        map.insert("id".into(), json!(rule.id));
    }
    match &rule.kind {
        Some(acl_rule::Kind::Flow(f)) => {
            let mut m = Map::new();
            if let Some(p) = protocol_word(f.protocol, context)? {
                m.insert("protocol".into(), json!(p));
            }
            let key = match ProtoDirection::try_from(f.direction) {
                Ok(ProtoDirection::Egress) => {
                    put_list(&mut m, "to", json!(f.cidrs));
                    "egress"
                }
                Ok(ProtoDirection::Ingress) => {
                    put_list(&mut m, "from", json!(f.cidrs));
                    "ingress"
                }
                _ => {
                    return Err(invalid(
                        context,
                        format!(
                            "a flow rule needs direction egress or ingress (got {})",
                            f.direction
                        ),
                    ))
                }
            };
            put_list(&mut m, "except", json!(f.except));
            // An ingress rule with names is refused by the parser (`to_fqdn` is egress only).
            put_list(&mut m, "to_fqdn", json!(f.fqdns));
            put_list(&mut m, "ports", ports_json(&f.ports));
            map.insert(key.into(), Value::Object(m));
        }
        Some(acl_rule::Kind::Dns(d)) => {
            map.insert("dns".into(), json!(d.patterns));
        }
        Some(acl_rule::Kind::Listen(l)) => {
            let mut m = Map::new();
            if let Some(p) = protocol_word(l.protocol, context)? {
                m.insert("protocol".into(), json!(p));
            }
            put_list(&mut m, "ports", ports_json(&l.ports));
            map.insert("listen".into(), Value::Object(m));
        }
        // No kind: the parser says a rule needs one.
        None => {}
    }
    if let Some(a) = action_word(rule.action, context)? {
        map.insert("action".into(), json!(a));
    }
    Ok(Value::Object(map))
}

/// A rule message as a checked rule (as `runsc acl add` would parse it).
pub fn rule_from_proto(rule: &AclRule) -> Result<Rule, PolicyError> {
    let text = rule_json(rule, "rule")?.to_string();
    netstack::acl::parse_rule(&text)
}

/// A policy message as a checked policy (as if read from a file).
pub fn policy_from_proto(policy: &AclPolicy) -> Result<Policy, PolicyError> {
    let mut map = Map::new();
    // proto3 has no "unset" for scalars: 0 is the current version.
    let version = if policy.version == 0 {
        VERSION
    } else {
        policy.version
    };
    map.insert("version".into(), json!(version));
    if let Some(d) = &policy.defaults {
        let mut m = Map::new();
        for (key, action) in [
            ("egress", d.egress),
            ("ingress", d.ingress),
            ("dns", d.dns),
            ("listen", d.listen),
        ] {
            if let Some(a) = action_word(action, &format!("defaults.{key}"))? {
                m.insert(key.into(), json!(a));
            }
        }
        map.insert("defaults".into(), Value::Object(m));
    }
    let audit = match ProtoAuditMode::try_from(policy.audit) {
        Ok(ProtoAuditMode::Unspecified) => None,
        Ok(ProtoAuditMode::AuditOff) => Some("off"),
        Ok(ProtoAuditMode::AuditDenies) => Some("denies"),
        Ok(ProtoAuditMode::AuditAll) => Some("all"),
        Err(_) => {
            return Err(invalid(
                "audit",
                format!("unknown audit mode {}", policy.audit),
            ))
        }
    };
    if let Some(a) = audit {
        map.insert("audit".into(), json!(a));
    }
    put_list(&mut map, "dns_upstream", json!(policy.dns_upstream));
    let rules = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule_json(r, &format!("rules[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    map.insert("rules".into(), Value::Array(rules));
    let text = serde_json::to_string_pretty(&Value::Object(map))
        .map_err(|e| invalid("", e.to_string()))?;
    Policy::from_json(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
version: 1
defaults:
  egress: deny
  ingress: deny
  dns: allow
  listen: allow
audit: all
dns_upstream: ["10.0.0.1:53", "[2001:db8::1]:5353"]
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
    action: audit
  - dns: ["*.evil.test", "evil.test"]
    action: deny
  - id: http-listen
    listen: { protocol: tcp, ports: [8080, "3000-3999"] }
    action: allow
  - egress: {}
    action: deny
"#;

    #[test]
    fn policies_round_trip() {
        let policy = Policy::from_yaml(EXAMPLE).expect("valid policy");
        let msg = policy_to_proto(&policy);
        assert_eq!(msg.version, 1);
        assert_eq!(msg.rules.len(), 5);
        assert_eq!(msg.rules[2].id, "rule-3", "automatic ids travel");
        assert_eq!(msg.audit, ProtoAuditMode::AuditAll as i32);
        assert_eq!(msg.dns_upstream, ["10.0.0.1:53", "[2001:db8::1]:5353"]);
        let back = policy_from_proto(&msg).expect("valid message");
        assert_eq!(back, policy);
        assert_eq!(policy_to_proto(&back), msg);
    }

    #[test]
    fn allow_all_round_trips() {
        let policy = Policy::allow_all();
        assert_eq!(
            policy_from_proto(&policy_to_proto(&policy)).expect("valid"),
            policy
        );
        // An empty message is the allow-all policy too.
        assert_eq!(
            policy_from_proto(&AclPolicy::default()).expect("valid"),
            policy
        );
    }

    #[test]
    fn rules_round_trip() {
        for text in [
            "{id: x, egress: {to: [1.2.3.4/32], ports: [443]}, action: deny}",
            "{egress: {protocol: icmp}, action: allow}",
            "{ingress: {protocol: udp, from: [10.0.0.0/8], except: [10.1.0.0/16]}, action: audit}",
            "{dns: ['*'], action: deny}",
            "{listen: {}, action: allow}",
        ] {
            let rule = netstack::acl::parse_rule(text).expect(text);
            let msg = rule_to_proto(&rule);
            assert_eq!(rule_from_proto(&msg).expect(text), rule, "{text}");
        }
        let msg = rule_to_proto(
            &netstack::acl::parse_rule("{dns: [a.test], action: deny}").expect("valid"),
        );
        assert_eq!(msg.id, "", "no id: the sandbox assigns one");
    }

    #[test]
    fn bad_messages_are_refused_with_the_parsers_words() {
        let rule = |kind, action| AclRule {
            id: "r".into(),
            action: action as i32,
            kind: Some(kind),
        };
        let flow = |direction: ProtoDirection, cidrs: &[&str]| {
            acl_rule::Kind::Flow(FlowRule {
                direction: direction as i32,
                cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
        };
        let e = rule_from_proto(&rule(
            flow(ProtoDirection::Egress, &["10.0.0.0/33"]),
            ProtoAction::Deny,
        ))
        .expect_err("refused")
        .to_string();
        assert!(e.contains("invalid CIDR \"10.0.0.0/33\""), "{e}");
        let e = rule_from_proto(&rule(
            flow(ProtoDirection::Unspecified, &[]),
            ProtoAction::Deny,
        ))
        .expect_err("refused")
        .to_string();
        assert!(e.contains("direction"), "{e}");
        let e = rule_from_proto(&rule(
            flow(ProtoDirection::Egress, &[]),
            ProtoAction::Unspecified,
        ))
        .expect_err("refused")
        .to_string();
        assert!(e.contains("action"), "{e}");
        let mut ingress_names = rule(flow(ProtoDirection::Ingress, &[]), ProtoAction::Allow);
        if let Some(acl_rule::Kind::Flow(f)) = &mut ingress_names.kind {
            f.fqdns = vec!["a.test".into()];
        }
        let e = rule_from_proto(&ingress_names)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("to_fqdn"), "{e}");
        let no_kind = AclRule {
            id: "r".into(),
            action: ProtoAction::Deny as i32,
            kind: None,
        };
        let e = rule_from_proto(&no_kind).expect_err("refused").to_string();
        assert!(e.contains("exactly one of"), "{e}");
        let ports = rule(
            acl_rule::Kind::Listen(ListenRule {
                protocol: 0,
                ports: vec![ProtoPortRange { first: 10, last: 5 }],
            }),
            ProtoAction::Allow,
        );
        let e = rule_from_proto(&ports).expect_err("refused").to_string();
        assert!(e.contains("invalid port range \"10-5\""), "{e}");

        let mut policy = policy_to_proto(&Policy::allow_all());
        policy.version = 2;
        let e = policy_from_proto(&policy).expect_err("refused").to_string();
        assert!(e.contains("unsupported policy version 2"), "{e}");
        let mut policy = policy_to_proto(&Policy::allow_all());
        if let Some(d) = &mut policy.defaults {
            d.egress = ProtoAction::Audit as i32;
        }
        let e = policy_from_proto(&policy).expect_err("refused").to_string();
        assert!(e.contains("defaults.egress"), "{e}");
        let mut policy = policy_to_proto(&Policy::allow_all());
        policy.rules = vec![
            rule(flow(ProtoDirection::Egress, &[]), ProtoAction::Deny),
            rule(flow(ProtoDirection::Egress, &[]), ProtoAction::Deny),
        ];
        let e = policy_from_proto(&policy).expect_err("refused").to_string();
        assert!(e.contains("duplicate rule id \"r\""), "{e}");
    }
}

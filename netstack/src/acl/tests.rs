//! Tests of the live engine: matching, defaults, learned names, audit lines and live changes.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// An audit sink the test can read back.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    /// Every line, parsed; clears the buffer.
    fn take(&self) -> Vec<Value> {
        let data = std::mem::take(&mut *self.0.lock().expect("not poisoned"));
        let text = String::from_utf8(data).expect("UTF-8");
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

fn acl(yaml: &str) -> (Acl, Buf) {
    let buf = Buf::default();
    let policy = Policy::from_yaml(yaml).expect("valid policy");
    (
        Acl::new(policy, AuditLog::to_writer("sb1", Box::new(buf.clone()))),
        buf,
    )
}

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("valid address")
}

const LOCAL: &str = "10.0.0.2:40000";

fn egress(acl: &Acl, proto: Protocol, remote: &str) -> Verdict {
    acl.check_egress(proto, sa(LOCAL), sa(remote))
}

fn rule_of(v: &Verdict) -> Option<&str> {
    v.rule.as_deref()
}

#[test]
fn first_match_wins_in_order() {
    let (acl, _) = acl("version: 1
rules:
  - id: deny-one
    egress: {to: [10.0.0.5]}
    action: deny
  - id: allow-net
    egress: {to: [10.0.0.0/8]}
    action: allow
  - id: deny-net
    egress: {to: [10.0.0.0/8]}
    action: deny
");
    let v = egress(&acl, Protocol::Tcp, "10.0.0.5:80");
    assert!(!v.allowed);
    assert_eq!(rule_of(&v), Some("deny-one"));
    let v = egress(&acl, Protocol::Tcp, "10.0.0.6:80");
    assert!(v.allowed);
    assert_eq!(rule_of(&v), Some("allow-net"));
}

#[test]
fn defaults_per_direction() {
    let (acl, _) = acl("version: 1
defaults: {egress: deny, ingress: allow, dns: deny, listen: deny}
rules:
  - id: dns-ok
    dns: [ok.test]
    action: allow
");
    let v = egress(&acl, Protocol::Udp, "8.8.8.8:53");
    assert_eq!(
        v,
        Verdict {
            allowed: false,
            rule: None
        }
    );
    assert!(
        acl.check_ingress(Protocol::Tcp, sa("10.0.0.2:80"), sa("1.2.3.4:5555"))
            .allowed
    );
    assert!(!acl.check_listen(Protocol::Tcp, sa("0.0.0.0:80")).allowed);
    assert!(!acl.check_dns("other.test", "A").allowed);
    let v = acl.check_dns("ok.test", "A");
    assert!(v.allowed);
    assert_eq!(rule_of(&v), Some("dns-ok"));
    // Only rules of the kind checked take part: the dns rule does not allow flows.
    assert!(!egress(&acl, Protocol::Tcp, "1.1.1.1:443").allowed);
}

#[test]
fn allow_all_allows_everything() {
    let acl = Acl::new(Policy::allow_all(), AuditLog::discard("sb"));
    assert!(egress(&acl, Protocol::Tcp, "1.2.3.4:1").allowed);
    assert!(
        acl.check_ingress(Protocol::Udp, sa(LOCAL), sa("[::1]:5"))
            .allowed
    );
    assert!(acl.check_listen(Protocol::Tcp, sa("0.0.0.0:22")).allowed);
    assert!(acl.check_dns("x.test.", "AAAA").allowed);
}

#[test]
fn except_carves_out_of_to() {
    let (acl, _) = acl("version: 1
defaults: {egress: deny}
rules:
  - id: net
    egress: {to: [10.0.0.0/8, 192.168.0.0/16], except: [10.1.0.0/16, 10.2.3.4]}
    action: allow
");
    assert!(egress(&acl, Protocol::Tcp, "10.0.0.1:80").allowed);
    assert!(egress(&acl, Protocol::Tcp, "10.2.3.5:80").allowed);
    assert!(egress(&acl, Protocol::Tcp, "192.168.1.1:80").allowed);
    assert!(!egress(&acl, Protocol::Tcp, "10.1.200.1:80").allowed);
    assert!(!egress(&acl, Protocol::Tcp, "10.2.3.4:80").allowed);
    assert!(!egress(&acl, Protocol::Tcp, "11.0.0.1:80").allowed);
}

#[test]
fn ports_and_protocols() {
    let (acl, _) = acl("version: 1
defaults: {egress: deny, ingress: deny}
rules:
  - id: web
    egress: {protocol: tcp, ports: [80, \"8000-8100\"]}
    action: allow
  - id: ping
    egress: {protocol: icmp, to: [10.0.0.0/8]}
    action: allow
  - id: dns
    egress: {protocol: udp, ports: [53]}
    action: allow
  - id: in
    ingress: {protocol: tcp, from: [1.2.3.0/24], ports: [8080]}
    action: allow
");
    assert!(egress(&acl, Protocol::Tcp, "1.1.1.1:80").allowed);
    assert!(egress(&acl, Protocol::Tcp, "1.1.1.1:8000").allowed);
    assert!(egress(&acl, Protocol::Tcp, "1.1.1.1:8100").allowed);
    assert!(!egress(&acl, Protocol::Tcp, "1.1.1.1:8101").allowed);
    assert!(!egress(&acl, Protocol::Tcp, "1.1.1.1:81").allowed);
    assert!(!egress(&acl, Protocol::Udp, "1.1.1.1:80").allowed);
    assert!(egress(&acl, Protocol::Udp, "1.1.1.1:53").allowed);
    assert!(!egress(&acl, Protocol::Tcp, "1.1.1.1:53").allowed);
    // ICMP: port 0, whatever the caller passes.
    assert_eq!(
        rule_of(&egress(&acl, Protocol::Icmp, "10.9.9.9:0")),
        Some("ping")
    );
    assert_eq!(
        rule_of(&egress(&acl, Protocol::Icmp, "10.9.9.9:80")),
        Some("ping")
    );
    assert!(!egress(&acl, Protocol::Icmp, "11.0.0.1:0").allowed);
    // Ingress matches the remote address and the local port.
    let v = acl.check_ingress(Protocol::Tcp, sa("10.0.0.2:8080"), sa("1.2.3.4:40000"));
    assert_eq!(rule_of(&v), Some("in"));
    assert!(
        !acl.check_ingress(Protocol::Tcp, sa("10.0.0.2:8081"), sa("1.2.3.4:8080"))
            .allowed
    );
    assert!(
        !acl.check_ingress(Protocol::Tcp, sa("10.0.0.2:8080"), sa("1.2.4.4:40000"))
            .allowed
    );
    assert!(
        acl.peek_ingress(Protocol::Tcp, sa("10.0.0.2:8080"), sa("1.2.3.4:1"))
            .allowed
    );
}

#[test]
fn v4_v6_and_v4_mapped() {
    let (acl, _) = acl("version: 1
defaults: {egress: deny}
rules:
  - id: v4
    egress: {to: [10.0.0.0/8]}
    action: allow
  - id: v6
    egress: {to: [\"2001:db8::/32\"]}
    action: allow
");
    assert_eq!(
        rule_of(&egress(&acl, Protocol::Tcp, "10.1.2.3:1")),
        Some("v4")
    );
    assert_eq!(
        rule_of(&egress(&acl, Protocol::Tcp, "[::ffff:10.1.2.3]:1")),
        Some("v4")
    );
    assert!(!egress(&acl, Protocol::Tcp, "[::ffff:11.1.2.3]:1").allowed);
    assert_eq!(
        rule_of(&egress(&acl, Protocol::Tcp, "[2001:db8::1]:1")),
        Some("v6")
    );
    assert!(!egress(&acl, Protocol::Tcp, "[2001:db9::1]:1").allowed);
    // A v4 rule never matches a plain v6 address, nor the reverse.
    assert!(!egress(&acl, Protocol::Tcp, "[::a01:203]:1").allowed);
}

#[test]
fn dns_wildcards() {
    let (acl, _) = acl("version: 1
rules:
  - id: evil
    dns: [\"*.example.test\", evil.test]
    action: deny
");
    for name in [
        "a.example.test",
        "b.a.example.test",
        "A.EXAMPLE.test.",
        "evil.test",
        "EVIL.TEST.",
    ] {
        let v = acl.check_dns(name, "A");
        assert!(!v.allowed, "{name}");
        assert_eq!(rule_of(&v), Some("evil"));
    }
    for name in [
        "example.test",
        "example.test.",
        "example.test.evil",
        "xexample.test",
        "a.evil.test",
    ] {
        assert_eq!(
            acl.check_dns(name, "A"),
            Verdict {
                allowed: true,
                rule: None
            },
            "{name}"
        );
    }
}

#[test]
fn to_fqdn_after_learn_until_expiry() {
    let (acl, _) = acl("version: 1
defaults: {egress: deny}
rules:
  - id: api
    egress: {protocol: tcp, to_fqdn: [\"*.example.test\"], ports: [443]}
    action: allow
");
    let t0 = Instant::now();
    let local = sa(LOCAL);
    let remote = sa("203.0.113.7:443");
    let check = |at: Instant| acl.check_egress_at(Protocol::Tcp, local, remote, at);
    assert!(!check(t0).allowed);
    // Names no to_fqdn pattern matches are not kept.
    acl.learn_at("example.test", remote.ip(), 60, t0);
    acl.learn_at("other.test", remote.ip(), 60, t0);
    assert_eq!(acl.learned_len(), 0);
    assert!(!check(t0).allowed);

    acl.learn_at(
        "API.Example.Test.",
        "::ffff:203.0.113.7".parse().expect("valid address"),
        60,
        t0,
    );
    assert_eq!(acl.learned_len(), 1);
    let v = check(t0 + Duration::from_secs(59));
    assert!(v.allowed);
    assert_eq!(rule_of(&v), Some("api"));
    assert!(
        acl.peek_egress_at(Protocol::Tcp, local, remote, t0 + Duration::from_secs(30))
            .allowed
    );
    // Still only port 443, and only that address.
    assert!(
        !acl.check_egress_at(Protocol::Tcp, local, sa("203.0.113.7:80"), t0)
            .allowed
    );
    assert!(
        !acl.check_egress_at(Protocol::Tcp, local, sa("203.0.113.8:443"), t0)
            .allowed
    );
    assert!(!check(t0 + Duration::from_secs(60)).allowed);
}

#[test]
fn listen_rules() {
    let (acl, _) = acl("version: 1
defaults: {listen: deny}
rules:
  - id: http
    listen: {protocol: tcp, ports: [8080, \"3000-3999\"]}
    action: allow
  - id: any-udp
    listen: {protocol: udp}
    action: allow
");
    assert_eq!(
        rule_of(&acl.check_listen(Protocol::Tcp, sa("0.0.0.0:8080"))),
        Some("http")
    );
    assert!(acl.check_listen(Protocol::Tcp, sa("[::]:3500")).allowed);
    assert!(!acl.check_listen(Protocol::Tcp, sa("0.0.0.0:22")).allowed);
    assert_eq!(
        rule_of(&acl.check_listen(Protocol::Udp, sa("0.0.0.0:22"))),
        Some("any-udp")
    );
    assert_eq!(
        acl.check_listen(Protocol::Tcp, sa("0.0.0.0:0")),
        Verdict {
            allowed: true,
            rule: None
        }
    );
}

const AUDITED: &str = "version: 1
audit: MODE
defaults: {egress: deny}
rules:
  - id: web
    egress: {protocol: tcp, to: [10.0.0.1], ports: [80]}
    action: allow
  - id: watch
    egress: {to: [10.0.0.9]}
    action: audit
  - id: no-evil
    dns: [evil.test]
    action: deny
";

/// Runs the same checks in `mode` and returns the audit lines.
fn audited(mode: &str) -> Vec<Value> {
    let (acl, buf) = acl(&AUDITED.replace("MODE", mode));
    egress(&acl, Protocol::Tcp, "10.0.0.1:80"); // allow by web
    egress(&acl, Protocol::Tcp, "10.0.0.9:80"); // audit by watch
    egress(&acl, Protocol::Tcp, "10.0.0.2:80"); // deny by default
    acl.peek_egress(Protocol::Tcp, sa(LOCAL), sa("10.0.0.2:80")); // never logged
    acl.peek_egress(Protocol::Tcp, sa(LOCAL), sa("10.0.0.9:80")); // never logged
    acl.check_dns("Evil.Test.", "AAAA"); // deny by no-evil
    acl.check_listen(Protocol::Tcp, sa("0.0.0.0:8080")); // allow by default
    acl.check_listen(Protocol::Tcp, sa("0.0.0.0:0")); // ephemeral: never logged
    buf.take()
}

#[test]
fn audit_lines_per_mode() {
    let all = audited("all");
    let summary: Vec<(&str, &str, Option<&str>)> = all
        .iter()
        .map(|l| {
            (
                l["direction"].as_str().expect("a JSON string"),
                l["verdict"].as_str().expect("a JSON string"),
                l["rule"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("egress", "allow", Some("web")),
            ("egress", "audit", Some("watch")),
            ("egress", "deny", None),
            ("dns", "deny", Some("no-evil")),
            ("listen", "allow", None),
        ]
    );

    let flow = &all[0];
    assert_eq!(flow["sandbox"], "sb1");
    assert_eq!(flow["protocol"], "tcp");
    assert_eq!(flow["local"], LOCAL);
    assert_eq!(flow["remote"], "10.0.0.1:80");
    let keys: Vec<&str> = flow
        .as_object()
        .expect("a JSON string")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "time",
        "sandbox",
        "direction",
        "protocol",
        "local",
        "remote",
        "rule",
        "verdict",
    ];
    want.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want);
    assert!(all[2]["rule"].is_null());
    let time = flow["time"].as_str().expect("a JSON string");
    assert_eq!(time.len(), "2026-11-22T10:00:00.123Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    let dns = &all[3];
    assert_eq!(dns["name"], "Evil.Test.");
    assert_eq!(dns["qtype"], "AAAA");
    assert!(dns.get("protocol").is_none() && dns.get("remote").is_none());
    let listen = &all[4];
    assert_eq!(listen["local"], "0.0.0.0:8080");
    assert!(listen.get("remote").is_none());

    let verdicts = |lines: Vec<Value>| -> Vec<String> {
        lines
            .iter()
            .map(|l| l["verdict"].as_str().expect("a JSON string").to_string())
            .collect()
    };
    assert_eq!(verdicts(audited("denies")), ["audit", "deny", "deny"]);
    assert_eq!(verdicts(audited("off")), ["audit"]);
}

#[test]
fn audit_mode_can_change_live() {
    let (acl, buf) = acl(&AUDITED.replace("MODE", "off"));
    egress(&acl, Protocol::Tcp, "10.0.0.2:80");
    assert!(buf.take().is_empty());
    acl.set_audit_mode(AuditMode::Denies);
    egress(&acl, Protocol::Tcp, "10.0.0.2:80");
    assert_eq!(buf.take().len(), 1);
}

#[test]
fn live_changes() {
    let (acl, _) = acl("version: 1
rules:
  - id: a
    egress: {to: [10.0.0.1]}
    action: deny
");
    assert!(!egress(&acl, Protocol::Tcp, "10.0.0.1:1").allowed);
    assert!(egress(&acl, Protocol::Tcp, "10.0.0.2:1").allowed);

    let rule = parse_rule("{egress: {to: [10.0.0.0/24]}, action: deny}").expect("valid rule");
    assert_eq!(acl.add(rule, None).expect("valid"), "rule-2");
    assert_eq!(
        rule_of(&egress(&acl, Protocol::Tcp, "10.0.0.2:1")),
        Some("rule-2")
    );

    let first =
        parse_rule("{id: first, egress: {to: [10.0.0.1]}, action: allow}").expect("valid rule");
    assert_eq!(acl.add(first.clone(), Some(0)).expect("valid"), "first");
    assert!(egress(&acl, Protocol::Tcp, "10.0.0.1:1").allowed);
    let dup = acl.add(first, None).expect_err("rejected");
    assert_eq!(dup.to_string(), "duplicate rule id \"first\"");
    let past = parse_rule("{dns: [x.test], action: deny}").expect("valid rule");
    assert!(matches!(
        acl.add(past, Some(4)),
        Err(PolicyError::Position {
            position: 4,
            len: 3
        })
    ));

    acl.remove("first").expect("valid");
    assert!(!egress(&acl, Protocol::Tcp, "10.0.0.1:1").allowed);
    assert_eq!(
        acl.remove("first").expect_err("rejected").to_string(),
        "no rule with id \"first\""
    );
    let ids: Vec<String> = acl
        .policy()
        .rules()
        .iter()
        .map(|r| r.id().expect("has an id").to_string())
        .collect();
    assert_eq!(ids, ["a", "rule-2"]);

    acl.replace(Policy::allow_all());
    assert!(egress(&acl, Protocol::Tcp, "10.0.0.1:1").allowed);
    assert!(acl.policy().rules().is_empty());
    // Automatic ids continue from the new policy.
    let rule = parse_rule("{dns: [x.test], action: deny}").expect("valid rule");
    assert_eq!(acl.add(rule, None).expect("valid"), "rule-1");
}

#[test]
fn acl_is_shared_across_threads() {
    let (acl, _) = acl("version: 1\n");
    let acl = Arc::new(acl);
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let acl = Arc::clone(&acl);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let rule =
                        parse_rule("{egress: {to: [10.0.0.1]}, action: deny}").expect("valid rule");
                    let id = acl.add(rule, None).expect("valid");
                    let _ = egress(&acl, Protocol::Tcp, "10.0.0.1:1");
                    acl.remove(&id).expect("valid");
                }
                i
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    assert!(acl.policy().rules().is_empty());
}

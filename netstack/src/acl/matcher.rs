//! Matching flows, listening ports and DNS names against a policy: the rules of the kind
//! being checked, in order, first match wins, else the default of that direction.
//! Allocation-free: a decision borrows the rule that made it.

use std::net::IpAddr;

use super::names::NamePattern;
use super::policy::Policy;
use super::rule::{Action, FlowMatch, ListenMatch, Protocol, Rule, RuleKind};

/// A flow as the matcher sees it: the peer is unmapped, the port is the one rules name
/// (remote for egress, local for ingress; 0 for ICMP).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub(crate) protocol: Protocol,
    pub(crate) peer: IpAddr,
    pub(crate) port: u16,
}

/// What decided a check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decision<'p> {
    pub(crate) allowed: bool,
    /// The matching rule; `None` when the default decided.
    pub(crate) rule: Option<&'p Rule>,
}

impl Decision<'_> {
    pub(crate) fn action(&self) -> Option<Action> {
        self.rule.map(|r| r.action)
    }

    /// The `verdict` of the audit line.
    pub(crate) fn verdict_word(&self) -> &'static str {
        match self.action() {
            Some(Action::Audit) => "audit",
            _ if self.allowed => "allow",
            _ => "deny",
        }
    }
}

impl FlowMatch {
    /// Whether the rule matches `flow`; `learned(pattern)` says whether the peer is a
    /// live address of a name the pattern matches.
    pub(crate) fn matches(&self, flow: Flow, learned: impl Fn(&NamePattern) -> bool) -> bool {
        if !self.protocol.covers(flow.protocol) {
            return false;
        }
        if !self.ports.is_empty() && !self.ports.iter().any(|r| r.contains(flow.port)) {
            return false;
        }
        if self.peers.is_empty() && self.fqdn.is_empty() {
            return true;
        }
        let in_cidrs = self.peers.iter().any(|net| net.contains(&flow.peer))
            && !self.except.iter().any(|net| net.contains(&flow.peer));
        in_cidrs || self.fqdn.iter().any(learned)
    }
}

impl ListenMatch {
    pub(crate) fn matches(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol.covers(protocol)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(port)))
    }
}

fn first<'p>(
    policy: &'p Policy,
    default_allows: bool,
    mut matches: impl FnMut(&RuleKind) -> bool,
) -> Decision<'p> {
    match policy.rules().iter().find(|r| matches(&r.kind)) {
        Some(rule) => Decision {
            allowed: rule.action.allows(),
            rule: Some(rule),
        },
        None => Decision {
            allowed: default_allows,
            rule: None,
        },
    }
}

pub(crate) fn egress<'p>(
    policy: &'p Policy,
    flow: Flow,
    learned: impl Fn(IpAddr, &NamePattern) -> bool,
) -> Decision<'p> {
    first(
        policy,
        policy.defaults().egress.allows(),
        |kind| matches!(kind, RuleKind::Egress(m) if m.matches(flow, |p| learned(flow.peer, p))),
    )
}

pub(crate) fn ingress(policy: &Policy, flow: Flow) -> Decision<'_> {
    first(policy, policy.defaults().ingress.allows(), |kind| {
        // Ingress rules have no `to_fqdn`.
        matches!(kind, RuleKind::Ingress(m) if m.matches(flow, |_| false))
    })
}

pub(crate) fn listen(policy: &Policy, protocol: Protocol, port: u16) -> Decision<'_> {
    first(
        policy,
        policy.defaults().listen.allows(),
        |kind| matches!(kind, RuleKind::Listen(m) if m.matches(protocol, port)),
    )
}

pub(crate) fn dns<'p>(policy: &'p Policy, name: &str) -> Decision<'p> {
    first(
        policy,
        policy.defaults().dns.allows(),
        |kind| matches!(kind, RuleKind::Dns(patterns) if patterns.iter().any(|p| p.matches(name))),
    )
}

/// Whether some egress rule has a `to_fqdn` pattern matching `name`, that is whether the
/// addresses `name` resolves to are worth learning.
pub(crate) fn wants_name(policy: &Policy, name: &str) -> bool {
    policy
        .rules()
        .iter()
        .any(|r| matches!(&r.kind, RuleKind::Egress(m) if m.fqdn.iter().any(|p| p.matches(name))))
}

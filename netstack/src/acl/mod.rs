//! The ACL engine: every connection, accepted connection, datagram, bind/listen and DNS
//! question of a sandbox is checked here before it happens.
//!
//! - [`policy`]: the policy format (version 1, YAML or JSON; see `docs/acl.md`) and its
//!   validation; [`rule`]: one rule; [`names`]: DNS name patterns.
//! - `matcher`: first match wins among the rules of the kind being checked, else the
//!   default of that direction.
//! - [`fqdn`]: addresses learned from DNS answers, for `to_fqdn` rules.
//! - [`audit`]: the JSON-lines audit log.
//!
//! [`Acl`] is the live engine of one sandbox, shared (`Arc<Acl>`) by the socket layer, the
//! device filter and the DNS proxy.
//!
//! # Locks
//!
//! `Acl::policy` (`RwLock<Policy>`) comes before `Acl::learned` (`RwLock<FqdnCache>`):
//! an egress check holds both read locks; `learn` takes them one after the other, never
//! both. The audit log's mutex is taken only after both are released, so a slow log
//! never holds up a policy change. Checks take only read locks and allocate nothing
//! unless they write an audit line. `Acl::audit` is immutable.

pub mod audit;
pub mod fqdn;
mod matcher;
pub mod names;
pub mod policy;
pub mod rule;

use std::net::{IpAddr, SocketAddr};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

pub use audit::{AuditLog, AuditMode};
pub use names::NamePattern;
pub use policy::{parse_rule, DefaultAction, Defaults, Policy, PolicyError};
pub use rule::{
    Action, Direction, FlowMatch, ListenMatch, PortRange, Protocol, Rule, RuleId, RuleKind,
};

use audit::Subject;
use fqdn::FqdnCache;
use matcher::{Decision, Flow};

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the flow, port or name goes through (`action: audit` allows).
    pub allowed: bool,
    /// The id of the matching rule; `None` when the direction's default decided.
    pub rule: Option<RuleId>,
}

impl Verdict {
    fn of(decision: &Decision<'_>) -> Verdict {
        Verdict {
            allowed: decision.allowed,
            rule: decision.rule.and_then(|r| r.id.clone()),
        }
    }
}

/// The live ACL of one sandbox. Policy changes apply to the next check.
#[derive(Debug)]
pub struct Acl {
    policy: RwLock<Policy>,
    learned: RwLock<FqdnCache>,
    audit: AuditLog,
}

impl Acl {
    pub fn new(policy: Policy, audit: AuditLog) -> Acl {
        Acl {
            policy: RwLock::new(policy),
            learned: RwLock::new(FqdnCache::default()),
            audit,
        }
    }

    /// A new outgoing flow (connect, first datagram to a peer); `local` is the sandbox side.
    /// Writes an audit line as the policy's audit mode says.
    pub fn check_egress(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Verdict {
        self.check_egress_at(proto, local, remote, Instant::now())
    }

    /// A new incoming flow (a SYN to a listening port, a datagram from a new peer).
    pub fn check_ingress(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Verdict {
        self.flow(
            Direction::Ingress,
            proto,
            local,
            remote,
            Instant::now(),
            true,
        )
    }

    /// A bind or listen on a local port. Port 0 (an ephemeral port) is always allowed and
    /// not audited.
    pub fn check_listen(&self, proto: Protocol, local: SocketAddr) -> Verdict {
        if local.port() == 0 {
            return Verdict {
                allowed: true,
                rule: None,
            };
        }
        let policy = self.read_policy();
        let decision = matcher::listen(&policy, proto, local.port());
        let verdict = Verdict::of(&decision);
        let log = self.audit_line(&policy, &decision);
        drop(policy);
        if let Some(word) = log {
            self.audit.record(
                Subject::Listen {
                    protocol: proto,
                    local,
                },
                verdict.rule.as_deref(),
                word,
            );
        }
        verdict
    }

    /// A DNS question for `name` (any case, with or without the trailing dot); `qtype`
    /// (`"A"`, `"AAAA"`, …) is only written to the audit log.
    pub fn check_dns(&self, name: &str, qtype: &str) -> Verdict {
        let policy = self.read_policy();
        let decision = matcher::dns(&policy, name);
        let verdict = Verdict::of(&decision);
        let log = self.audit_line(&policy, &decision);
        drop(policy);
        if let Some(word) = log {
            self.audit
                .record(Subject::Dns { name, qtype }, verdict.rule.as_deref(), word);
        }
        verdict
    }

    /// [`Acl::check_egress`] without an audit line (the device filter, per packet).
    pub fn peek_egress(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Verdict {
        self.flow(
            Direction::Egress,
            proto,
            local,
            remote,
            Instant::now(),
            false,
        )
    }

    /// [`Acl::check_ingress`] without an audit line (the device filter, per packet).
    pub fn peek_ingress(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> Verdict {
        self.flow(
            Direction::Ingress,
            proto,
            local,
            remote,
            Instant::now(),
            false,
        )
    }

    /// The DNS proxy saw `name` resolve to `addr` with `ttl` seconds: `to_fqdn` rules whose
    /// pattern matches `name` allow `addr` until then (TTL clamped to 1 s..1 day). Only
    /// names some `to_fqdn` pattern matches now are kept, at most
    /// [`fqdn::MAX_LEARNED`] pairs, the oldest dropped first.
    pub fn learn(&self, name: &str, addr: IpAddr, ttl: u32) {
        self.learn_at(name, addr, ttl, Instant::now());
    }

    /// Replaces the whole policy.
    pub fn replace(&self, policy: Policy) {
        *self.write_policy() = policy;
        tracing::info!(sandbox = %self.audit.sandbox(), "ACL policy replaced");
    }

    /// Adds `rule` at `position` in the rule list (the end when `None`); a rule without an
    /// id gets `rule-N`. Returns the id.
    pub fn add(&self, rule: Rule, position: Option<usize>) -> Result<String, PolicyError> {
        let id = self.write_policy().insert(rule, position)?;
        tracing::info!(sandbox = %self.audit.sandbox(), rule = %id, "ACL rule added");
        Ok(id.into())
    }

    /// Removes the rule with `id`.
    pub fn remove(&self, id: &str) -> Result<(), PolicyError> {
        self.write_policy().remove(id)?;
        tracing::info!(sandbox = %self.audit.sandbox(), rule = %id, "ACL rule removed");
        Ok(())
    }

    /// Sets which verdicts are written to the audit log.
    pub fn set_audit_mode(&self, mode: AuditMode) {
        self.write_policy().set_audit_mode(mode);
    }

    /// The policy's DNS upstreams (empty: the proxy's own default).
    pub fn dns_upstream(&self) -> Vec<SocketAddr> {
        self.read_policy().dns_upstream().to_vec()
    }

    /// A copy of the current policy.
    pub fn policy(&self) -> Policy {
        self.read_policy().clone()
    }

    pub(crate) fn check_egress_at(
        &self,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Verdict {
        self.flow(Direction::Egress, proto, local, remote, now, true)
    }

    #[cfg(test)]
    pub(crate) fn peek_egress_at(
        &self,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Verdict {
        self.flow(Direction::Egress, proto, local, remote, now, false)
    }

    pub(crate) fn learn_at(&self, name: &str, addr: IpAddr, ttl: u32, now: Instant) {
        let name = names::trim_dot(name);
        if !matcher::wants_name(&self.read_policy(), name) {
            return;
        }
        let name = name.to_ascii_lowercase();
        self.learned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .learn(&name, rule::unmap(addr), ttl, now);
    }

    fn flow(
        &self,
        direction: Direction,
        proto: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        audit: bool,
    ) -> Verdict {
        let (peer, port) = match direction {
            Direction::Ingress => (remote.ip(), local.port()),
            _ => (remote.ip(), remote.port()),
        };
        let flow = Flow {
            protocol: proto,
            peer: rule::unmap(peer),
            // ICMP has no ports, whatever the caller put there (an echo id, say).
            port: if proto == Protocol::Icmp { 0 } else { port },
        };
        let policy = self.read_policy();
        let decision = match direction {
            Direction::Ingress => matcher::ingress(&policy, flow),
            _ => {
                let learned = self.learned.read().unwrap_or_else(PoisonError::into_inner);
                matcher::egress(&policy, flow, |addr, pattern| {
                    learned.matches(addr, pattern, now)
                })
            }
        };
        let verdict = Verdict::of(&decision);
        let log = if audit {
            self.audit_line(&policy, &decision)
        } else {
            None
        };
        drop(policy);
        if let Some(word) = log {
            self.audit.record(
                Subject::Flow {
                    direction,
                    protocol: proto,
                    local,
                    remote,
                },
                verdict.rule.as_deref(),
                word,
            );
        }
        verdict
    }

    /// The `verdict` word of the audit line to write, if the mode wants one.
    fn audit_line(&self, policy: &Policy, decision: &Decision<'_>) -> Option<&'static str> {
        policy
            .audit_mode()
            .logs(decision.allowed, decision.action())
            .then(|| decision.verdict_word())
    }

    fn read_policy(&self) -> RwLockReadGuard<'_, Policy> {
        self.policy.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_policy(&self) -> RwLockWriteGuard<'_, Policy> {
        self.policy.write().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn learned_len(&self) -> usize {
        self.learned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests;

//! Masquerading a sandbox's traffic beyond the host, for `runsc do --network sandbox`: the
//! host end of its veth routes for it, and a netfilter MASQUERADE rule gives what leaves the
//! host the host's own address (what gVisor's `runsc do`, Docker's default bridge and the CNI
//! bridge plugin's `ipMasq` do). Without it the sandbox reaches the host and nothing further:
//! replies to `10.201.N.2` have no way back.
//!
//! Rules are added with the `iptables` command (nftables or legacy, whichever the host's is),
//! each marked with a comment naming the veth, and removed when the sandbox ends; rules whose
//! veth is gone (a runsc that was killed) are removed by the next sandbox's setup.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context as _};

/// Marks our rules; the veth's name follows (no blank: `iptables -S` prints it as one word).
const COMMENT_PREFIX: &str = "nanovisor-nat:";

/// A sandbox's masquerade and forwarding rules, removed when dropped.
pub struct Masquerade {
    rules: Vec<(&'static str, &'static str, Vec<String>)>,
}

/// One rule: (table, chain, match-and-target arguments).
fn rules_for(host_if: &str, guest: Ipv4Addr) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let comment = format!("{COMMENT_PREFIX}{host_if}");
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["-m", "comment", "--comment", &comment, "-j"].map(str::to_owned));
        v
    };
    let mut masq = with(&["-s", &format!("{guest}/32"), "!", "-o", host_if]);
    masq.push("MASQUERADE".into());
    let mut out_of = with(&["-i", host_if]);
    out_of.push("ACCEPT".into());
    let mut back = with(&[
        "-o",
        host_if,
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
    ]);
    back.push("ACCEPT".into());
    vec![
        ("nat", "POSTROUTING", masq),
        // A host whose FORWARD policy drops (Docker sets that) still passes ours.
        ("filter", "FORWARD", out_of),
        ("filter", "FORWARD", back),
    ]
}

fn iptables(args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .context("running iptables (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "`iptables {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `-t TABLE OP CHAIN ARGS…`.
fn rule_command(op: &str, table: &str, chain: &str, args: &[String]) -> Vec<String> {
    let mut v = vec![
        "-t".to_owned(),
        table.to_owned(),
        op.to_owned(),
        chain.to_owned(),
    ];
    v.extend(args.iter().cloned());
    v
}

impl Masquerade {
    /// Masquerade what `guest` (behind `host_if`) sends beyond the host, and let the host
    /// forward it. Turns IPv4 forwarding on if it is off (a host-wide setting, as Docker
    /// does). Our rules whose veth is not among `live_links` are removed first.
    pub fn add(
        host_if: &str,
        guest: Ipv4Addr,
        live_links: &HashSet<String>,
    ) -> anyhow::Result<Masquerade> {
        remove_stale(live_links);
        enable_forwarding()?;
        let mut added = Masquerade { rules: Vec::new() };
        for (table, chain, args) in rules_for(host_if, guest) {
            // Inserted first, so no earlier rule of the host's decides before ours.
            iptables(&rule_command("-I", table, chain, &args))?;
            added.rules.push((table, chain, args));
        }
        Ok(added)
    }
}

impl Drop for Masquerade {
    fn drop(&mut self) {
        for (table, chain, args) in self.rules.drain(..).rev() {
            if let Err(e) = iptables(&rule_command("-D", table, chain, &args)) {
                tracing::warn!("removing a sandbox's NAT rule: {e:#}");
            }
        }
    }
}

/// Turn IPv4 forwarding on in the calling thread's namespace.
fn enable_forwarding() -> anyhow::Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let on = std::fs::read_to_string(PATH).with_context(|| format!("reading {PATH}"))?;
    if on.trim() != "1" {
        tracing::info!("turning IPv4 forwarding on ({PATH}) for the sandbox's NAT");
        std::fs::write(PATH, "1").with_context(|| format!("writing 1 to {PATH}"))?;
    }
    Ok(())
}

/// The veth a rule line (`iptables -S` output) of ours names, if it is ours.
fn rule_owner(line: &str) -> Option<&str> {
    let at = line.find(COMMENT_PREFIX)? + COMMENT_PREFIX.len();
    let rest = &line[at..];
    let end = rest
        .find(|c: char| c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Delete our rules whose veth no longer exists.
fn remove_stale(live_links: &HashSet<String>) {
    for (table, chain) in [("nat", "POSTROUTING"), ("filter", "FORWARD")] {
        let listing = match iptables(&["-t".into(), table.into(), "-S".into(), chain.into()]) {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("listing {table} {chain} for stale NAT rules: {e:#}");
                continue;
            }
        };
        for line in listing.lines() {
            let Some(owner) = rule_owner(line) else {
                continue;
            };
            if live_links.contains(owner) {
                continue;
            }
            let Some(spec) = line.strip_prefix(&format!("-A {chain} ")) else {
                continue;
            };
            // Our comment has no blank, so the line splits into the arguments that made it
            // (quotes, if this iptables prints any, come off).
            let args: Vec<String> = spec
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_owned())
                .collect();
            match iptables(&rule_command("-D", table, chain, &args)) {
                Ok(_) => tracing::info!("removed a stale sandbox NAT rule ({owner})"),
                Err(e) => tracing::warn!("removing a stale sandbox NAT rule: {e:#}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_their_veth() {
        let rules = rules_for("nv1234abcd", Ipv4Addr::new(10, 201, 3, 2));
        assert_eq!(rules.len(), 3);
        let (table, chain, masq) = &rules[0];
        assert_eq!((*table, *chain), ("nat", "POSTROUTING"));
        assert_eq!(masq.join(" "), "-s 10.201.3.2/32 ! -o nv1234abcd -m comment --comment nanovisor-nat:nv1234abcd -j MASQUERADE");
        let listed = "-A POSTROUTING -s 10.201.3.2/32 ! -o nv1234abcd -m comment --comment \"nanovisor-nat:nv1234abcd\" -j MASQUERADE";
        assert_eq!(rule_owner(listed), Some("nv1234abcd"));
        assert_eq!(rule_owner("-A POSTROUTING -s 10.88.0.2/32 -j CNI-x"), None);
    }
}

//! The sandbox's network for a bundle: the pod's network namespace from the spec (adopted
//! as `runsc do --netns` does), or loopback only; the ACL policy from an annotation.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use netstack::acl::{Acl, AuditLog, Policy};
use netstack::stack::{LinkConfig, Stack, StackConfig};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use sentry::net::link::PacketLink;

use crate::network::adopt::AdoptedNetns;

/// Annotation holding an inline ACL policy (YAML or JSON, docs/acl.md).
pub const ACL_ANNOTATION: &str = "dev.nanovisor.acl";
/// Annotation naming a policy file on the host.
pub const ACL_FILE_ANNOTATION: &str = "dev.nanovisor.acl-file";

/// The policy a bundle asks for: `--acl FILE`, else the annotations, else allow-all.
pub fn policy_for(spec: &Spec, acl_file: Option<&Path>) -> anyhow::Result<Policy> {
    if let Some(path) = acl_file {
        return Policy::load(path).map_err(|e| anyhow::anyhow!("--acl: {e}"));
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    if let Some(text) = annotations.get(ACL_ANNOTATION) {
        return Policy::from_yaml(text)
            .map_err(|e| anyhow::anyhow!("annotation {ACL_ANNOTATION}: {e}"));
    }
    if let Some(path) = annotations.get(ACL_FILE_ANNOTATION) {
        return Policy::load(Path::new(path))
            .map_err(|e| anyhow::anyhow!("annotation {ACL_FILE_ANNOTATION}: {e}"));
    }
    Ok(Policy::allow_all())
}

/// The spec's network namespace path, if it names one.
pub fn netns_path(spec: &Spec) -> Option<std::path::PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::Network)
        .and_then(|ns| ns.path().clone())
}

/// Build the stack: adopt the spec's network namespace when it has one with an address.
/// The DNS proxy forwards to `dns_upstream` when the policy names no resolvers.
/// Returns the stack and the adopted namespace (kept alive with the sandbox).
pub fn build_stack(
    id: &str,
    spec: &Spec,
    acl: Arc<Acl>,
    dns_upstream: Vec<std::net::SocketAddr>,
) -> anyhow::Result<(Arc<Stack>, Option<AdoptedNetns>)> {
    let Some(path) = netns_path(spec) else {
        let config = StackConfig {
            link: None,
            dns_upstream,
        };
        let stack = Stack::new(config, acl).context("starting the network stack")?;
        return Ok((Arc::new(stack), None));
    };
    let ns = AdoptedNetns::adopt(&path, None)
        .with_context(|| format!("adopting the network namespace {}", path.display()))?;
    let ifname = ns.ifname.clone();
    let packet = ns
        .run_inside(move || PacketLink::open(&ifname))?
        .with_context(|| format!("opening {} in {}", ns.ifname, path.display()))?;
    tracing::info!(sandbox = id, addrs = ?ns.addrs, "adopted {}", path.display());
    let link = LinkConfig {
        link: Box::new(packet),
        name: ns.ifname.clone(),
        addrs: ns.addrs.clone(),
        gateway_v4: ns.gateway_v4,
        gateway_v6: ns.gateway_v6,
    };
    let stack = Stack::new(
        StackConfig {
            link: Some(link),
            dns_upstream,
        },
        acl,
    )
    .context("starting the network stack")?;
    Ok((Arc::new(stack), Some(ns)))
}

/// The audit log of a sandbox: `STATE_DIR/audit.log` (what `runsc acl audit` reads).
pub fn audit_log(id: &str, state_dir: &Path) -> anyhow::Result<AuditLog> {
    let path = state_dir.join("audit.log");
    AuditLog::file(id, &path).with_context(|| format!("opening {}", path.display()))
}

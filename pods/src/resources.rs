//! CRI's `LinuxContainerResources` as OCI `linux.resources`, and the limits a pod's sandbox
//! gets.
//!
//! One sandbox process runs all of a pod's containers (the VMM, the sentry and one host
//! thread per guest thread), so the host can limit only the pod as a whole, as gVisor does:
//! - The sandbox's cgroup (see cgroup.rs) gets the pod-level limits ([`pod_level`]): CRI's
//!   `PodSandboxConfig.linux.resources` (which kubelet fills with the sum of its containers'
//!   limits), less what kubelet's own pod cgroup leaves unlimited ([`within_parent`]).
//! - Memory: the containers' sum sizes the guest's memory (runsc boot), so the guest's OOM
//!   killer, not the host's, meets a pod that fills it; runsc's host limit is that plus room
//!   for the sentry (128 MiB and 1/32, runsc/src/confine/cgroup.rs `host_memory_limit`). The
//!   pod overhead (`linux.overhead`, the RuntimeClass's `overhead.podFixed`) is that room:
//!   kubelet's pod cgroup is the sum plus the overhead, so an overhead of at least 128 MiB
//!   and 1/32 of the pod's memory keeps the host's OOM killer away from the sandbox. It is
//!   not given to the guest.
//! - CPU: quota (rescaled to the pod's period) and shares are the sum plus the overhead's,
//!   since the host counts the sentry's time with the guest's.
//! - A container's own `resources` (CreateContainer) are checked, refused with
//!   InvalidArgument where they ask for what cannot be honoured, and written to its
//!   config.json as containerd would; runsc applies nothing per container inside a sandbox,
//!   so they count only through the pod-level sum. A pod that gives no pod-level resources
//!   (an older kubelet, crictl) is bounded only by its parent cgroup (kubelet's pod cgroup).
//! - The first container of a pod restored from a checkpoint image owns the sandbox: it gets
//!   the pod-level limits, or, when the pod gives none, its own.
//! - runsc gives a guest at least 256 MiB (`MIN_GUEST_MEMORY`): a smaller limit is raised to
//!   that, in the guest and in the host cgroup.
//!
//! Ignored, as gVisor ignores them: `oom_score_adj` (one host process holds every container;
//! the guest's OOM killer chooses inside), `memory_swap_limit_in_bytes` (runsc sets no swap
//! limit). Refused: cpusets (runsc makes no cpuset cgroup), hugepages other than a limit of 0
//! (the guest has no hugetlbfs; kubelet sends every page size with limit 0, which holds
//! trivially) and cgroup v2 `unified` keys.

use k8s_cri::v1::{LinuxContainerResources, PodSandboxConfig};
use serde_json::{json, Map, Value};

use crate::cgroup::ParentLimits;

/// Linux's bounds on a CFS period, and its least quota, in µs (what runsc checks too).
const MIN_CFS_US: i64 = 1_000;
const MAX_CFS_PERIOD_US: i64 = 1_000_000;
/// The CFS period when none is given (Linux's default).
const DEFAULT_CFS_PERIOD_US: i64 = 100_000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resources: {field} {value}: {why}")]
    Bad {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("resources: {field} {value:?} is not supported by nanovisor: {why}")]
    Unsupported {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Whether `r` can be honoured (see the module comment for what is refused and ignored).
pub fn validate(r: &LinuxContainerResources) -> Result<(), ResourceError> {
    let bad = |field, value: i64, why| {
        Err(ResourceError::Bad {
            field,
            value: value.to_string(),
            why,
        })
    };
    if r.memory_limit_in_bytes < 0 {
        return bad(
            "memory_limit_in_bytes",
            r.memory_limit_in_bytes,
            "must be positive, or 0 for no limit",
        );
    }
    if r.cpu_period != 0 && !(MIN_CFS_US..=MAX_CFS_PERIOD_US).contains(&r.cpu_period) {
        return bad(
            "cpu_period",
            r.cpu_period,
            "must be 1000..=1000000 µs, or 0 for the default",
        );
    }
    if r.cpu_quota != 0 && r.cpu_quota != -1 && r.cpu_quota < MIN_CFS_US {
        return bad(
            "cpu_quota",
            r.cpu_quota,
            "must be at least 1000 µs, or 0 or -1 for no limit",
        );
    }
    if r.cpu_shares < 0 {
        return bad("cpu_shares", r.cpu_shares, "must not be negative");
    }
    let unsupported = |field, value: &str, why| {
        Err(ResourceError::Unsupported {
            field,
            value: value.to_string(),
            why,
        })
    };
    if !r.cpuset_cpus.is_empty() {
        return unsupported(
            "cpuset_cpus",
            &r.cpuset_cpus,
            "runsc makes no cpuset cgroup for a sandbox",
        );
    }
    if !r.cpuset_mems.is_empty() {
        return unsupported(
            "cpuset_mems",
            &r.cpuset_mems,
            "runsc makes no cpuset cgroup for a sandbox",
        );
    }
    if let Some(h) = r.hugepage_limits.iter().find(|h| h.limit > 0) {
        return unsupported(
            "hugepage_limits",
            &format!("{}={}", h.page_size, h.limit),
            "the guest has no hugetlbfs (only a limit of 0 holds)",
        );
    }
    if let Some(key) = r.unified.keys().min() {
        return unsupported("unified", key, "runsc applies no cgroup v2 unified keys");
    }
    Ok(())
}

/// OCI `linux.resources` for `r` (checked with [`validate`] first); None when it sets nothing.
pub fn to_oci(r: &LinuxContainerResources) -> Result<Option<Value>, ResourceError> {
    validate(r)?;
    let mut out = Map::new();
    if r.memory_limit_in_bytes > 0 {
        out.insert("memory".into(), json!({"limit": r.memory_limit_in_bytes}));
    }
    let mut cpu = Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period != 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if !r.hugepage_limits.is_empty() {
        let limits: Vec<Value> = r
            .hugepage_limits
            .iter()
            .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
            .collect();
        out.insert("hugepageLimits".into(), Value::Array(limits));
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// The pod-level resources of `pod`, both parts checked: `linux.resources`, with
/// `linux.overhead`'s CPU added (its memory is the sentry's room, see the module comment).
/// A limit the resources leave unset stays unset (overhead alone limits nothing: it is
/// what the runtime adds on top of the containers). None without `linux.resources`.
pub fn pod_level(pod: &PodSandboxConfig) -> Result<Option<LinuxContainerResources>, ResourceError> {
    let linux = pod.linux.as_ref();
    let resources = linux.and_then(|l| l.resources.as_ref());
    let overhead = linux.and_then(|l| l.overhead.as_ref());
    for r in resources.iter().chain(overhead.iter()) {
        validate(r)?;
    }
    let Some(r) = resources else {
        return Ok(None);
    };
    let none = LinuxContainerResources::default();
    let o = overhead.unwrap_or(&none);
    let mut sum = LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_shares: r.cpu_shares.saturating_add(o.cpu_shares),
        ..Default::default()
    };
    if r.memory_limit_in_bytes > 0 {
        sum.memory_limit_in_bytes = r.memory_limit_in_bytes;
    }
    if r.cpu_quota > 0 {
        // The overhead's quota is a share of its own period: rescaled to the pod's.
        let period = if r.cpu_period > 0 {
            r.cpu_period
        } else {
            DEFAULT_CFS_PERIOD_US
        };
        let extra = if o.cpu_quota > 0 {
            let o_period = if o.cpu_period > 0 {
                o.cpu_period
            } else {
                DEFAULT_CFS_PERIOD_US
            };
            let scaled = i128::from(o.cpu_quota) * i128::from(period) / i128::from(o_period);
            i64::try_from(scaled).unwrap_or(i64::MAX)
        } else {
            0
        };
        sum.cpu_quota = r.cpu_quota.saturating_add(extra);
    }
    Ok(Some(sum))
}

/// `r` without the limits kubelet's pod cgroup (`parent`, when it exists) does not set.
/// kubelet's pod-level `resources` sum only the containers that declare a limit, while its
/// pod cgroup is limited only when every container declares one: a pod of one limited and
/// one unlimited container must not be held to the first one's limit.
pub fn within_parent(
    mut r: LinuxContainerResources,
    parent: Option<ParentLimits>,
) -> LinuxContainerResources {
    if let Some(p) = parent {
        if !p.memory {
            r.memory_limit_in_bytes = 0;
        }
        if !p.cpu_quota {
            r.cpu_quota = 0;
        }
    }
    r
}

/// Whether `r` limits memory or CPU time.
pub fn limits(r: &LinuxContainerResources) -> bool {
    r.memory_limit_in_bytes > 0 || r.cpu_quota > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{HugepageLimit, LinuxPodSandboxConfig};

    fn res(memory: i64, quota: i64, period: i64, shares: i64) -> LinuxContainerResources {
        LinuxContainerResources {
            memory_limit_in_bytes: memory,
            cpu_quota: quota,
            cpu_period: period,
            cpu_shares: shares,
            ..Default::default()
        }
    }

    #[test]
    fn maps_what_kubelet_sends() {
        // A burstable container: 512 MiB, half a CPU, a request of 0.25 CPU, oom_score_adj
        // and no hugepages (every page size at 0).
        let mut r = res(512 << 20, 50_000, 100_000, 256);
        r.oom_score_adj = 999;
        r.memory_swap_limit_in_bytes = 512 << 20;
        r.hugepage_limits = vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 0,
        }];
        assert_eq!(
            to_oci(&r).expect("valid"),
            Some(json!({
                "memory": {"limit": 512 << 20},
                "cpu": {"shares": 256, "quota": 50_000, "period": 100_000},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            }))
        );
        // No limit: kubelet still sends the period.
        assert_eq!(
            to_oci(&res(0, 0, 100_000, 2)).expect("valid"),
            Some(json!({"cpu": {"shares": 2, "period": 100_000}}))
        );
        assert_eq!(to_oci(&LinuxContainerResources::default()), Ok(None));
        assert_eq!(
            to_oci(&res(0, -1, 0, 0)).expect("valid"),
            Some(json!({"cpu": {"quota": -1}}))
        );
    }

    #[test]
    fn kubelets_pod_cgroup_has_the_last_word() {
        let r = res(1 << 30, 50_000, 100_000, 512);
        let open = ParentLimits {
            memory: false,
            cpu_quota: false,
        };
        let both = ParentLimits {
            memory: true,
            cpu_quota: true,
        };
        assert_eq!(within_parent(r.clone(), None), r);
        assert_eq!(within_parent(r.clone(), Some(both)), r);
        assert_eq!(
            within_parent(r.clone(), Some(open)),
            res(0, 0, 100_000, 512)
        );
    }

    #[test]
    fn refuses_what_cannot_be_honoured() {
        let field = |r: &LinuxContainerResources| match validate(r) {
            Err(ResourceError::Bad { field, .. } | ResourceError::Unsupported { field, .. }) => {
                field
            }
            Ok(()) => "ok",
        };
        assert_eq!(field(&res(-1, 0, 0, 0)), "memory_limit_in_bytes");
        assert_eq!(field(&res(0, 500, 0, 0)), "cpu_quota");
        assert_eq!(field(&res(0, -2, 0, 0)), "cpu_quota");
        assert_eq!(field(&res(0, 0, 999, 0)), "cpu_period");
        assert_eq!(field(&res(0, 0, 1_000_001, 0)), "cpu_period");
        assert_eq!(field(&res(0, 0, 0, -2)), "cpu_shares");
        let cpuset = LinuxContainerResources {
            cpuset_cpus: "0-1".into(),
            ..Default::default()
        };
        assert_eq!(field(&cpuset), "cpuset_cpus");
        let mems = LinuxContainerResources {
            cpuset_mems: "0".into(),
            ..Default::default()
        };
        assert_eq!(field(&mems), "cpuset_mems");
        let huge = LinuxContainerResources {
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 2 << 20,
            }],
            ..Default::default()
        };
        assert_eq!(field(&huge), "hugepage_limits");
        let unified = LinuxContainerResources {
            unified: [("memory.high".to_string(), "1G".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(field(&unified), "unified");
        let message = validate(&huge).expect_err("refused").to_string();
        assert!(
            message.contains("hugepage_limits") && message.contains("2MB"),
            "{message}"
        );
    }

    fn pod(
        resources: Option<LinuxContainerResources>,
        overhead: Option<LinuxContainerResources>,
    ) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                resources,
                overhead,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_level_is_the_sum_plus_overhead() {
        let sum = pod_level(&pod(
            Some(res(1 << 30, 150_000, 100_000, 1536)),
            Some(res(64 << 20, 5_000, 50_000, 51)),
        ))
        .expect("valid")
        .expect("some");
        // The overhead's memory is runsc's room for the sentry, not the guest's.
        assert_eq!(sum.memory_limit_in_bytes, 1 << 30);
        // 5 ms per 50 ms is 10 ms per 100 ms.
        assert_eq!((sum.cpu_quota, sum.cpu_period), (160_000, 100_000));
        assert_eq!(sum.cpu_shares, 1587);
        assert!(limits(&sum));
        // A container without a limit makes the pod unlimited: overhead alone is no limit.
        let open = pod_level(&pod(
            Some(res(0, 0, 100_000, 2)),
            Some(res(64 << 20, 0, 0, 0)),
        ))
        .expect("valid")
        .expect("some");
        assert!(!limits(&open));
        assert_eq!(
            pod_level(&pod(None, Some(res(64 << 20, 0, 0, 0)))),
            Ok(None)
        );
        assert_eq!(pod_level(&PodSandboxConfig::default()), Ok(None));
        assert!(pod_level(&pod(Some(res(-5, 0, 0, 0)), None)).is_err());
        assert!(pod_level(&pod(None, Some(res(0, 10, 0, 0)))).is_err());
    }
}

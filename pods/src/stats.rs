//! `runsc events --stats` (runc's stats JSON, the sentry's own figures) as CRI's CPU and
//! memory usage, and a sandbox cgroup's usage (cgroup.rs) as a pod's. Missing fields read as
//! zero rather than failing the call.

use k8s_cri::v1::{CpuUsage, MemoryUsage, UInt64Value};
use serde_json::Value;

use crate::cgroup::Usage;

fn number(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

pub fn cpu(data: &Value, timestamp: i64) -> CpuUsage {
    CpuUsage {
        timestamp,
        usage_core_nano_seconds: Some(UInt64Value {
            value: number(data, &["cpu", "usage", "total"]),
        }),
        usage_nano_cores: None,
    }
}

pub fn memory(data: &Value, timestamp: i64) -> MemoryUsage {
    // Guest memory in use is all working set: the sentry keeps no reclaimable page cache.
    let usage = number(data, &["memory", "usage", "usage"]);
    MemoryUsage {
        timestamp,
        working_set_bytes: Some(UInt64Value { value: usage }),
        usage_bytes: Some(UInt64Value { value: usage }),
        rss_bytes: Some(UInt64Value { value: usage }),
        ..Default::default()
    }
}

/// A sandbox cgroup's CPU time as CRI's.
pub fn cgroup_cpu(u: &Usage, timestamp: i64) -> CpuUsage {
    CpuUsage {
        timestamp,
        usage_core_nano_seconds: Some(UInt64Value { value: u.cpu_nanos }),
        usage_nano_cores: None,
    }
}

/// A sandbox cgroup's memory as CRI's: the working set is usage less inactive file pages,
/// as cAdvisor reports it for runc's containers.
pub fn cgroup_memory(u: &Usage, timestamp: i64) -> MemoryUsage {
    MemoryUsage {
        timestamp,
        working_set_bytes: Some(UInt64Value {
            value: u.working_set_bytes,
        }),
        usage_bytes: Some(UInt64Value {
            value: u.memory_bytes,
        }),
        rss_bytes: Some(UInt64Value { value: u.rss_bytes }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts() {
        let data = serde_json::json!({"cpu": {"usage": {"total": 5_000_000}}, "memory": {"usage": {"usage": 4096}}});
        assert_eq!(
            cpu(&data, 1).usage_core_nano_seconds.map(|v| v.value),
            Some(5_000_000)
        );
        assert_eq!(
            memory(&data, 1).working_set_bytes.map(|v| v.value),
            Some(4096)
        );
        assert_eq!(
            cpu(&Value::Null, 1)
                .usage_core_nano_seconds
                .map(|v| v.value),
            Some(0)
        );
    }
}

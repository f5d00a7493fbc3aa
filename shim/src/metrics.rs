//! `runsc events --stats` (runc's stats JSON, counted by the sentry) as containerd's cgroup v2
//! metrics, which the CRI plugin turns into ContainerStats. The sentry's figures are the
//! sandbox's own: guest CPU time, guest memory in use, guest processes, netstack traffic.

use containerd_shim::protos::cgroups_v2::metrics::{
    CPUStat, MemoryStat, Metrics, NetworkStat, PidsStat,
};
use serde_json::Value;

fn number(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

pub fn from_stats(data: &Value) -> Metrics {
    let mut m = Metrics::new();
    m.cpu = Some(CPUStat {
        usage_usec: number(data, &["cpu", "usage", "total"]) / 1000,
        user_usec: number(data, &["cpu", "usage", "user"]) / 1000,
        system_usec: number(data, &["cpu", "usage", "kernel"]) / 1000,
        ..Default::default()
    })
    .into();
    let usage = number(data, &["memory", "usage", "usage"]);
    m.memory = Some(MemoryStat {
        usage,
        usage_limit: number(data, &["memory", "usage", "limit"]),
        // Guest memory in use is anonymous to the host: nothing of it is reclaimable cache.
        anon: usage,
        ..Default::default()
    })
    .into();
    m.pids = Some(PidsStat {
        current: number(data, &["pids", "current"]),
        ..Default::default()
    })
    .into();
    if let Some(ifaces) = data.get("network_interfaces").and_then(Value::as_array) {
        m.network = ifaces
            .iter()
            .map(|i| NetworkStat {
                name: i
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                rx_bytes: number(i, &["rx_bytes"]),
                tx_bytes: number(i, &["tx_bytes"]),
                ..Default::default()
            })
            .collect();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_runsc_stats() {
        let data = serde_json::json!({
            "cpu": {"usage": {"total": 5_000_000, "kernel": 0, "user": 0}},
            "memory": {"usage": {"usage": 4096, "limit": 0}},
            "pids": {"current": 3},
            "network_interfaces": [{"name": "eth0", "rx_bytes": 10, "tx_bytes": 20}]
        });
        let m = from_stats(&data);
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.network[0].name, "eth0");
        assert_eq!((m.network[0].rx_bytes, m.network[0].tx_bytes), (10, 20));
        // Missing fields read as zero rather than failing Stats.
        assert_eq!(from_stats(&Value::Null).cpu.usage_usec, 0);
    }
}

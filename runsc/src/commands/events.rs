//! `runsc events [--stats] [--interval D] ID`: resource use as runc's `events` prints it,
//! one JSON line per event (`{"type":"stats","id":…,"data":{…}}`). With `--stats`, one
//! event and exit (containerd's shim reads that); without, one every interval until the
//! container stops, each preceded by an `{"type":"oom","id":…}` event for every process
//! the sandbox's out-of-memory killer ended since the previous one. runc learns of OOM
//! kills from the cgroup as they happen; here they are counted by the sentry and polled,
//! so the first poll also reports the kills that came before `events` started.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use crate::commands::{load, load_live, GlobalOpts};
use crate::container::Status;

#[derive(Args)]
pub struct EventsArgs {
    /// Print one stats event and exit.
    #[arg(long)]
    stats: bool,
    /// Time between events (Go syntax: 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    interval: Duration,
    /// The container id.
    id: String,
}

/// Parses a Go-style duration: a sequence of number+unit (`ns`, `us`, `ms`, `s`, `m`,
/// `h`), e.g. `1m30s`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A stats event in runc's format.
pub fn stats_event(id: &str, s: &nanovisor_proto::control::StatsResponse) -> serde_json::Value {
    json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {"usage": {"total": s.cpu_nanos, "kernel": 0, "user": 0}, "throttling": {}},
            "memory": {"usage": {"usage": s.memory_bytes, "limit": 0, "max": 0, "failcnt": 0}},
            "pids": {"current": s.pids},
            "blkio": {},
            "hugetlb": {},
            "intel_rdt": {},
            "network_interfaces": [{
                "name": "eth0",
                "rx_bytes": s.net_rx_bytes,
                "rx_packets": 0,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": s.net_tx_bytes,
                "tx_packets": 0,
                "tx_errors": 0,
                "tx_dropped": 0,
            }],
        },
    })
}

/// An OOM event in runc's format (no data).
pub fn oom_event(id: &str) -> serde_json::Value {
    json!({"type": "oom", "id": id})
}

/// Most OOM events printed for one poll: a sandbox whose processes are killed by the
/// thousand needs no thousand lines to say so.
const MAX_OOM_EVENTS_PER_POLL: u64 = 16;

/// The events to print for one poll: `oom` for each kill since `seen` (which is
/// advanced), then the stats.
fn poll_events(
    id: &str,
    stats: &nanovisor_proto::control::StatsResponse,
    seen: &mut u64,
) -> Vec<serde_json::Value> {
    let new = stats.oom_kills.saturating_sub(*seen);
    *seen = (*seen).max(stats.oom_kills);
    let mut out: Vec<_> = (0..new.min(MAX_OOM_EVENTS_PER_POLL))
        .map(|_| oom_event(id))
        .collect();
    out.push(stats_event(id, stats));
    out
}

pub fn run(args: EventsArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let (c, _) = load_live(global, &args.id)?;
    if args.stats {
        let stats = c.control()?.stats()?;
        println!("{}", stats_event(&args.id, &stats));
        return Ok(0);
    }
    let mut ooms_seen = 0;
    loop {
        let c = match load(global, &args.id) {
            Ok(c) => c,
            Err(_) => return Ok(0),
        };
        if c.status().0 == Status::Stopped {
            return Ok(0);
        }
        match c.control().and_then(|mut ctl| ctl.stats()) {
            Ok(stats) => {
                // One write per poll, flushed, so a reader sees whole lines at once.
                let mut text = String::new();
                for event in poll_events(&args.id, &stats, &mut ooms_seen) {
                    text.push_str(&format!("{event}\n"));
                }
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .context("writing events")?;
            }
            Err(e) => tracing::debug!("stats: {e}"),
        }
        std::thread::sleep(args.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stats_like_runc() {
        let s = nanovisor_proto::control::StatsResponse {
            memory_bytes: 4096,
            cpu_nanos: 10,
            pids: 3,
            net_rx_bytes: 1,
            net_tx_bytes: 2,
            oom_kills: 0,
            init_oom_killed: false,
        };
        let e = stats_event("c1", &s);
        assert_eq!(e["type"], "stats");
        assert_eq!(e["id"], "c1");
        assert_eq!(e["data"]["cpu"]["usage"]["total"], 10);
        assert_eq!(e["data"]["memory"]["usage"]["usage"], 4096);
        assert_eq!(e["data"]["pids"]["current"], 3);
        assert_eq!(e["data"]["network_interfaces"][0]["tx_bytes"], 2);
    }

    #[test]
    fn each_new_oom_kill_is_an_event_before_the_stats() {
        let mut s = nanovisor_proto::control::StatsResponse {
            oom_kills: 2,
            ..Default::default()
        };
        let mut seen = 0;
        let types = |events: Vec<serde_json::Value>| -> Vec<String> {
            events
                .iter()
                .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
                .collect()
        };
        assert_eq!(
            types(poll_events("c1", &s, &mut seen)),
            ["oom", "oom", "stats"]
        );
        assert_eq!(types(poll_events("c1", &s, &mut seen)), ["stats"]);
        s.oom_kills = 1000;
        let events = poll_events("c1", &s, &mut seen);
        assert_eq!(events.len() as u64, MAX_OOM_EVENTS_PER_POLL + 1);
        assert_eq!(events[0], json!({"type": "oom", "id": "c1"}));
        assert_eq!(seen, 1000);
    }
}

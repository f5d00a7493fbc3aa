//! Benchmark (not a test): how long a Kubernetes pod takes to start, from kubelet's first CRI
//! call to the first HTTP 200 of its Node server, for each way a node can run it, in one run:
//!
//! - `runc`: containerd's stock runc handler (the baseline);
//! - `nanovisor boot` / `nanovisor restore`: containerd with our shim, the pod booted, or
//!   restored from the checkpoint image its annotation names;
//! - `nanovisor-cri boot` / `nanovisor-cri restore`: nanovisor-cri's own handler, booted, or
//!   restored (a pooled sandbox when the pool has one ready).
//!
//! Each run is what kubelet does for a one-container pod: RunPodSandbox, PodSandboxStatus (the
//! pod's address), CreateContainer, StartContainer; then a `GET /` from the host on the pod's
//! address, retried every 0.5 ms until it answers 200. The table shows the time to
//! RunPodSandbox's answer and to the first 200, p50/min/max over the runs, and the p50's ratio
//! to runc's. Pods are removed between runs (not timed), one at a time, and the next run
//! waits `--gap-ms` so that a pool can refill. `--only TEXT` runs the variants whose name
//! contains TEXT. `--pool-warm-up` has nanovisor-cri's pool send each sandbox one `GET /`
//! once restored (pods/src/config.rs `warm_up`), which the first request otherwise pays for.
//!
//! Run it through `bench/pod_start.sh`, which builds the release binaries first:
//! `cargo run --release -p nanovisor-tests --example pod_start -- [--runs N] [--gap-ms MS]`
//! with `NANOVISOR_RUNSC=target/release/runsc`. Needs what `tests/tests/cri.rs` needs (root,
//! containerd, the CNI plugins, docker-registry, skopeo); it uses the same set-up.

#[allow(dead_code)]
#[path = "../tests/cri/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../tests/cri/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/cri/image.rs"]
mod image;
#[allow(dead_code)]
#[path = "../tests/cri/scenario.rs"]
mod scenario;
#[allow(dead_code)]
#[path = "../tests/cri/setup.rs"]
mod setup;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use client::{
    call, cri_on, node_container, Cri, Runner, CHECKPOINT_ANNOTATION, CONTAINERD, NANOVISOR_CRI,
    SERVER,
};
use harness::{CHECKPOINT_NAME, HANDLER, STOCK_RUNC_HANDLER};
use k8s_cri::v1::*;

/// One way of running the pod.
struct Variant {
    name: &'static str,
    /// Through nanovisor-cri rather than straight to containerd.
    through_cri: bool,
    handler: &'static str,
    runner: Runner,
    checkpoint: Option<&'static str>,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "runc (containerd)",
        through_cri: false,
        handler: STOCK_RUNC_HANDLER,
        runner: Runner::StockRunc,
        checkpoint: None,
    },
    Variant {
        name: "nanovisor boot (containerd + shim)",
        through_cri: false,
        handler: HANDLER,
        runner: Runner::OurShim,
        checkpoint: None,
    },
    Variant {
        name: "nanovisor restore (containerd + shim)",
        through_cri: false,
        handler: HANDLER,
        runner: Runner::OurShim,
        checkpoint: Some(CHECKPOINT_NAME),
    },
    Variant {
        name: "nanovisor boot (nanovisor-cri)",
        through_cri: true,
        handler: HANDLER,
        runner: Runner::Pods,
        checkpoint: None,
    },
    Variant {
        name: "nanovisor restore (nanovisor-cri pool)",
        through_cri: true,
        handler: HANDLER,
        runner: Runner::Pods,
        checkpoint: Some(CHECKPOINT_NAME),
    },
];

/// How long one pod may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    runs: usize,
    gap: Duration,
    /// Only the variants whose name contains one of these (all when empty).
    only: Vec<String>,
    /// nanovisor-cri's pool sends each sandbox a warm-up request once restored.
    pool_warm_up: bool,
}

fn args() -> Args {
    let mut a = Args {
        runs: 10,
        gap: Duration::from_millis(1000),
        only: Vec::new(),
        pool_warm_up: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--pool-warm-up" {
            a.pool_warm_up = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        let number = value.parse::<u64>().ok();
        match (flag.as_str(), number) {
            ("--runs", Some(n)) if n > 0 => a.runs = n as usize,
            ("--gap-ms", Some(ms)) => a.gap = Duration::from_millis(ms),
            ("--only", _) if !value.is_empty() => a.only.push(value),
            _ => {
                eprintln!("usage: pod_start [--runs N (>0)] [--gap-ms MS] [--only TEXT]... [--pool-warm-up]");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Whether `GET /` on `ip:8080` answers 200 now.
fn answers(ip: &str) -> bool {
    let Ok(addr) = format!("{ip}:8080").parse() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// One pod, as kubelet starts it: (RunPodSandbox answered, first 200), both from the first
/// call. Then removes it.
async fn one_pod(
    h: &harness::Harness,
    cri: &mut Cri,
    v: &Variant,
    image: &str,
    i: usize,
) -> (Duration, Duration) {
    let mut config = cri.pod_config(h, &format!("bench-{}-{i}", v.runner as u8));
    if let Some(name) = v.checkpoint {
        config
            .annotations
            .insert(CHECKPOINT_ANNOTATION.into(), name.into());
    }
    let t0 = Instant::now();
    let pod = call(
        "RunPodSandbox",
        cri.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: v.handler.into(),
        }),
    )
    .await
    .pod_sandbox_id;
    let ran = t0.elapsed();
    let status = call(
        "PodSandboxStatus",
        cri.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        }),
    )
    .await;
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    let ctr = call(
        "CreateContainer",
        cri.rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(node_container("server", image, SERVER)),
            sandbox_config: Some(config),
        }),
    )
    .await
    .container_id;
    call(
        "StartContainer",
        cri.rt.start_container(StartContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await;
    while !answers(&ip) {
        assert!(
            t0.elapsed() < READY_TIMEOUT,
            "{}: pod {pod} ({ip}) did not answer within {READY_TIMEOUT:?}",
            v.name
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let ready = t0.elapsed();
    call(
        "StopContainer",
        cri.rt.stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        }),
    )
    .await;
    call(
        "RemoveContainer",
        cri.rt
            .remove_container(RemoveContainerRequest { container_id: ctr }),
    )
    .await;
    call(
        "StopPodSandbox",
        cri.rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    )
    .await;
    call(
        "RemovePodSandbox",
        cri.rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        }),
    )
    .await;
    (ran, ready)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (p50, min, max).
fn summary(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort_unstable();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let a = args();
    let mut suite = setup::Suite::new();
    suite.h.cri_debug = false;
    suite.h.pool_warm_up = a.pool_warm_up;
    let mut server = suite.h.start_nanovisor_cri(true);
    let (h, image) = (&suite.h, suite.node_ref.as_str());
    let rt = setup::tokio_runtime();
    let rows = rt.block_on(async {
        let containerd = harness::connect(&h.socket)
            .await
            .expect("connecting to containerd's CRI");
        let cri = server.connect().await;
        let mut rows = Vec::new();
        let mut prepared = Vec::new();
        let chosen = VARIANTS
            .iter()
            .filter(|v| a.only.is_empty() || a.only.iter().any(|o| v.name.contains(o.as_str())));
        for v in chosen {
            let (channel, endpoint) = if v.through_cri {
                (cri.clone(), NANOVISOR_CRI)
            } else {
                (containerd.clone(), CONTAINERD)
            };
            let mut c = cri_on(channel, endpoint, v.handler, v.runner, suite.start);
            if !prepared.contains(&endpoint) {
                scenario::prepare(&mut c, image).await;
                prepared.push(endpoint);
            }
            c.step(&format!("{}: a warm-up pod, then {} runs", v.name, a.runs));
            // The first pod of a kind pulls in what later ones find cached (page cache,
            // containerd's snapshot, the pool's first fill).
            tokio::time::sleep(a.gap).await;
            one_pod(h, &mut c, v, image, 0).await;
            let (mut ran, mut ready) = (Vec::new(), Vec::new());
            for i in 1..=a.runs {
                tokio::time::sleep(a.gap).await;
                let (r, f) = one_pod(h, &mut c, v, image, i).await;
                ran.push(r);
                ready.push(f);
            }
            rows.push((v.name, summary(ran), summary(ready)));
        }
        rows
    });
    drop(rt);
    drop(server);
    // The ratio's baseline: runc's p50, unless --only left runc out.
    let base = rows
        .iter()
        .find(|r| r.0 == VARIANTS[0].name)
        .map(|r| ms(r.2 .0));
    println!(
        "\nPod start: kubelet's calls to the first HTTP 200 ({} runs each, one pod at a time; ms)",
        a.runs
    );
    println!(
        "| {:40} | {:>16} | {:>10} | {:>8} | {:>8} | {:>8} |",
        "how", "RunPodSandbox p50", "200 p50", "min", "max", "vs runc"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, ran, ready) in rows {
        println!(
            "| {:40} | {:>16.1} | {:>10.1} | {:>8.1} | {:>8.1} | {:>8} |",
            name,
            ms(ran.0),
            ms(ready.0),
            ms(ready.1),
            ms(ready.2),
            base.map_or("-".into(), |b| format!("{:.2}×", ms(ready.0) / b))
        );
    }
    drop(suite);
}

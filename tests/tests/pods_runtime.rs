//! nanovisor-cri's `nanovisor` runtime handler (crate `nanovisor-pods`), driven directly as a
//! library against a real containerd (for images and snapshots) and real CNI plugins: the same
//! checks as tests/tests/cri.rs makes of containerd with our shim.
//!
//! 1. A pause-only pod: ready, an address in the pod /24, one `runsc boot` naming the pod;
//!    Stop, Remove; nothing left (process, mount, network namespace).
//! 2. A pod of two Node containers in one sandbox: the server's CRI log line, a GET from the
//!    host on the pod IP, the peer reaching the server over the sandbox loopback, ExecSync (and
//!    a failing one), ContainerStats, stop and removal, nothing left.
//! 3. A pod annotated `dev.nanovisor.checkpoint-image` whose server is restored.
//! 4. Pods annotated with a pooled checkpoint: RunPodSandbox claims a sandbox restored ahead of
//!    time, the container binds to it (the first claim moves it into the pod's cgroup); the
//!    pool refills; shutdown releases what is left.
//! 5. Pods with memory and CPU limits under a (fake) kubelet pod cgroup: the sandbox process
//!    in `PARENT/ID` with the pod-level limits, the guest's memory sized by them, stats from
//!    the cgroup, cpusets refused, no UpdateContainerResources, the cgroup gone after removal
//!    (and after a restart); a restored pod with limits is not given a pooled sandbox.
//!    A container that fills its pod's memory ends exited 137 with reason `OOMKilled`.
//! 6. Errors: unknown ids are NotFound, bad requests InvalidArgument.
//!
//! Note: the pods runtime reaps every child of this test process (it is a subreaper), so the
//! harness's wait for containerd at the end runs into its 10 s limit.
//!
//! Needs root and what tests/tests/cri.rs needs.

// The harness serves tests/tests/cri.rs too: what only that test uses is unused here.
#[path = "pods/calls.rs"]
mod calls;
#[path = "pods/cgroups.rs"]
mod cgroups;
#[allow(dead_code)]
#[path = "cri/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "cri/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "cri/image.rs"]
mod image;
#[allow(dead_code)]
#[path = "cri/scenario.rs"]
mod scenario;
#[path = "pods/scenarios.rs"]
mod scenarios;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use calls::*;
use cgroups::*;
use client::{namespaces, node_container, PEER, SERVER};
use harness::Harness;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::*;
use nanovisor_pods::{Config, PoolConfig, Runtime, WarmUp};
use nanovisor_tests::runsc;
use nanovisor_tests::shim_binary;
use scenario::build_checkpoint;
use scenarios::*;

fn step(start: Instant, what: &str) {
    eprintln!("== [{:6.2}s] {what}", start.elapsed().as_secs_f64());
}

fn pod_config(h: &Harness, name: &str) -> PodSandboxConfig {
    let uid = format!("{name}-{}", std::process::id());
    let log_dir = h.dir.join("pods").join(&uid);
    std::fs::create_dir_all(&log_dir).expect("creating the pod's log directory");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels: HashMap::from([("app".into(), "nanovisor-pods-test".into())]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn nanovisor_handler_runs_pods_itself() {
    let start = Instant::now();
    let runsc = runsc();
    let node = image::node_image();
    let pause = image::pause_image();
    let mut h = Harness::new();
    h.start_registry();
    let node_ref = h.push(&node, "nanovisor/node");
    let pause_ref = h.push(&pause, "nanovisor/pause");
    h.start_containerd(&runsc, &shim_binary(), &pause_ref);
    build_checkpoint(&h, &runsc, &node.rootfs(), "web");
    // The pool's checkpoint: the same image under a second name.
    let checkpoints = h.dir.join("checkpoints");
    let image = std::fs::read_link(checkpoints.join("web")).expect("the image's link");
    std::os::unix::fs::symlink(&image, checkpoints.join(POOLED)).expect("naming the image");
    step(start, "containerd up, checkpoint built");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        pull(&mut h, &node_ref).await;
        // Not the pause image: the runtime pulls its sandbox image itself, as containerd does.
        step(start, "images pulled");
        let config = Config {
            runsc: runsc.clone(),
            root: h.dir.join("p"),
            containerd_socket: h.socket.clone(),
            sandbox_image: pause_ref.clone(),
            cni_bin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            cni_conf_dir: h.dir.join("cni/net.d"),
            checkpoint_dir: h.dir.join("checkpoints"),
            pool: vec![PoolConfig {
                checkpoint: POOLED.into(),
                image: node_ref.clone(),
                size: 1,
                // GET / of the checkpointed server changes nothing: warm the pooled sandbox.
                warm_up: Some(WarmUp {
                    port: 8080,
                    path: "/".into(),
                }),
            }],
            ..Default::default()
        };
        let pods = ok("Runtime::start", Runtime::start(config.clone()).await);
        let conditions = pods.conditions().await;
        assert!(conditions.iter().all(|c| c.status), "{conditions:?}");
        errors(&pods, &h).await;
        failures(&pods, &config, &h, &node_ref).await;
        let booted = booted_pods(&pods, &h, &node_ref, start).await;
        limited_pods(&pods, &h, &node_ref, start).await;
        oom_killed_pod(&pods, &h, &node_ref, start).await;
        let restored = restored_pod(&pods, &h, &node_ref, start).await;
        let (claim, pooled) = pooled_pods(&pods, &h, &node_ref, start).await;
        eprintln!(
            "   RunPodSandbox -> first HTTP 200: boot {:.1} ms, restore {:.1} ms, pool {:.1} ms \
             (p50 of 5; RunPodSandbox itself {:.2} ms)",
            booted.as_secs_f64() * 1e3,
            restored.as_secs_f64() * 1e3,
            pooled.as_secs_f64() * 1e3,
            claim.as_secs_f64() * 1e3,
        );
        pods.shutdown().await;
        assert!(
            pods.pooled().iter().all(|(_, n)| *n == 0),
            "{:?}",
            pods.pooled()
        );
        h.assert_nothing_left(Duration::from_secs(15));
        let unpooled = Config {
            pool: Vec::new(),
            ..config
        };
        released_after_restart(&pods, unpooled, &h, &node_ref, start).await;
        h.assert_nothing_left(Duration::from_secs(15));
        assert!(
            our_snapshots(&h).is_empty(),
            "snapshots left: {:?}",
            our_snapshots(&h)
        );
    });
    drop(rt);
    drop(h);
    step(start, "done");
}

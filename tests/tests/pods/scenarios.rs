//! The scenarios: booted, restored and pooled pods, a restart, failures and errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{read, Harness};
use k8s_cri::v1::*;
use nanovisor_pods::{Config, Runtime};

use crate::calls::*;
use crate::cgroups::*;

use crate::*;

pub(crate) const POOLED: &str = "web-pooled";

pub(crate) async fn pull(h: &mut Harness, image: &str) {
    let mut im = ImageServiceClient::new(h.connect().await);
    let r = im
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    ok("PullImage", r);
}

pub(crate) async fn booted_pods(rt: &Runtime, h: &Harness, node: &str, start: Instant) -> Duration {
    step(start, "pause-only pod");
    let solo = pod_config(h, "solo");
    let (pod, _, netns) = run_pod(rt, h, &solo).await;
    assert_eq!(boot_processes(h, &pod).len(), 1, "{:?}", h.our_processes());
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod], &netns).await;

    step(start, "pod of two Node containers");
    let config = pod_config(h, "web");
    let t0 = Instant::now();
    let (pod, ip, netns) = run_pod(rt, h, &config).await;
    step(start, &format!("pod ready, ip {ip}"));
    let logs = PathBuf::from(&config.log_directory);
    let server = create_and_start(rt, &pod, &config, node_container("server", node, SERVER)).await;
    let body = http_get(&ip, 8080).await;
    let booted = t0.elapsed();
    assert_eq!(body, "hello from nanovisor");
    step(
        start,
        &format!(
            "booted pod answered {:.1} ms after RunPodSandbox",
            booted.as_secs_f64() * 1e3
        ),
    );
    wait_for_log(&logs.join("server.log"), "listening on 8080").await;
    let peer = create_and_start(rt, &pod, &config, node_container("peer", node, PEER)).await;
    wait_for_log(&logs.join("peer.log"), "peer got: hello from nanovisor").await;
    let boots: Vec<String> = h
        .processes_naming(&[&pod])
        .into_iter()
        .filter(|p| p.contains(" boot "))
        .collect();
    assert_eq!(
        boots.len(),
        1,
        "one sandbox process for the pod:\n{}",
        boots.join("\n")
    );

    let listed = rt
        .list_containers(Some(ContainerFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(listed.len(), 2);
    let running = rt
        .list_containers(Some(ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            label_selector: HashMap::from([("nope".into(), "x".into())]),
            ..Default::default()
        }))
        .await;
    assert!(running.is_empty(), "label selector");

    step(start, "ExecSync");
    let (code, stdout, stderr) = exec_node(rt, &peer, "console.log(6*7)").await;
    assert_eq!((code, stdout.trim()), (0, "42"), "stderr {stderr:?}");
    let (code, _, stderr) = exec_node(rt, &server, "console.error('bad'); process.exit(3)").await;
    assert_eq!((code, stderr.trim()), (3, "bad"));

    let stats = ok(
        "ContainerStats",
        rt.container_stats(ContainerStatsRequest {
            container_id: server.clone(),
        })
        .await,
    )
    .stats
    .expect("stats");
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    eprintln!("   working set {memory} bytes");
    assert!(memory > 0);

    step(
        start,
        "ExecSync past its timeout, PodSandboxStats, ReopenContainerLog",
    );
    let t = Instant::now();
    let s = rt
        .exec_sync(ExecSyncRequest {
            container_id: peer.clone(),
            cmd: vec![
                "node".into(),
                "-e".into(),
                "setTimeout(() => {}, 1e6)".into(),
            ],
            timeout: 1,
        })
        .await
        .expect_err("the command outlives its timeout");
    assert_eq!(s.code(), tonic::Code::DeadlineExceeded, "{}", s.message());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let (code, stdout, _) = exec_node(rt, &peer, "console.log('still here')").await;
    assert_eq!((code, stdout.trim()), (0, "still here"));
    let pod_stats = ok(
        "PodSandboxStats",
        rt.pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await,
    )
    .stats
    .expect("pod stats");
    let containers = pod_stats.linux.map(|l| l.containers.len()).unwrap_or(0);
    assert_eq!(containers, 2, "PodSandboxStats lists the pod's containers");
    let rotated = logs.join("server.log.1");
    std::fs::rename(logs.join("server.log"), &rotated).expect("rotating the log");
    ok(
        "ReopenContainerLog",
        rt.reopen_container_log(ReopenContainerLogRequest {
            container_id: server.clone(),
        })
        .await,
    );
    assert!(
        logs.join("server.log").exists(),
        "ReopenContainerLog made no new file"
    );

    step(start, "stop and remove");
    stop_and_remove_container(rt, &peer).await;
    stop_and_remove_container(rt, &server).await;
    stop_and_remove_pod(rt, &pod).await;
    assert!(rt.list_containers(None).await.is_empty());
    assert_pod_gone(h, &[&pod, &server, &peer], &netns).await;
    booted
}

pub(crate) async fn restored_pod(
    rt: &Runtime,
    h: &Harness,
    node: &str,
    start: Instant,
) -> Duration {
    step(start, "pod restored from the checkpoint image");
    let mut config = pod_config(h, "restored");
    config
        .annotations
        .insert("dev.nanovisor.checkpoint-image".into(), "web".into());
    let t0 = Instant::now();
    let (pod, ip, netns) = run_pod(rt, h, &config).await;
    let server = create_and_start(rt, &pod, &config, node_container("server", node, SERVER)).await;
    let body = http_get(&ip, 8080).await;
    let elapsed = t0.elapsed();
    assert_eq!(
        body, "hello from the checkpoint",
        "the pod was not restored"
    );
    step(
        start,
        &format!(
            "restored pod answered {:.1} ms after RunPodSandbox",
            elapsed.as_secs_f64() * 1e3
        ),
    );
    let (code, stdout, stderr) = exec_node(rt, &server, "console.log(6*7)").await;
    assert_eq!((code, stdout.trim()), (0, "42"), "stderr {stderr:?}");
    stop_and_remove_container(rt, &server).await;
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod, &server], &netns).await;
    elapsed
}

/// Pods annotated with the pooled checkpoint: RunPodSandbox claims a pooled sandbox, the
/// server container binds to the restored one. Each round waits for the pool to refill first.
/// The medians of RunPodSandbox and of RunPodSandbox → first HTTP 200.
pub(crate) async fn pooled_pods(
    rt: &Runtime,
    h: &Harness,
    node: &str,
    start: Instant,
) -> (Duration, Duration) {
    let mut claims = Vec::new();
    let mut answers = Vec::new();
    for round in 0..5 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rt.pooled().iter().any(|(name, n)| name == POOLED && *n > 0) {
            assert!(
                Instant::now() < deadline,
                "the pool did not fill within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut config = pod_config(h, &format!("pooled-{round}"));
        config
            .annotations
            .insert("dev.nanovisor.checkpoint-image".into(), POOLED.into());
        // The first pod has a kubelet pod cgroup (and no limits): the claim moves the pooled
        // sandbox into it.
        let parent = parent_cgroup("pooled");
        if round == 0 {
            if let Some(linux) = config.linux.as_mut() {
                linux.cgroup_parent = parent.clone();
            }
        }
        let t0 = Instant::now();
        let (pod, ip, netns) = run_pod(rt, h, &config).await;
        claims.push(t0.elapsed());
        let server =
            create_and_start(rt, &pod, &config, node_container("server", node, SERVER)).await;
        let started = t0.elapsed();
        let body = http_get(&ip, 8080).await;
        answers.push(t0.elapsed());
        let t1 = Instant::now();
        http_get(&ip, 8080).await;
        eprintln!(
            "   round {round}: claimed {:?}, container started {started:?}, answered {:?}; a second GET took {:?}",
            claims[round],
            answers[round],
            t1.elapsed()
        );
        assert_eq!(
            body, "hello from the checkpoint",
            "the pooled pod was not restored"
        );
        let rel = format!("{parent}/{server}");
        if round == 0 {
            let (code, stdout, stderr) = exec_node(rt, &server, "console.log(6*7)").await;
            assert_eq!((code, stdout.trim()), (0, "42"), "stderr {stderr:?}");
            let procs = cgroup_file("memory", &rel, "cgroup.procs");
            let pid = procs.lines().next().unwrap_or_default();
            let cmdline = read(Path::new(&format!("/proc/{pid}/cmdline")));
            assert!(
                cmdline.contains("boot") && cmdline.contains(&server),
                "the pooled sandbox is not in {rel}: {procs:?}"
            );
            let pool_cgroup = format!("/nanovisor/{server}");
            assert!(
                cgroup_dirs(&pool_cgroup).is_empty(),
                "{:?}",
                cgroup_dirs(&pool_cgroup)
            );
        }
        stop_and_remove_container(rt, &server).await;
        stop_and_remove_pod(rt, &pod).await;
        assert_pod_gone(h, &[&pod, &server], &netns).await;
        if round == 0 {
            assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));
            remove_parent_cgroup(&parent);
        }
    }
    claims.sort();
    answers.sort();
    step(
        start,
        &format!(
            "pooled pods: RunPodSandbox {:?}, RunPodSandbox -> first 200 {:?}",
            claims, answers
        ),
    );
    (claims[claims.len() / 2], answers[answers.len() / 2])
}

/// A pod left running by a runtime that went away (as if nanovisor-cri had been killed) is
/// released by the next runtime on the same root, from its record.
pub(crate) async fn released_after_restart(
    rt: &Runtime,
    config: Config,
    h: &Harness,
    node: &str,
    start: Instant,
) {
    step(start, "a pod left behind, released by the next runtime");
    let parent = parent_cgroup("orphan");
    let pod_config = with_limits(pod_config(h, "orphan"), &parent);
    let (pod, _, netns) = run_pod(rt, h, &pod_config).await;
    let rel = format!("{parent}/{pod}");
    assert!(!cgroup_dirs(&rel).is_empty(), "no cgroup {rel}");
    let server = create_and_start(
        rt,
        &pod,
        &pod_config,
        node_container("server", node, SERVER),
    )
    .await;
    assert_eq!(boot_processes(h, &pod).len(), 1);
    let next = ok("Runtime::start (again)", Runtime::start(config).await);
    assert!(
        next.list_pod_sandbox(None).await.is_empty(),
        "pods are not adopted"
    );
    assert_pod_gone(h, &[&pod, &server], &netns).await;
    assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));
    remove_parent_cgroup(&parent);
}

/// Snapshot keys of ours (`nanovisor-cri/…`) that containerd still has.
/// (ctr's exit status is not used: the pods runtime's reaper may take it first.)
pub(crate) fn our_snapshots(h: &Harness) -> Vec<String> {
    use std::io::Read as _;
    let mut child = std::process::Command::new("ctr")
        .arg("-a")
        .arg(&h.socket)
        .args(["-n", "k8s.io", "snapshots", "ls"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running ctr");
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .expect("reading ctr's output");
    }
    // Reaped by whichever comes first, this or the runtime's reaper (then this fails: ECHILD).
    let _ = child.wait();
    assert!(out.starts_with("KEY"), "ctr snapshots ls: {out:?}");
    out.lines()
        .filter(|l| l.starts_with("nanovisor-cri/"))
        .map(str::to_string)
        .collect()
}

/// A CNI plugin that fails makes RunPodSandbox fail naming it and its message, and leaves
/// nothing behind; a container of an image containerd lacks is NotFound; a container whose
/// command does not exist fails, and the runtime goes on serving.
pub(crate) async fn failures(rt: &Runtime, config: &Config, h: &Harness, node: &str) {
    let bins = h.dir.join("bad-cni");
    std::fs::create_dir_all(&bins).expect("mkdir");
    let plugin = bins.join("bridge");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncat >/dev/null\necho '{\"code\":11,\"msg\":\"no addresses left\",\"details\":\"range full\"}'\nexit 1\n",
    )
    .expect("writing a failing plugin");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let bad = Config {
        root: h.dir.join("q"),
        cni_bin_dirs: vec![bins],
        pool: Vec::new(),
        ..config.clone()
    };
    let broken = ok("Runtime::start (bad CNI)", Runtime::start(bad).await);
    // The pool's sandbox has a netns of its own: let it be made first.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rt.pooled().iter().any(|(_, n)| *n > 0) {
        assert!(
            Instant::now() < deadline,
            "the pool did not fill within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let netns_before = h.leftover_netns();
    let s = broken
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config(h, "bad-cni")),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("the plugin fails");
    assert!(
        s.message().contains("bridge") && s.message().contains("no addresses left: range full"),
        "{:?}: {}",
        s.code(),
        s.message()
    );
    assert!(broken.list_pod_sandbox(None).await.is_empty());
    assert_eq!(
        h.leftover_netns(),
        netns_before,
        "the failed pod's netns is left"
    );

    let pod_config = pod_config(h, "failing");
    let (pod, _, netns) = run_pod(rt, h, &pod_config).await;
    let mut missing = node_container("missing", "127.0.0.1:1/none:1", SERVER);
    missing.image = Some(ImageSpec {
        image: "127.0.0.1:1/none:1".into(),
        ..Default::default()
    });
    let s = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(missing),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .expect_err("no such image");
    assert_eq!(s.code(), tonic::Code::NotFound, "{}", s.message());
    let mut absent = node_container("absent", node, SERVER);
    absent.command = vec!["/no/such/program".into()];
    let created = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(absent),
            sandbox_config: Some(pod_config.clone()),
        })
        .await;
    match created {
        Err(s) => eprintln!("   a missing program: {:?}: {}", s.code(), s.message()),
        Ok(c) => {
            let started = rt
                .start_container(StartContainerRequest {
                    container_id: c.container_id.clone(),
                })
                .await;
            eprintln!(
                "   a missing program: created; start: {:?}",
                started.as_ref().err().map(|s| s.message().to_string())
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while container_status(rt, &c.container_id).await.state
                != ContainerState::ContainerExited as i32
            {
                assert!(
                    Instant::now() < deadline,
                    "a container without its program still runs"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let st = container_status(rt, &c.container_id).await;
            eprintln!(
                "   exited: code {} ({}: {})",
                st.exit_code, st.reason, st.message
            );
            if started.is_err() {
                assert_eq!(st.reason, "StartError");
                assert!(st.message.contains("/no/such/program"), "{}", st.message);
            }
            assert_ne!(st.exit_code, 0);
        }
    }
    // The pod still serves.
    let server = create_and_start(
        rt,
        &pod,
        &pod_config,
        node_container("server", node, SERVER),
    )
    .await;
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod, &server], &netns).await;
}

pub(crate) async fn errors(rt: &Runtime, h: &Harness) {
    let unknown = "0".repeat(64);
    let s = rt
        .container_status(ContainerStatusRequest {
            container_id: unknown.clone(),
            verbose: false,
        })
        .await
        .expect_err("unknown container");
    assert_eq!(s.code(), tonic::Code::NotFound, "{}", s.message());
    let s = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(s.code(), tonic::Code::NotFound, "{}", s.message());
    let s = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(PodSandboxConfig::default()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("no metadata");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{}", s.message());
    let mut missing = pod_config(h, "missing");
    missing
        .annotations
        .insert("dev.nanovisor.checkpoint-image".into(), "../etc".into());
    let s = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(missing),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("bad image name");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{}", s.message());
    // Removing what is gone succeeds.
    ok(
        "RemoveContainer",
        rt.remove_container(RemoveContainerRequest {
            container_id: unknown.clone(),
        })
        .await,
    );
    ok(
        "RemovePodSandbox",
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: unknown,
        })
        .await,
    );
}

//! Pods with resource limits: their cgroups, the guest's memory, and OOM kills.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{read, Harness};
use k8s_cri::v1::*;
use nanovisor_pods::Runtime;

use crate::calls::*;

use crate::scenarios::*;
use crate::*;

/// kubelet's pod cgroup (cgroupfs driver) for the test's pods with limits: made by runsc on
/// the way down, removed by [`remove_parent_cgroup`] (the sandbox's own directory is the
/// runtime's to remove).
pub(crate) fn parent_cgroup(name: &str) -> String {
    format!("/nanovisor-pods-test-{}/pod-{name}", std::process::id())
}

/// Whether the host's cgroups are v2 only (else v1, or the hybrid layout).
pub(crate) fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directories that exist of cgroup `rel` (`/a/b`) under any hierarchy.
pub(crate) fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if cgroup_v2() {
        return [Path::new("/sys/fs/cgroup").join(rel)]
            .into_iter()
            .filter(|d| d.is_dir())
            .collect();
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// A cgroup file of `rel` for `controller` (v1's hierarchy; v2 has one directory).
pub(crate) fn cgroup_file(controller: &str, rel: &str, file: &str) -> String {
    let rel = rel.trim_start_matches('/');
    let dir = if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(rel)
    };
    read(&dir.join(file)).trim().to_string()
}

/// runsc's host limit for a guest of `guest` bytes (runsc/src/confine/cgroup.rs
/// `host_memory_limit`): the guest, 128 MiB for the sentry, 1/32 for host kernel memory.
pub(crate) fn host_memory_limit(guest: u64) -> u64 {
    guest + (128 << 20) + guest / 32
}

/// The sandbox cgroup `rel` holds a process naming `id`, and has these limits.
pub(crate) fn assert_cgroup_limits(rel: &str, id: &str, memory: u64, quota: u64, period: u64) {
    let procs = cgroup_file("memory", rel, "cgroup.procs");
    let pid = procs
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no process in cgroup {rel}"));
    let cmdline = read(Path::new(&format!("/proc/{pid}/cmdline"))).replace('\0', " ");
    assert!(
        cmdline.contains(" boot ") && cmdline.contains(id),
        "process {pid} in cgroup {rel} is not the sandbox of {id}: {cmdline}"
    );
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(
        own.lines()
            .any(|l| (l.contains(":memory:") || l.starts_with("0::")) && l.ends_with(rel)),
        "{own}"
    );
    if cgroup_v2() {
        assert_eq!(cgroup_file("", rel, "memory.max"), memory.to_string());
        assert_eq!(cgroup_file("", rel, "cpu.max"), format!("{quota} {period}"));
    } else {
        assert_eq!(
            cgroup_file("memory", rel, "memory.limit_in_bytes"),
            memory.to_string()
        );
        assert_eq!(
            cgroup_file("cpu", rel, "cpu.cfs_quota_us"),
            quota.to_string()
        );
        assert_eq!(
            cgroup_file("cpu", rel, "cpu.cfs_period_us"),
            period.to_string()
        );
    }
}

/// Removes the fake kubelet pod cgroup `parent`, and its own parent once no other test pod
/// cgroup is in it.
pub(crate) fn remove_parent_cgroup(parent: &str) {
    let top = parent
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    for dir in cgroup_dirs(parent) {
        std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
    }
    for dir in cgroup_dirs(&top) {
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::ResourceBusy => {
                panic!("removing {}: {e}", dir.display())
            }
            _ => {}
        }
    }
}

/// Pod-level resources as kubelet sends them: the containers' sum in `resources`, the
/// RuntimeClass overhead in `overhead`.
pub(crate) fn with_limits(mut config: PodSandboxConfig, parent: &str) -> PodSandboxConfig {
    if let Some(linux) = config.linux.as_mut() {
        linux.cgroup_parent = parent.into();
        linux.resources = Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 512 << 20,
            ..Default::default()
        });
        // Room for the sentry: runsc's 128 MiB and 1/32 of the pod's memory, and more.
        linux.overhead = Some(LinuxContainerResources {
            memory_limit_in_bytes: 192 << 20,
            cpu_period: 100_000,
            cpu_quota: 10_000,
            ..Default::default()
        });
    }
    config
}

/// kubelet's pod cgroup for [`with_limits`] as its cgroupfs driver makes it before
/// RunPodSandbox: the containers' sum plus the overhead (cgroup v1 only; on v2 the runtime
/// makes the parent on its way down, as it does without kubelet).
pub(crate) fn make_kubelet_pod_cgroup(parent: &str) {
    if cgroup_v2() {
        return;
    }
    let rel = parent.trim_start_matches('/');
    for (controller, file, value) in [
        ("memory", "memory.limit_in_bytes", (512u64 + 192) << 20),
        ("cpu", "cpu.cfs_quota_us", 60_000),
    ] {
        let dir = Path::new("/sys/fs/cgroup").join(controller).join(rel);
        std::fs::create_dir_all(&dir).expect("making the pod cgroup");
        std::fs::write(dir.join(file), value.to_string()).expect("limiting the pod cgroup");
    }
}

/// A container's own limits (the pod's are their sum).
pub(crate) fn limited_container(name: &str, image: &str, script: &str) -> ContainerConfig {
    let mut c = node_container(name, image, script);
    if let Some(linux) = c.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 512 << 20,
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }],
            oom_score_adj: 999,
            ..Default::default()
        });
    }
    c
}

/// Pods with memory and CPU limits: the sandbox process runs in `PARENT/ID` with the
/// pod-level limits (the containers' sum plus overhead), the guest sees that memory, stats
/// come from the cgroup, what cannot be honoured is refused, and the cgroup is gone after
/// removal. A restored pod with limits is not given the pool's sandbox.
pub(crate) async fn limited_pods(rt: &Runtime, h: &Harness, node: &str, start: Instant) {
    step(start, "pod with memory and CPU limits");
    let parent = parent_cgroup("limited");
    make_kubelet_pod_cgroup(&parent);
    let config = with_limits(pod_config(h, "limited"), &parent);
    let (pod, _, netns) = run_pod(rt, h, &config).await;
    let rel = format!("{parent}/{pod}");
    // The guest gets the containers' 512 MiB (the overhead is the sentry's room); the CPU
    // quota is theirs plus the overhead's.
    let guest: u64 = 512 << 20;
    assert_cgroup_limits(&rel, &pod, host_memory_limit(guest), 60_000, 100_000);
    let server =
        create_and_start(rt, &pod, &config, limited_container("server", node, SERVER)).await;
    let (code, stdout, stderr) =
        exec_node(rt, &server, "console.log(require('os').totalmem())").await;
    assert_eq!(
        (code, stdout.trim()),
        (0, guest.to_string().as_str()),
        "the guest's memory: {stderr}"
    );
    let status = container_status(rt, &server).await;
    let asked = status
        .resources
        .and_then(|r| r.linux)
        .map(|l| (l.memory_limit_in_bytes, l.cpu_quota));
    assert_eq!(asked, Some((512 << 20, 50_000)));
    let stats = ok(
        "PodSandboxStats",
        rt.pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await,
    )
    .stats
    .and_then(|s| s.linux)
    .expect("pod stats");
    let memory = stats.memory.expect("memory");
    let (usage, working) = (
        memory.usage_bytes.map_or(0, |v| v.value),
        memory.working_set_bytes.map_or(0, |v| v.value),
    );
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map_or(0, |v| v.value);
    eprintln!("   pod cgroup: usage {usage} B, working set {working} B, cpu {cpu} ns");
    assert!(usage > 0 && working > 0 && working <= usage && cpu > 0);
    assert!(usage <= host_memory_limit(guest), "{usage}");

    let mut pinned = node_container("pinned", node, SERVER);
    if let Some(linux) = pinned.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            cpuset_cpus: "0".into(),
            ..Default::default()
        });
    }
    let s = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(pinned),
            sandbox_config: Some(config.clone()),
        })
        .await
        .expect_err("cpusets are refused");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{}", s.message());
    assert!(s.message().contains("cpuset_cpus"), "{}", s.message());
    let s = rt
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: server.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 1 << 30,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("no runsc update");
    assert_eq!(s.code(), tonic::Code::Unimplemented, "{}", s.message());
    stop_and_remove_container(rt, &server).await;
    // Gone once the sandbox is, so that kubelet can remove its pod cgroup.
    ok(
        "StopPodSandbox",
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await,
    );
    assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod, &server], &netns).await;
    assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));

    step(
        start,
        "restored pod with limits, not given the pool's sandbox",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rt.pooled().iter().any(|(name, n)| name == POOLED && *n > 0) {
        assert!(
            Instant::now() < deadline,
            "the pool did not fill within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    remove_parent_cgroup(&parent);
    // No kubelet pod cgroup this time: the runtime makes the parent on its way down.
    let parent = parent_cgroup("limited-restored");
    let mut config = with_limits(pod_config(h, "limited-restored"), &parent);
    config
        .annotations
        .insert("dev.nanovisor.checkpoint-image".into(), POOLED.into());
    let (pod, ip, netns) = run_pod(rt, h, &config).await;
    assert!(
        rt.pooled().iter().any(|(name, n)| name == POOLED && *n > 0),
        "a pod with limits claimed a pooled sandbox"
    );
    let server =
        create_and_start(rt, &pod, &config, limited_container("server", node, SERVER)).await;
    assert_eq!(http_get(&ip, 8080).await, "hello from the checkpoint");
    // The restored sandbox is the first container's: PARENT/CONTAINER.
    let rel = format!("{parent}/{server}");
    assert_cgroup_limits(&rel, &server, host_memory_limit(guest), 60_000, 100_000);
    stop_and_remove_container(rt, &server).await;
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod, &server], &netns).await;
    assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));

    // A boot that fails once runsc has made the cgroup leaves none: on cgroup v1 a child's
    // CFS quota may not exceed its parent's, so runsc's write fails after the mkdir.
    if !cgroup_v2() {
        step(start, "a sandbox that fails to boot in its cgroup");
        let tight = parent_cgroup("tight");
        let cpu = Path::new("/sys/fs/cgroup/cpu").join(tight.trim_start_matches('/'));
        std::fs::create_dir_all(&cpu).expect("making the parent cgroup");
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "20000").expect("a parent quota");
        let s = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(with_limits(pod_config(h, "tight"), &tight)),
                runtime_handler: String::new(),
            })
            .await
            .expect_err("a quota over the parent's");
        assert!(s.message().contains("cfs_quota"), "{}", s.message());
        let children: Vec<PathBuf> = cgroup_dirs(&tight)
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert!(children.is_empty(), "left by a failed boot: {children:?}");
        remove_parent_cgroup(&tight);
    }

    let mut bad = pod_config(h, "bad-parent");
    if let Some(linux) = bad.linux.as_mut() {
        linux.cgroup_parent = "kubepods/../../etc".into();
    }
    let s = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(bad),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a bad cgroup parent");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{}", s.message());
    remove_parent_cgroup(&parent);

    step(start, "systemd driver: a slice as the cgroup parent");
    // kubelet's systemd driver names a slice; the sandbox gets a scope in it, made the way
    // systemd lays it out (a-b.slice in a.slice), and removed again.
    let slice = format!("nvtest-{}.slice", std::process::id());
    let config = with_limits(pod_config(h, "sliced"), &slice);
    let (pod, _, netns) = run_pod(rt, h, &config).await;
    let slices = format!("/nvtest.slice/{slice}");
    let rel = format!("{slices}/nanovisor-{pod}.scope");
    assert_cgroup_limits(&rel, &pod, host_memory_limit(guest), 60_000, 100_000);
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod], &netns).await;
    assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));
    remove_parent_cgroup(&slices);

    step(
        start,
        "a pod whose kubelet pod cgroup has no limit gets none",
    );
    let parent = parent_cgroup("open");
    for controller in ["memory", "cpu"] {
        let dir = if cgroup_v2() {
            Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/'))
        } else {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(parent.trim_start_matches('/'))
        };
        std::fs::create_dir_all(&dir).expect("making the pod cgroup");
    }
    // kubelet sums only the containers that declare limits; its own pod cgroup is limited
    // only when all do: a pod of one limited and one unlimited container has none.
    let config = with_limits(pod_config(h, "open"), &parent);
    let (pod, _, netns) = run_pod(rt, h, &config).await;
    let rel = format!("{parent}/{pod}");
    if cgroup_v2() {
        assert_eq!(cgroup_file("", &rel, "memory.max"), "max");
    } else {
        let unlimited = cgroup_file("memory", &parent, "memory.limit_in_bytes");
        assert_eq!(
            cgroup_file("memory", &rel, "memory.limit_in_bytes"),
            unlimited
        );
        assert_eq!(cgroup_file("cpu", &rel, "cpu.cfs_quota_us"), "-1");
    }
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod], &netns).await;
    assert!(cgroup_dirs(&rel).is_empty(), "{:?}", cgroup_dirs(&rel));
    remove_parent_cgroup(&parent);
}

/// The checkpoint name the test's pool restores (the same image as `web`).
/// Allocates and touches 16 MiB at a time, saying so, until it is killed.
pub(crate) const HOG: &str =
    "let n = 0; const kept = []; for (;;) { kept.push(Buffer.alloc(16 << 20, 1));\
    n += 16; console.log(`holding ${n} MiB`); }";

/// A container that fills its pod's memory (256 MiB, the least a guest gets, so that it is
/// quick) is ended by the sandbox's OOM killer, and its status says so as containerd's does
/// for a memory cgroup's OOM kill: exited, 137, reason `OOMKilled`.
pub(crate) async fn oom_killed_pod(rt: &Runtime, h: &Harness, node: &str, start: Instant) {
    step(start, "a container over its pod's memory");
    let parent = parent_cgroup("oom");
    make_kubelet_pod_cgroup(&parent);
    let mut config = with_limits(pod_config(h, "oom"), &parent);
    if let Some(r) = config.linux.as_mut().and_then(|l| l.resources.as_mut()) {
        r.memory_limit_in_bytes = 256 << 20;
    }
    let (pod, _, netns) = run_pod(rt, h, &config).await;
    let mut hog = node_container("hog", node, HOG);
    if let Some(linux) = hog.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        });
    }
    let ctr = ok(
        "CreateContainer",
        rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(hog),
            sandbox_config: Some(config.clone()),
        })
        .await,
    )
    .container_id;
    ok(
        "StartContainer",
        rt.start_container(StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await,
    );
    let log = PathBuf::from(&config.log_directory).join("hog.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = container_status(rt, &ctr).await;
        if s.state == ContainerState::ContainerExited as i32 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the hog has not been OOM-killed after 30 s: state {}; its log:\n{}",
            s.state,
            read(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    step(
        start,
        &format!(
            "hog exited: code {}, reason {:?}",
            status.exit_code, status.reason
        ),
    );
    let text = read(&log);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled"),
        "the hog's exit (message {:?}); its log:\n{text}",
        status.message
    );
    assert!(
        text.contains("holding 128 MiB"),
        "the hog got little memory before the kill; its log:\n{text}"
    );
    stop_and_remove_container(rt, &ctr).await;
    stop_and_remove_pod(rt, &pod).await;
    assert_pod_gone(h, &[&pod, &ctr], &netns).await;
    remove_parent_cgroup(&parent);
}

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
#[allow(dead_code)]
#[path = "cri/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "cri/image.rs"]
mod image;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{read, Harness};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::*;
use nanovisor_pods::{Config, PoolConfig, Runtime, WarmUp};
use nanovisor_tests::runsc;
use nanovisor_tests::shim_binary;

const SERVER: &str = "require('http').createServer((q, r) => r.end('hello from nanovisor'))\
    .listen(8080, () => console.log('listening on 8080'))";
const PEER: &str = "const get = () => require('http').get('http://127.0.0.1:8080/', r => {\
    let b = ''; r.on('data', d => b += d); r.on('end', () => console.log('peer got: ' + b)); })\
    .on('error', e => { console.log('peer error: ' + e.message); setTimeout(get, 200); });\
    get(); setInterval(() => {}, 1000);";
const CHECKPOINTED_SERVER: &str = "const booted = 'hello from the checkpoint';\
    require('http').createServer((q, r) => r.end(booted)).listen(8080)";

fn step(start: Instant, what: &str) {
    eprintln!("== [{:6.2}s] {what}", start.elapsed().as_secs_f64());
}

fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
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

fn node_container(name: &str, image: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["node".into(), "-e".into(), script.into()],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ok<T>(what: &str, r: Result<T, tonic::Status>) -> T {
    r.unwrap_or_else(|s| panic!("{what}: {:?}: {}", s.code(), s.message()))
}

async fn run_pod(rt: &Runtime, h: &Harness, config: &PodSandboxConfig) -> (String, String, String) {
    let pod = ok(
        "RunPodSandbox",
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "nanovisor".into(),
        })
        .await,
    )
    .pod_sandbox_id;
    let status = ok(
        "PodSandboxStatus",
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await,
    );
    let s = status.status.expect("a status");
    assert_eq!(s.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(s.runtime_handler, "nanovisor");
    let ip = s.network.map(|n| n.ip).unwrap_or_default();
    assert!(
        ip.starts_with(h.subnet.trim_end_matches("0/24")),
        "the pod's address {ip:?} is not in {}",
        h.subnet
    );
    let info = status.info.get("info").cloned().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&info).expect("verbose info is JSON");
    let netns = v["netNamespacePath"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(netns.starts_with("/var/run/netns/cni-"), "{info}");
    (pod, ip, netns)
}

async fn stop_and_remove_pod(rt: &Runtime, pod: &str) {
    ok(
        "StopPodSandbox",
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await,
    );
    let s = ok(
        "PodSandboxStatus",
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        })
        .await,
    );
    assert_eq!(
        s.status.map(|s| s.state),
        Some(PodSandboxState::SandboxNotready as i32)
    );
    ok(
        "RemovePodSandbox",
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await,
    );
    assert!(rt.list_pod_sandbox(None).await.iter().all(|p| p.id != pod));
}

async fn create_and_start(
    rt: &Runtime,
    pod: &str,
    sandbox: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let ctr = ok(
        "CreateContainer",
        rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
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
    let s = container_status(rt, &ctr).await;
    let log = PathBuf::from(&sandbox.log_directory).join(format!("{name}.log"));
    assert_eq!(
        s.state,
        ContainerState::ContainerRunning as i32,
        "{name}: exit {} {:?}; log:\n{}",
        s.exit_code,
        s.reason,
        read(&log)
    );
    assert!(s.started_at >= s.created_at && s.created_at > 0);
    ctr
}

async fn container_status(rt: &Runtime, id: &str) -> ContainerStatus {
    ok(
        "ContainerStatus",
        rt.container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await,
    )
    .status
    .expect("a status")
}

async fn exec_node(rt: &Runtime, ctr: &str, script: &str) -> (i32, String, String) {
    let r = ok(
        "ExecSync",
        rt.exec_sync(ExecSyncRequest {
            container_id: ctr.into(),
            cmd: vec!["node".into(), "-e".into(), script.into()],
            timeout: 60,
        })
        .await,
    );
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

async fn stop_and_remove_container(rt: &Runtime, ctr: &str) {
    ok(
        "StopContainer",
        rt.stop_container(StopContainerRequest {
            container_id: ctr.into(),
            timeout: 2,
        })
        .await,
    );
    let s = container_status(rt, ctr).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert!(s.finished_at >= s.started_at, "finished_at");
    eprintln!("   exit code {} ({})", s.exit_code, s.reason);
    ok(
        "RemoveContainer",
        rt.remove_container(RemoveContainerRequest {
            container_id: ctr.into(),
        })
        .await,
    );
}

async fn wait_for_log(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = read(path);
        if log
            .lines()
            .any(|l| l.contains(" stdout F ") && l.ends_with(text))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {}:\n{log}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /` from the host; the body of a 200.
async fn http_get(ip: &str, port: u16) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect((ip, port)).await?;
            s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
                .await?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).await?;
            Ok::<_, std::io::Error>(reply)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(reply)) if reply.starts_with("HTTP/1.1 200") => {
                return reply
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default();
            }
            other => assert!(
                Instant::now() < deadline,
                "no HTTP 200 from {ip}:{port}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (15 s) until no process or mount names the pod or its containers and its network
/// namespace is gone. (The pool's sandboxes stay: `assert_nothing_left` comes after shutdown.)
async fn assert_pod_gone(h: &Harness, ids: &[&str], netns: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (procs, mounts) = (h.processes_naming(ids), h.mounts_naming(ids));
        let ns_left = Path::new(netns).exists();
        if procs.is_empty() && mounts.is_empty() && !ns_left {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind by pod {}: processes {procs:#?}, mounts {mounts:#?}, netns {netns} {}",
            ids[0],
            if ns_left { "still there" } else { "gone" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn boot_processes(h: &Harness, pod: &str) -> Vec<String> {
    h.processes_naming(&[pod])
        .into_iter()
        .filter(|p| p.contains(" boot ") && p.contains(pod))
        .collect()
}

/// kubelet's pod cgroup (cgroupfs driver) for the test's pods with limits: made by runsc on
/// the way down, removed by [`remove_parent_cgroup`] (the sandbox's own directory is the
/// runtime's to remove).
fn parent_cgroup(name: &str) -> String {
    format!("/nanovisor-pods-test-{}/pod-{name}", std::process::id())
}

/// Whether the host's cgroups are v2 only (else v1, or the hybrid layout).
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directories that exist of cgroup `rel` (`/a/b`) under any hierarchy.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
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
fn cgroup_file(controller: &str, rel: &str, file: &str) -> String {
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
fn host_memory_limit(guest: u64) -> u64 {
    guest + (128 << 20) + guest / 32
}

/// The sandbox cgroup `rel` holds a process naming `id`, and has these limits.
fn assert_cgroup_limits(rel: &str, id: &str, memory: u64, quota: u64, period: u64) {
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
fn remove_parent_cgroup(parent: &str) {
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
fn with_limits(mut config: PodSandboxConfig, parent: &str) -> PodSandboxConfig {
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
fn make_kubelet_pod_cgroup(parent: &str) {
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
fn limited_container(name: &str, image: &str, script: &str) -> ContainerConfig {
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
async fn limited_pods(rt: &Runtime, h: &Harness, node: &str, start: Instant) {
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
const HOG: &str = "let n = 0; const kept = []; for (;;) { kept.push(Buffer.alloc(16 << 20, 1));\
    n += 16; console.log(`holding ${n} MiB`); }";

/// A container that fills its pod's memory (256 MiB, the least a guest gets, so that it is
/// quick) is ended by the sandbox's OOM killer, and its status says so as containerd's does
/// for a memory cgroup's OOM kill: exited, 137, reason `OOMKilled`.
async fn oom_killed_pod(rt: &Runtime, h: &Harness, node: &str, start: Instant) {
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

const POOLED: &str = "web-pooled";

fn build_checkpoint(h: &Harness, runsc: &Path, rootfs: &Path, name: &str) {
    let bundle = h.dir.join("ckpt-bundle");
    std::fs::create_dir_all(&bundle).expect("creating the checkpoint's bundle");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "args": ["node", "-e", CHECKPOINTED_SERVER],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "checkpoint",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}]},
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("writing config.json");
    let out = std::process::Command::new(runsc)
        .arg("--root")
        .arg(h.dir.join("build-root"))
        .args(["image", "build", "-o"])
        .arg(h.dir.join("images"))
        .args(["--ready-port", "8080", "--timeout", "120", "--bundle"])
        .arg(&bundle)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running runsc image build");
    assert!(
        out.status.success(),
        "runsc image build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let checkpoints = h.dir.join("checkpoints");
    std::fs::create_dir_all(&checkpoints).expect("creating the checkpoint directory");
    std::os::unix::fs::symlink(&image, checkpoints.join(name)).expect("naming the image");
    std::os::unix::fs::symlink(&image, checkpoints.join(POOLED)).expect("naming the image");
}

async fn pull(h: &mut Harness, image: &str) {
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

async fn booted_pods(rt: &Runtime, h: &Harness, node: &str, start: Instant) -> Duration {
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

async fn restored_pod(rt: &Runtime, h: &Harness, node: &str, start: Instant) -> Duration {
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
async fn pooled_pods(
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
async fn released_after_restart(
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
fn our_snapshots(h: &Harness) -> Vec<String> {
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
async fn failures(rt: &Runtime, config: &Config, h: &Harness, node: &str) {
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

async fn errors(rt: &Runtime, h: &Harness) {
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

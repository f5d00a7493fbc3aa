//! The product's acceptance test through Kubernetes' CRI: containerd's stock runc shim with
//! `options.BinaryName = <our runsc>` (runtime handler `nanovisor`) runs a pod.
//!
//! The test starts a local registry and a private containerd (see `cri/harness.rs`), builds two
//! images without podman (`cri/image.rs`: the host's Node.js in a minimal root file system, and a
//! static pause program), pushes them with skopeo, and drives containerd's CRI from a Rust client
//! (`k8s-cri` over the unix socket):
//!
//! 1. Version; Status until the network is ready; PullImage over the registry protocol.
//! 2. The pause container alone: RunPodSandbox (handler `nanovisor`), PodSandboxStatus (ready,
//!    an address in the pod /24), a `runsc boot` process holding the pod, StopPodSandbox,
//!    RemovePodSandbox.
//! 3. A pod with an app container: RunPodSandbox, CreateContainer (Node printing a line and
//!    staying up), StartContainer, ContainerStatus until RUNNING, the line in the container's
//!    CRI log file, ExecSync (`node -e "console.log(6*7)"` → `42`, exit 0), StopContainer,
//!    RemoveContainer, StopPodSandbox, RemovePodSandbox.
//! 4. After each pod: no shim or `runsc boot` process, no mount under the scratch directory, no
//!    pod network namespace and no container cgroup is left.
//!
//! On failure the test prints containerd's warnings and errors, `ctr tasks ls` and runsc's logs
//! (each bundle's `log.json`) before it cleans up; containerd's whole log stays in
//! `target/cri-e2e/containerd.log`, and `NANOVISOR_CRI_KEEP=1` keeps the scratch directory.
//!
//! Needs root and Debian's `containerd`, `containernetworking-plugins`, `docker-registry`,
//! `skopeo`, `protobuf-compiler` (for k8s-cri's build), `iproute2` and `gcc`; fails, not skips,
//! naming what is missing. The images are cached under `target/cri-images/`.

#[path = "cri/harness.rs"]
mod harness;
#[path = "cri/image.rs"]
mod image;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{read, Harness, HANDLER};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use nanovisor_tests::runsc;
use tonic::transport::Channel;

/// How long one CRI call may take (RunPodSandbox and PullImage included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long StopContainer and StopPodSandbox may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Fails, naming the apt package, when something the test runs is missing.
fn prerequisites() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(
        euid, 0,
        "the CRI test runs containerd, mounts and network namespaces and needs root"
    );
    let needs: [(&str, &str); 13] = [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("/usr/lib/cni/bridge", "containernetworking-plugins"),
        ("/usr/lib/cni/host-local", "containernetworking-plugins"),
        ("/usr/lib/cni/loopback", "containernetworking-plugins"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("protoc", "protobuf-compiler"),
        ("ip", "iproute2"),
        ("gcc", "gcc"),
        ("gzip", "gzip"),
        ("sha256sum", "coreutils"),
    ];
    let missing: Vec<String> = needs
        .iter()
        .filter(|(what, _)| !found(what))
        .map(|(what, pkg)| format!("{what} (apt-get install {pkg})"))
        .collect();
    assert!(
        missing.is_empty(),
        "the CRI test needs: {}",
        missing.join(", ")
    );
}

/// An absolute path that exists, or a command on PATH (or in an sbin directory).
fn found(what: &str) -> bool {
    if what.starts_with('/') {
        return Path::new(what).exists();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|dir| Path::new(dir).join(what).is_file());
    found
}

fn log_step(start: Instant, what: &str) {
    eprintln!("== [{:6.2}s] {what}", start.elapsed().as_secs_f64());
}

/// Awaits a CRI call with a time limit; its answer, or a panic with containerd's error (which
/// carries the runtime's).
async fn call<T>(
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    call_within(CALL_TIMEOUT, what, fut).await
}

async fn call_within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => panic!("{what}: no answer within {limit:?}"),
        Ok(Err(status)) => panic!("{what} failed: {:?}: {}", status.code(), status.message()),
        Ok(Ok(response)) => response.into_inner(),
    }
}

struct Cri {
    rt: RuntimeServiceClient<Channel>,
    im: ImageServiceClient<Channel>,
    start: Instant,
}

impl Cri {
    fn step(&self, what: &str) {
        log_step(self.start, what);
    }

    /// A pod's config: its own network namespace (the CNI bridge), pid namespace per
    /// container, logs under the scratch directory.
    fn pod_config(&self, h: &Harness, name: &str) -> PodSandboxConfig {
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
            labels: HashMap::from([("app".into(), "nanovisor-cri-test".into())]),
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

    /// RunPodSandbox with our handler; checks PodSandboxStatus (ready, our handler, an address
    /// in the pod /24) and returns the pod's id and network namespace path (if the status
    /// names one).
    async fn run_pod(
        &mut self,
        h: &Harness,
        config: &PodSandboxConfig,
    ) -> (String, Option<String>) {
        self.step("RunPodSandbox");
        let pod = call(
            "RunPodSandbox",
            self.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: HANDLER.into(),
            }),
        )
        .await
        .pod_sandbox_id;
        let status = call(
            "PodSandboxStatus",
            self.rt.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            }),
        )
        .await;
        let s = status
            .status
            .clone()
            .expect("PodSandboxStatus has a status");
        let ip = s.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
        self.step(&format!("pod {} ready, ip {ip}", &pod[..12]));
        assert_eq!(s.state, PodSandboxState::SandboxReady as i32, "pod state");
        assert_eq!(s.runtime_handler, HANDLER, "pod runtime handler");
        let prefix = h.subnet.trim_end_matches("0/24");
        assert!(
            ip.starts_with(prefix),
            "the pod's address {ip:?} is not in {}",
            h.subnet
        );
        // The stock runc shim ran our runsc, whose sandbox process holds the pod.
        let procs = h.our_processes();
        assert!(
            procs
                .iter()
                .any(|p| p.contains(" boot ") && p.contains(pod.as_str())),
            "no `runsc boot` process for pod {pod}; processes naming {}:\n{}",
            h.dir.display(),
            procs.join("\n")
        );
        let netns = status.info.values().find_map(|v| {
            let at = v.find("/var/run/netns/cni-")?;
            let rest = &v[at..];
            let end = rest.find('"').unwrap_or(rest.len());
            Some(rest[..end].to_string())
        });
        (pod, netns)
    }

    async fn stop_and_remove_pod(&mut self, pod: &str) {
        self.step("StopPodSandbox");
        call_within(
            STOP_TIMEOUT,
            "StopPodSandbox",
            self.rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            }),
        )
        .await;
        let status = call(
            "PodSandboxStatus",
            self.rt.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: false,
            }),
        )
        .await;
        assert_eq!(
            status.status.map(|s| s.state),
            Some(PodSandboxState::SandboxNotready as i32),
            "pod state after StopPodSandbox"
        );
        self.step("RemovePodSandbox");
        call(
            "RemovePodSandbox",
            self.rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            }),
        )
        .await;
        let pods = call(
            "ListPodSandbox",
            self.rt
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .await
        .items;
        assert!(
            pods.iter().all(|p| p.id != pod),
            "the pod is still listed after RemovePodSandbox"
        );
    }

    async fn container_status(&mut self, id: &str) -> ContainerStatus {
        call(
            "ContainerStatus",
            self.rt.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }),
        )
        .await
        .status
        .expect("ContainerStatus has a status")
    }
}

/// The pod's network and IPC namespaces, a PID namespace per container: kubelet's default.
fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// After RemovePodSandbox: no process, mount or network namespace of the pod is left, and no
/// cgroup directory of its containers (`/sys/fs/cgroup/*/k8s.io/ID`, containerd's cgroupsPath
/// with the cgroupfs driver).
fn assert_gone(h: &Harness, netns: &Option<String>, ids: &[&str]) {
    h.assert_nothing_left(Duration::from_secs(15));
    if let Some(ns) = netns {
        assert!(
            !Path::new(ns).exists(),
            "the pod's network namespace {ns} is still there"
        );
    }
    let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|controller| {
            ids.iter()
                .map(move |id| controller.path().join("k8s.io").join(id))
        })
        .filter(|dir| dir.exists())
        .collect();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
}

async fn scenario(h: &mut Harness, image: &str, start: Instant) {
    let channel = h.connect().await;
    let mut cri = Cri {
        rt: RuntimeServiceClient::new(channel.clone()),
        im: ImageServiceClient::new(channel),
        start,
    };

    cri.step("Version");
    let v = call(
        "Version",
        cri.rt.version(VersionRequest {
            version: "v1".into(),
        }),
    )
    .await;
    eprintln!(
        "   runtime {} {}, CRI {}",
        v.runtime_name, v.runtime_version, v.runtime_api_version
    );
    assert_eq!(v.runtime_name, "containerd");

    // The CRI plugin loads the CNI config asynchronously; pods fail until it has.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = call("Status", cri.rt.status(StatusRequest { verbose: false })).await;
        let conditions = st.status.map(|s| s.conditions).unwrap_or_default();
        if conditions.iter().all(|c| c.status) && !conditions.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd's CRI is not ready: {conditions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cri.step(&format!("PullImage {image}"));
    let pulled = call(
        "PullImage",
        cri.im.pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await;
    eprintln!("   {}", pulled.image_ref);

    // The pause container alone in its sandbox.
    let solo = cri.pod_config(h, "nv-solo");
    let (pod, netns) = cri.run_pod(h, &solo).await;
    cri.stop_and_remove_pod(&pod).await;
    assert_gone(h, &netns, &[&pod]);

    // A pod with Node in it.
    let config = cri.pod_config(h, "nv-node");
    let (pod, netns) = cri.run_pod(h, &config).await;
    cri.step("CreateContainer");
    let ctr = call(
        "CreateContainer",
        cri.rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "node".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                command: vec![
                    "node".into(),
                    "-e".into(),
                    "console.log('hello from nanovisor'); setInterval(() => {}, 1000)".into(),
                ],
                log_path: "node.log".into(),
                // What kubelet sends for a pod without shareProcessNamespace.
                linux: Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options: Some(namespaces()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        }),
    )
    .await
    .container_id;

    cri.step("StartContainer");
    call(
        "StartContainer",
        cri.rt.start_container(StartContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await;
    let log_path = PathBuf::from(&config.log_directory).join("node.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cri.container_status(&ctr).await;
        if s.state == ContainerState::ContainerRunning as i32 {
            break;
        }
        assert!(
            s.state != ContainerState::ContainerExited as i32,
            "the container exited: code {}, reason {:?}, message {:?}; its log:\n{}",
            s.exit_code,
            s.reason,
            s.message,
            read(&log_path)
        );
        assert!(
            Instant::now() < deadline,
            "the container is not running after 30 s: state {}",
            s.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cri.step("container RUNNING; reading its log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = read(&log_path);
        // CRI log lines: `TIMESTAMP stdout F hello from nanovisor`.
        if log
            .lines()
            .any(|l| l.contains(" stdout ") && l.ends_with("hello from nanovisor"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 'hello from nanovisor' in {} after 30 s:\n{log}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cri.step("ExecSync node -e console.log(6*7)");
    let exec = call(
        "ExecSync",
        cri.rt.exec_sync(ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec!["node".into(), "-e".into(), "console.log(6*7)".into()],
            timeout: 60,
        }),
    )
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&exec.stdout).into_owned(),
        String::from_utf8_lossy(&exec.stderr).into_owned(),
    );
    assert_eq!(
        (exec.exit_code, stdout.trim()),
        (0, "42"),
        "ExecSync: exit {}, stdout {stdout:?}, stderr {stderr:?}",
        exec.exit_code
    );

    cri.step("StopContainer");
    call_within(
        STOP_TIMEOUT,
        "StopContainer",
        cri.rt.stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            // Node as its pid namespace's init ignores SIGTERM: SIGKILL follows after 2 s.
            timeout: 2,
        }),
    )
    .await;
    let s = cri.container_status(&ctr).await;
    assert_eq!(
        s.state,
        ContainerState::ContainerExited as i32,
        "container state after StopContainer (reason {:?})",
        s.reason
    );
    eprintln!("   exit code {} ({})", s.exit_code, s.reason);
    cri.step("RemoveContainer");
    call(
        "RemoveContainer",
        cri.rt.remove_container(RemoveContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await;
    cri.stop_and_remove_pod(&pod).await;
    let left = call(
        "ListContainers",
        cri.rt
            .list_containers(ListContainersRequest { filter: None }),
    )
    .await
    .containers;
    assert!(left.is_empty(), "containers left: {left:?}");
    assert_gone(h, &netns, &[&pod, &ctr]);
    cri.step("pod removed, nothing left behind");
}

#[test]
fn cri_runs_a_pod_with_the_runc_shim_and_runsc() {
    let start = Instant::now();
    prerequisites();
    let runsc = runsc();
    let node = image::node_image();
    let pause = image::pause_image();
    log_step(start, "images built (or cached)");

    let mut h = Harness::new();
    h.start_registry();
    let node_ref = h.push(&node, "nanovisor/node");
    let pause_ref = h.push(&pause, "nanovisor/pause");
    log_step(
        start,
        &format!("registry {} has both images", h.registry_addr),
    );
    h.start_containerd(&runsc, &pause_ref);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(scenario(&mut h, &node_ref, start));
    drop(rt);
    drop(h);
    log_step(start, "done");
}

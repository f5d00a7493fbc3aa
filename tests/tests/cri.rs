//! The product's acceptance test through Kubernetes' CRI: containerd runs pods with our shim
//! (`containerd-shim-nanovisor-v1`, runtime handler `nanovisor`), and with its stock runc shim
//! driving our runsc as its runc (`options.BinaryName`, handler `nanovisor-runc`).
//!
//! The test starts a local registry and a private containerd (see `cri/harness.rs`), builds two
//! images without podman (`cri/image.rs`: the host's Node.js in a minimal root file system, and a
//! static pause program), pushes them with skopeo, and drives containerd's CRI from a Rust client
//! (`k8s-cri` over the unix socket):
//!
//! 1. Version; Status until the network is ready; PullImage over the registry protocol.
//!
//! Then, for each handler:
//! 2. The pause container alone: RunPodSandbox, PodSandboxStatus (ready, an address in the pod
//!    /24), a `runsc boot` process holding the pod, StopPodSandbox, RemovePodSandbox.
//! 3. A pod of two containers: a Node HTTP server (its line in its CRI log file; a GET from the
//!    host on the pod's address answers), and a peer that gets the server's answer over the
//!    sandbox's loopback; one `runsc boot` process for the pod; ExecSync (`console.log(6*7)` →
//!    `42`, exit 0; a failing command → its exit code and stderr); ContainerStats;
//!    StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.
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

use harness::{read, Harness, HANDLER, RUNC_SHIM_HANDLER};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use nanovisor_tests::{runsc, shim_binary};
use tonic::transport::Channel;

/// How long one CRI call may take (RunPodSandbox and PullImage included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The pod annotation that names a checkpoint image to restore the pod from.
const CHECKPOINT_ANNOTATION: &str = "dev.nanovisor.checkpoint-image";

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
    /// The runtime handler pods are run with.
    handler: &'static str,
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
    ) -> (String, String, Option<String>) {
        self.step("RunPodSandbox");
        let pod = call(
            "RunPodSandbox",
            self.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: self.handler.into(),
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
        assert_eq!(s.runtime_handler, self.handler, "pod runtime handler");
        let prefix = h.subnet.trim_end_matches("0/24");
        assert!(
            ip.starts_with(prefix),
            "the pod's address {ip:?} is not in {}",
            h.subnet
        );
        // The shim ran our runsc, whose sandbox process holds the pod; or, for a pod restored
        // from a checkpoint image, the shim's holder does until the app container comes.
        let procs = h.our_processes();
        let holder = if config.annotations.contains_key(CHECKPOINT_ANNOTATION) {
            " hold "
        } else {
            " boot "
        };
        assert!(
            procs
                .iter()
                .any(|p| p.contains(holder) && p.contains(pod.as_str())),
            "no process with {holder:?} for pod {pod}; processes naming {}:\n{}",
            h.dir.display(),
            procs.join("\n")
        );
        // The handler's own shim serves the pod: ours, or containerd's runc shim.
        let shim = match self.handler {
            HANDLER => "containerd-shim-nanovisor-v1",
            _ => "containerd-shim-runc-v2",
        };
        assert!(
            procs
                .iter()
                .any(|p| p.contains(shim) && p.contains(pod.as_str())),
            "no {shim} process for pod {pod}:\n{}",
            procs.join("\n")
        );
        let netns = status.info.values().find_map(|v| {
            let at = v.find("/var/run/netns/cni-")?;
            let rest = &v[at..];
            let end = rest.find('"').unwrap_or(rest.len());
            Some(rest[..end].to_string())
        });
        (pod, ip, netns)
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

/// A container of the pod running `node -e SCRIPT`, logging to `NAME.log`.
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
        // What kubelet sends for a pod without shareProcessNamespace.
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

/// The pod's HTTP server: answers every request with a fixed line.
const SERVER: &str = "require('http').createServer((q, r) => r.end('hello from nanovisor'))\
    .listen(8080, () => console.log('listening on 8080'))";

/// The pod's second container: asks the server over the sandbox's loopback, prints the
/// answer, and stays up.
const PEER: &str = "const get = () => require('http').get('http://127.0.0.1:8080/', r => {\
    let b = ''; r.on('data', d => b += d); r.on('end', () => console.log('peer got: ' + b)); })\
    .on('error', e => { console.log('peer error: ' + e.message); setTimeout(get, 200); });\
    get(); setInterval(() => {}, 1000);";

impl Cri {
    async fn create_and_start(
        &mut self,
        pod: &str,
        sandbox: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.step(&format!("CreateContainer {name}"));
        let ctr = call(
            "CreateContainer",
            self.rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            }),
        )
        .await
        .container_id;
        self.step(&format!("StartContainer {name}"));
        call(
            "StartContainer",
            self.rt.start_container(StartContainerRequest {
                container_id: ctr.clone(),
            }),
        )
        .await;
        let log_path = PathBuf::from(&sandbox.log_directory).join(format!("{name}.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.container_status(&ctr).await;
            if s.state == ContainerState::ContainerRunning as i32 {
                break;
            }
            assert!(
                s.state != ContainerState::ContainerExited as i32,
                "{name} exited: code {}, reason {:?}, message {:?}; its log:\n{}",
                s.exit_code,
                s.reason,
                s.message,
                read(&log_path)
            );
            assert!(
                Instant::now() < deadline,
                "{name} is not running after 30 s: state {}",
                s.state
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ctr
    }

    /// ExecSync of `node -e SCRIPT`: exit code, stdout, stderr.
    async fn exec_node(&mut self, ctr: &str, script: &str) -> (i32, String, String) {
        let exec = call(
            "ExecSync",
            self.rt.exec_sync(ExecSyncRequest {
                container_id: ctr.into(),
                cmd: vec!["node".into(), "-e".into(), script.into()],
                timeout: 60,
            }),
        )
        .await;
        (
            exec.exit_code,
            String::from_utf8_lossy(&exec.stdout).into_owned(),
            String::from_utf8_lossy(&exec.stderr).into_owned(),
        )
    }

    async fn stop_and_remove_container(&mut self, ctr: &str) {
        self.step("StopContainer");
        call_within(
            STOP_TIMEOUT,
            "StopContainer",
            self.rt.stop_container(StopContainerRequest {
                container_id: ctr.into(),
                // Node as its pid namespace's init ignores SIGTERM: SIGKILL follows after 2 s.
                timeout: 2,
            }),
        )
        .await;
        let s = self.container_status(ctr).await;
        assert_eq!(
            s.state,
            ContainerState::ContainerExited as i32,
            "container state after StopContainer (reason {:?})",
            s.reason
        );
        eprintln!("   exit code {} ({})", s.exit_code, s.reason);
        self.step("RemoveContainer");
        call(
            "RemoveContainer",
            self.rt.remove_container(RemoveContainerRequest {
                container_id: ctr.into(),
            }),
        )
        .await;
    }
}

/// Waits (30 s) for a CRI log line `TIMESTAMP stdout F <line>` ending in `text`.
async fn wait_for_log(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = read(path);
        if log
            .lines()
            .any(|l| l.contains(" stdout ") && l.ends_with(text))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {} after 30 s:\n{log}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /` from the host; the body of a 200.
fn http_get(ip: &str, port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let addr = format!("{ip}:{port}")
                .parse()
                .map_err(|e| std::io::Error::other(format!("{e}")))?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            Ok(reply)
        })();
        match attempt {
            Ok(reply) if reply.starts_with("HTTP/1.1 200") => {
                return reply
                    .split_once("\r\n\r\n")
                    .map(|(_, body)| body.to_string())
                    .unwrap_or_default();
            }
            other => assert!(
                Instant::now() < deadline,
                "no HTTP 200 from {ip}:{port} within 20 s: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the checkpointed server answers: not what the pod's container command would, so a
/// reply shows the pod was restored rather than booted.
const CHECKPOINTED_SERVER: &str = "const booted = 'hello from the checkpoint';\
    require('http').createServer((q, r) => r.end(booted)).listen(8080)";

/// `runsc image build` of [`CHECKPOINTED_SERVER`] over the Node image's root file system,
/// linked as `<checkpoints>/NAME` (the shim's `checkpoint_dir`).
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
    let images = h.dir.join("images");
    let out = std::process::Command::new(runsc)
        .arg("--root")
        .arg(h.dir.join("build-root"))
        .args(["image", "build", "-o"])
        .arg(&images)
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
}

/// A pod annotated with a checkpoint image: its sandbox container is a holder, its server
/// container is restored from the image (it answers as the checkpointed server, whatever its
/// command says) and takes exec; then it goes like any pod. Returns RunPodSandbox → first 200.
async fn restored_pod(h: &mut Harness, cri: &mut Cri, image: &str, checkpoint: &str) -> Duration {
    let mut config = cri.pod_config(h, "nanovisor-restored");
    config
        .annotations
        .insert(CHECKPOINT_ANNOTATION.into(), checkpoint.into());
    let t0 = Instant::now();
    let (pod, ip, netns) = cri.run_pod(h, &config).await;
    let server = cri
        .create_and_start(&pod, &config, node_container("server", image, SERVER))
        .await;
    let body = http_get(&ip, 8080);
    let elapsed = t0.elapsed();
    assert_eq!(
        body, "hello from the checkpoint",
        "the pod was not restored"
    );
    cri.step(&format!(
        "restored pod answered {:.1} ms after RunPodSandbox",
        elapsed.as_secs_f64() * 1e3
    ));
    let (code, stdout, stderr) = cri.exec_node(&server, "console.log(6*7)").await;
    assert_eq!(
        (code, stdout.trim()),
        (0, "42"),
        "ExecSync in the restored container: stderr {stderr:?}"
    );
    cri.stop_and_remove_container(&server).await;
    cri.stop_and_remove_pod(&pod).await;
    assert_gone(h, &netns, &[&pod, &server]);
    elapsed
}

async fn connect_cri(h: &mut Harness, start: Instant) -> Cri {
    let channel = h.connect().await;
    Cri {
        rt: RuntimeServiceClient::new(channel.clone()),
        im: ImageServiceClient::new(channel),
        start,
        handler: HANDLER,
    }
}

async fn prepare(cri: &mut Cri, image: &str) {
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
}

/// The pause container alone, then a pod of two Node containers sharing one sandbox: an HTTP
/// server reached from the host on the pod's address, and a peer that reaches it over the
/// sandbox's loopback; ExecSync, logs, stats, stop and removal, nothing left behind.
async fn scenario(h: &mut Harness, cri: &mut Cri, image: &str) -> Duration {
    cri.step(&format!("---- runtime handler {} ----", cri.handler));
    let solo = cri.pod_config(h, &format!("{}-solo", cri.handler));
    let (pod, _, netns) = cri.run_pod(h, &solo).await;
    cri.stop_and_remove_pod(&pod).await;
    assert_gone(h, &netns, &[&pod]);

    let config = cri.pod_config(h, &format!("{}-web", cri.handler));
    let t0 = Instant::now();
    let (pod, ip, netns) = cri.run_pod(h, &config).await;
    let logs = PathBuf::from(&config.log_directory);
    let server = cri
        .create_and_start(&pod, &config, node_container("server", image, SERVER))
        .await;
    wait_for_log(&logs.join("server.log"), "listening on 8080").await;
    cri.step(&format!("GET http://{ip}:8080/ from the host"));
    // Blocking is fine here: nothing else runs on the test's runtime meanwhile.
    let body = http_get(&ip, 8080);
    let booted = t0.elapsed();
    assert_eq!(body, "hello from nanovisor");

    let peer = cri
        .create_and_start(&pod, &config, node_container("peer", image, PEER))
        .await;
    wait_for_log(&logs.join("peer.log"), "peer got: hello from nanovisor").await;
    let boots: Vec<String> = h
        .our_processes()
        .into_iter()
        .filter(|p| p.contains(" boot "))
        .collect();
    assert_eq!(
        boots.len(),
        1,
        "the pod's two containers should share one sandbox process:\n{}",
        boots.join("\n")
    );

    cri.step("ExecSync node -e console.log(6*7) in the peer");
    let (code, stdout, stderr) = cri.exec_node(&peer, "console.log(6*7)").await;
    assert_eq!(
        (code, stdout.trim()),
        (0, "42"),
        "ExecSync: exit {code}, stdout {stdout:?}, stderr {stderr:?}"
    );
    cri.step("ExecSync with a failing command");
    let (code, _, stderr) = cri
        .exec_node(&server, "console.error('bad'); process.exit(3)")
        .await;
    assert_eq!(
        (code, stderr.trim()),
        (3, "bad"),
        "ExecSync of a failing command"
    );

    cri.step("ContainerStats");
    let stats = call(
        "ContainerStats",
        cri.rt.container_stats(ContainerStatsRequest {
            container_id: server.clone(),
        }),
    )
    .await
    .stats
    .expect("ContainerStats has stats");
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    eprintln!("   working set {memory} bytes");
    assert!(memory > 0, "ContainerStats reports no memory: {memory}");

    cri.stop_and_remove_container(&peer).await;
    cri.stop_and_remove_container(&server).await;
    cri.stop_and_remove_pod(&pod).await;
    let left = call(
        "ListContainers",
        cri.rt
            .list_containers(ListContainersRequest { filter: None }),
    )
    .await
    .containers;
    assert!(left.is_empty(), "containers left: {left:?}");
    assert_gone(h, &netns, &[&pod, &server, &peer]);
    cri.step("pod removed, nothing left behind");
    booted
}

#[test]
fn cri_runs_pods_with_our_shim_and_with_the_runc_shim() {
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
    h.start_containerd(&runsc, &shim_binary(), &pause_ref);
    build_checkpoint(&h, &runsc, &node.rootfs(), "web");
    log_step(start, "checkpoint image of the server built");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let mut cri = connect_cri(&mut h, start).await;
        prepare(&mut cri, &node_ref).await;
        let booted = scenario(&mut h, &mut cri, &node_ref).await;
        let restored = restored_pod(&mut h, &mut cri, &node_ref, "web").await;
        eprintln!(
            "   RunPodSandbox -> first HTTP 200 (one run each): boot {:.1} ms, restore {:.1} ms",
            booted.as_secs_f64() * 1e3,
            restored.as_secs_f64() * 1e3
        );
        cri.handler = RUNC_SHIM_HANDLER;
        scenario(&mut h, &mut cri, &node_ref).await;
    });
    drop(rt);
    drop(h);
    log_step(start, "done");
}

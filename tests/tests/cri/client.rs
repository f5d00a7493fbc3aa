//! The CRI client side of the tests: a client on one endpoint and handler ([`Cri`]), one
//! method per step of the suite (each checks what the CRI says), the pods' and containers'
//! configs, and what the host sees of a pod (HTTP, its log lines).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{read, Harness};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

/// How long one CRI call may take (RunPodSandbox and PullImage included).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The pod annotation that names a checkpoint image to restore the pod from.
pub(crate) const CHECKPOINT_ANNOTATION: &str = "dev.nanovisor.checkpoint-image";

/// How long StopContainer and StopPodSandbox may take.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn log_step(start: Instant, what: &str) {
    eprintln!("== [{:6.2}s] {what}", start.elapsed().as_secs_f64());
}

/// Awaits a CRI call with a time limit; its answer, or a panic with containerd's error (which
/// carries the runtime's).
pub(crate) async fn call<T>(
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    call_within(CALL_TIMEOUT, what, fut).await
}

pub(crate) async fn call_within<T>(
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

/// Who runs a suite's pods, which decides what the host shows of them.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Runner {
    /// containerd's `nanovisor` handler: our shim, a `runsc boot` per pod naming its id.
    OurShim,
    /// containerd's `nanovisor-runc` handler: its runc shim running our runsc as its runc.
    RuncShimWithRunsc,
    /// containerd's `runc` handler: its runc shim running the host's runc (no runsc at all).
    StockRunc,
    /// nanovisor-cri's own `nanovisor` handler (`nanovisor-pods`): no containerd shim, and a
    /// pod's sandbox may be a pooled one, made before the pod, whose process does not name it.
    Pods,
}

/// A running pod: what RunPodSandbox and PodSandboxStatus said.
pub(crate) struct Pod {
    pub(crate) id: String,
    pub(crate) ip: String,
    /// Its network namespace, if PodSandboxStatus names one.
    pub(crate) netns: Option<String>,
    /// Its sandbox's process, if PodSandboxStatus's verbose info tells it (`"pid"`).
    pub(crate) pid: Option<u32>,
}

pub(crate) struct Cri {
    pub(crate) rt: RuntimeServiceClient<Channel>,
    pub(crate) im: ImageServiceClient<Channel>,
    pub(crate) start: Instant,
    /// The runtime handler pods are run with.
    pub(crate) handler: &'static str,
    /// Who runs them.
    pub(crate) runner: Runner,
    /// The CRI endpoint: `containerd` or `nanovisor-cri`.
    pub(crate) endpoint: &'static str,
}

impl Cri {
    pub(crate) fn step(&self, what: &str) {
        log_step(self.start, what);
    }

    /// Switches to another runtime handler, run by `runner`.
    pub(crate) fn use_handler(&mut self, handler: &'static str, runner: Runner) {
        self.handler = handler;
        self.runner = runner;
    }

    /// A pod's config: its own network namespace (the CNI bridge), pid namespace per
    /// container, logs under the scratch directory.
    pub(crate) fn pod_config(&self, h: &Harness, name: &str) -> PodSandboxConfig {
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
    /// in the pod /24) and the processes that hold the pod, and returns the pod.
    pub(crate) async fn run_pod(&mut self, h: &Harness, config: &PodSandboxConfig) -> Pod {
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
        let procs = h.our_processes();
        // The shim ran our runsc, whose sandbox process holds the pod; or, for a pod restored
        // from a checkpoint image, the shim's holder does until the app container comes.
        let holder = match self.runner {
            Runner::OurShim if config.annotations.contains_key(CHECKPOINT_ANNOTATION) => {
                Some(" hold ")
            }
            Runner::OurShim | Runner::RuncShimWithRunsc => Some(" boot "),
            Runner::StockRunc | Runner::Pods => None,
        };
        if let Some(holder) = holder {
            assert!(
                procs
                    .iter()
                    .any(|p| p.contains(holder) && p.contains(pod.as_str())),
                "no process with {holder:?} for pod {pod}; processes naming {}:\n{}",
                h.dir.display(),
                procs.join("\n")
            );
        }
        // The handler's own shim serves the pod: ours, or containerd's runc shim.
        let shim = match self.runner {
            Runner::OurShim => Some("containerd-shim-nanovisor-v1"),
            Runner::RuncShimWithRunsc | Runner::StockRunc => Some("containerd-shim-runc-v2"),
            Runner::Pods => None,
        };
        if let Some(shim) = shim {
            assert!(
                procs
                    .iter()
                    .any(|p| p.contains(shim) && p.contains(pod.as_str())),
                "no {shim} process for pod {pod}:\n{}",
                procs.join("\n")
            );
        }
        let netns = status.info.values().find_map(|v| {
            let at = v.find("/var/run/netns/cni-")?;
            let rest = &v[at..];
            let end = rest.find('"').unwrap_or(rest.len());
            Some(rest[..end].to_string())
        });
        let pid = status.info.values().find_map(|v| {
            let info: serde_json::Value = serde_json::from_str(v).ok()?;
            u32::try_from(info.get("pid")?.as_u64()?).ok()
        });
        Pod {
            id: pod,
            ip,
            netns,
            pid,
        }
    }

    pub(crate) async fn stop_and_remove_pod(&mut self, pod: &str) {
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

    /// CreateContainer and StartContainer of `config` (its log `NAME.log`), then
    /// ContainerStatus until it has exited (30 s): its id, its last status and its log.
    pub(crate) async fn run_until_exit(
        &mut self,
        pod: &str,
        sandbox: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> (String, ContainerStatus, String) {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
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
        call(
            "StartContainer",
            self.rt.start_container(StartContainerRequest {
                container_id: ctr.clone(),
            }),
        )
        .await;
        let log = PathBuf::from(&sandbox.log_directory).join(format!("{name}.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.container_status(&ctr).await;
            if s.state == ContainerState::ContainerExited as i32 {
                return (ctr, s, read(&log));
            }
            assert!(
                Instant::now() < deadline,
                "{name} has not exited after 30 s: state {}; its log:\n{}",
                s.state,
                read(&log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn container_status(&mut self, id: &str) -> ContainerStatus {
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
pub(crate) fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A container of the pod running `node -e SCRIPT`, logging to `NAME.log`.
pub(crate) fn node_container(name: &str, image: &str, script: &str) -> ContainerConfig {
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
pub(crate) const SERVER: &str =
    "require('http').createServer((q, r) => r.end('hello from nanovisor'))\
    .listen(8080, () => console.log('listening on 8080'))";

/// The pod's second container: asks the server over the sandbox's loopback, prints the
/// answer, and stays up.
pub(crate) const PEER: &str =
    "const get = () => require('http').get('http://127.0.0.1:8080/', r => {\
    let b = ''; r.on('data', d => b += d); r.on('end', () => console.log('peer got: ' + b)); })\
    .on('error', e => { console.log('peer error: ' + e.message); setTimeout(get, 200); });\
    get(); setInterval(() => {}, 1000);";

impl Cri {
    pub(crate) async fn create_and_start(
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
    pub(crate) async fn exec_node(&mut self, ctr: &str, script: &str) -> (i32, String, String) {
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

    pub(crate) async fn stop_and_remove_container(&mut self, ctr: &str) {
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
pub(crate) async fn wait_for_log(path: &Path, text: &str) {
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
pub(crate) fn http_get(ip: &str, port: u16) -> String {
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

/// What Version names as the runtime, straight to containerd and through nanovisor-cri.
pub(crate) const CONTAINERD: &str = "containerd";
pub(crate) const NANOVISOR_CRI: &str = "nanovisor-cri";

/// A CRI client on `channel`, an endpoint named `endpoint`, running pods with `handler`.
pub(crate) fn cri_on(
    channel: Channel,
    endpoint: &'static str,
    handler: &'static str,
    runner: Runner,
    start: Instant,
) -> Cri {
    Cri {
        rt: RuntimeServiceClient::new(channel.clone()),
        im: ImageServiceClient::new(channel),
        start,
        handler,
        runner,
        endpoint,
    }
}

impl Cri {
    /// Exec (the streaming call) through nanovisor-cri: containerd's streaming URL for its
    /// containers; for the nanovisor handler's, a URL or, while it serves no streaming,
    /// Unimplemented saying so.
    pub(crate) async fn check_exec_url(&mut self, ctr: &str) {
        self.step("Exec (the streaming URL)");
        let asked = self
            .rt
            .exec(ExecRequest {
                container_id: ctr.into(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await;
        match (self.runner, asked) {
            (_, Ok(r)) => {
                let url = r.into_inner().url;
                assert!(url.starts_with("http"), "Exec's URL: {url:?}");
            }
            (Runner::Pods, Err(e)) if e.code() == tonic::Code::Unimplemented => {
                eprintln!("   {}", e.message());
            }
            (_, Err(e)) => panic!("Exec failed: {:?}: {}", e.code(), e.message()),
        }
    }

    /// ListPodSandbox and ListContainers, unfiltered and filtered by the pod, show the pod
    /// (ready, with our handler) and exactly its `containers` (running).
    pub(crate) async fn assert_listed(&mut self, pod: &str, containers: &[&str]) {
        self.step("ListPodSandbox, ListContainers");
        let all = call(
            "ListPodSandbox",
            self.rt
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .await
        .items;
        let listed = all.iter().find(|p| p.id == pod);
        assert!(
            listed.is_some_and(|p| p.state == PodSandboxState::SandboxReady as i32
                && p.runtime_handler == self.handler),
            "ListPodSandbox through {} does not show pod {pod} ready with handler {}: {:?}",
            self.endpoint,
            self.handler,
            all.iter()
                .map(|p| (&p.id, p.state, &p.runtime_handler))
                .collect::<Vec<_>>()
        );
        let filtered = call(
            "ListPodSandbox (by id)",
            self.rt.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    id: pod.into(),
                    ..Default::default()
                }),
            }),
        )
        .await
        .items;
        assert_eq!(
            filtered.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            [pod],
            "ListPodSandbox filtered by the pod's id"
        );
        let listed = call(
            "ListContainers (by pod)",
            self.rt.list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: pod.into(),
                    ..Default::default()
                }),
            }),
        )
        .await
        .containers;
        let mut ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        let mut want = containers.to_vec();
        want.sort_unstable();
        assert_eq!(ids, want, "ListContainers filtered by the pod");
        assert!(
            listed
                .iter()
                .all(|c| c.state == ContainerState::ContainerRunning as i32),
            "ListContainers: not all running: {:?}",
            listed.iter().map(|c| (&c.id, c.state)).collect::<Vec<_>>()
        );
    }
}

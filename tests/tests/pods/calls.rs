//! One helper per CRI call of the pods runtime, each checking its answer, and what the
//! host sees of a pod (HTTP, log lines, processes, what is left).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{read, Harness};
use k8s_cri::v1::*;
use nanovisor_pods::Runtime;

pub(crate) use crate::client::wait_for_log;

pub(crate) fn ok<T>(what: &str, r: Result<T, tonic::Status>) -> T {
    r.unwrap_or_else(|s| panic!("{what}: {:?}: {}", s.code(), s.message()))
}

pub(crate) async fn run_pod(
    rt: &Runtime,
    h: &Harness,
    config: &PodSandboxConfig,
) -> (String, String, String) {
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

pub(crate) async fn stop_and_remove_pod(rt: &Runtime, pod: &str) {
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

pub(crate) async fn create_and_start(
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

pub(crate) async fn container_status(rt: &Runtime, id: &str) -> ContainerStatus {
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

pub(crate) async fn exec_node(rt: &Runtime, ctr: &str, script: &str) -> (i32, String, String) {
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

pub(crate) async fn stop_and_remove_container(rt: &Runtime, ctr: &str) {
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

/// `GET /` from the host; the body of a 200.
pub(crate) async fn http_get(ip: &str, port: u16) -> String {
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
pub(crate) async fn assert_pod_gone(h: &Harness, ids: &[&str], netns: &str) {
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

pub(crate) fn boot_processes(h: &Harness, pod: &str) -> Vec<String> {
    h.processes_naming(&[pod])
        .into_iter()
        .filter(|p| p.contains(" boot ") && p.contains(pod))
        .collect()
}

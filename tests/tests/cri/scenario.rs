//! The suite's scenarios: preparing an endpoint, the pause pod and the two-container pod,
//! the pod restored from a checkpoint image (and building that image), and the check that
//! nothing of a removed pod is left.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::harness::{read, Harness};
use k8s_cri::v1::*;

/// After RemovePodSandbox: no process, mount or network namespace of the pod is left, and no
/// cgroup directory of its containers (`/sys/fs/cgroup/*/k8s.io/ID`, containerd's cgroupsPath
/// with the cgroupfs driver).
///
/// Straight to containerd, nothing of ours may be left under the scratch directory at all.
/// Through nanovisor-cri, whose handler keeps pooled sandboxes there, nothing may be left
/// that names the pod's or its containers' ids, nor the pod's sandbox process.
pub(crate) fn assert_gone(h: &Harness, cri: &Cri, pod: &Pod, ids: &[&str]) {
    if cri.endpoint == CONTAINERD {
        h.assert_nothing_left(Duration::from_secs(15));
    } else {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let procs = h.processes_naming(ids);
            let mounts = h.mounts_naming(ids);
            let sandbox = pod
                .pid
                .filter(|pid| Path::new(&format!("/proc/{pid}")).exists() && !zombie(*pid));
            if procs.is_empty() && mounts.is_empty() && sandbox.is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind after pod {} was removed (through {}):\nprocesses naming its \
                 ids:\n  {}\nmounts naming its ids:\n  {}\nits sandbox process: {sandbox:?}",
                pod.id,
                cri.endpoint,
                procs.join("\n  "),
                mounts.join("\n  ")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if let Some(ns) = &pod.netns {
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

/// Whether process `pid` is a zombie (exited, not yet reaped by its parent).
pub(crate) fn zombie(pid: u32) -> bool {
    read(Path::new(&format!("/proc/{pid}/stat")))
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
}

/// What the checkpointed server answers: not what the pod's container command would, so a
/// reply shows the pod was restored rather than booted.
pub(crate) const CHECKPOINTED_SERVER: &str = "const booted = 'hello from the checkpoint';\
    require('http').createServer((q, r) => r.end(booted)).listen(8080)";

/// `runsc image build` of [`CHECKPOINTED_SERVER`] over the Node image's root file system,
/// linked as `<checkpoints>/NAME` (the shim's `checkpoint_dir`).
pub(crate) fn build_checkpoint(h: &Harness, runsc: &Path, rootfs: &Path, name: &str) {
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
pub(crate) async fn restored_pod(
    h: &Harness,
    cri: &mut Cri,
    image: &str,
    checkpoint: &str,
) -> Duration {
    let mut config = cri.pod_config(h, "nanovisor-restored");
    config
        .annotations
        .insert(CHECKPOINT_ANNOTATION.into(), checkpoint.into());
    let t0 = Instant::now();
    let pod = cri.run_pod(h, &config).await;
    let server = cri
        .create_and_start(&pod.id, &config, node_container("server", image, SERVER))
        .await;
    let body = http_get(&pod.ip, 8080);
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
    cri.stop_and_remove_pod(&pod.id).await;
    assert_gone(h, cri, &pod, &[&pod.id, &server]);
    elapsed
}

/// Version (the endpoint's own name), Status until the runtime and the network are ready,
/// PullImage and ListImages.
pub(crate) async fn prepare(cri: &mut Cri, image: &str) {
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
    assert_eq!(v.runtime_name, cri.endpoint, "Version's runtime name");
    if cri.endpoint == NANOVISOR_CRI {
        assert!(
            v.runtime_version.contains("+upstream.containerd."),
            "nanovisor-cri's Version names its upstream: {v:?}"
        );
    }

    // The CRI plugin loads the CNI config asynchronously; pods fail until it has. kubelet
    // reads these two conditions (nanovisor-cri adds its handler's own).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = call("Status", cri.rt.status(StatusRequest { verbose: false })).await;
        let conditions = st.status.map(|s| s.conditions).unwrap_or_default();
        let ready = |t: &str| conditions.iter().any(|c| c.r#type == t && c.status);
        if ready("RuntimeReady") && ready("NetworkReady") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd's CRI is not ready: {conditions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    if cri.endpoint == NANOVISOR_CRI {
        let st = call("Status", cri.rt.status(StatusRequest { verbose: true })).await;
        assert!(
            !st.info.is_empty(),
            "Status (verbose) through nanovisor-cri has no info from containerd"
        );
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
    cri.step("ListImages");
    let images = call(
        "ListImages",
        cri.im.list_images(ListImagesRequest { filter: None }),
    )
    .await
    .images;
    assert!(
        images
            .iter()
            .any(|i| i.id == pulled.image_ref || i.repo_tags.iter().any(|t| t == image)),
        "ListImages through {} does not show {image} ({}): {:?}",
        cri.endpoint,
        pulled.image_ref,
        images
            .iter()
            .map(|i| (&i.id, &i.repo_tags))
            .collect::<Vec<_>>()
    );
}

/// The pause container alone, then a pod of two Node containers sharing one sandbox: an HTTP
/// server reached from the host on the pod's address, and a peer that reaches it over the
/// sandbox's loopback; ExecSync, logs, stats, stop and removal, nothing left behind.
pub(crate) async fn scenario(h: &Harness, cri: &mut Cri, image: &str) -> Duration {
    cri.step(&format!(
        "---- runtime handler {} through {} ----",
        cri.handler, cri.endpoint
    ));
    let solo = cri.pod_config(h, &format!("{}-solo", cri.handler));
    let pod = cri.run_pod(h, &solo).await;
    cri.stop_and_remove_pod(&pod.id).await;
    assert_gone(h, cri, &pod, &[&pod.id]);

    let config = cri.pod_config(h, &format!("{}-web", cri.handler));
    let t0 = Instant::now();
    let pod = cri.run_pod(h, &config).await;
    let ip = pod.ip.clone();
    let logs = PathBuf::from(&config.log_directory);
    let server = cri
        .create_and_start(&pod.id, &config, node_container("server", image, SERVER))
        .await;
    wait_for_log(&logs.join("server.log"), "listening on 8080").await;
    cri.step(&format!("GET http://{ip}:8080/ from the host"));
    // Blocking is fine here: nothing else runs on the test's runtime meanwhile.
    let body = http_get(&ip, 8080);
    let booted = t0.elapsed();
    assert_eq!(body, "hello from nanovisor");

    let peer = cri
        .create_and_start(&pod.id, &config, node_container("peer", image, PEER))
        .await;
    wait_for_log(&logs.join("peer.log"), "peer got: hello from nanovisor").await;
    if matches!(cri.runner, Runner::OurShim | Runner::RuncShimWithRunsc) {
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
    }
    cri.assert_listed(&pod.id, &[&server, &peer]).await;

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

    if cri.endpoint == NANOVISOR_CRI {
        cri.check_exec_url(&peer).await;
    }

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
    cri.stop_and_remove_pod(&pod.id).await;
    let left = call(
        "ListContainers",
        cri.rt
            .list_containers(ListContainersRequest { filter: None }),
    )
    .await
    .containers;
    assert!(left.is_empty(), "containers left: {left:?}");
    assert_gone(h, cri, &pod, &[&pod.id, &server, &peer]);
    cri.step("pod removed, nothing left behind");
    booted
}

//! A container that fills its pod's memory: the sandbox's out-of-memory killer ends it, and
//! CRI reports it as kubelet expects of a memory cgroup's OOM kill, exit code 137 and reason
//! `OOMKilled` (through containerd, from the shim's TaskOOM event).

use crate::client::*;
use crate::harness::Harness;
use k8s_cri::v1::*;

/// The pod's memory, as kubelet sends it (the sum of its containers' limits): the least a
/// guest gets, so that filling it is quick.
const POD_MEMORY: i64 = 256 << 20;

/// Allocates and touches 16 MiB at a time, saying so, until it is killed.
const HOG: &str = "let n = 0; const kept = []; for (;;) { kept.push(Buffer.alloc(16 << 20, 1));\
    n += 16; console.log(`holding ${n} MiB`); }";

pub(crate) async fn oom_killed(h: &Harness, cri: &mut Cri, image: &str) {
    cri.step(&format!(
        "---- a container over its pod's memory, handler {} through {} ----",
        cri.handler, cri.endpoint
    ));
    let mut config = cri.pod_config(h, &format!("{}-oom", cri.handler));
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: POD_MEMORY,
            ..Default::default()
        });
    }
    let pod = cri.run_pod(h, &config).await;
    let mut hog = node_container("hog", image, HOG);
    if let Some(linux) = hog.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: POD_MEMORY,
            ..Default::default()
        });
    }
    cri.step("CreateContainer hog, StartContainer");
    let (ctr, status, text) = cri.run_until_exit(&pod.id, &config, hog).await;
    cri.step(&format!(
        "hog exited: code {}, reason {:?}",
        status.exit_code, status.reason
    ));
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled"),
        "the hog's exit (message {:?}); its log:\n{text}",
        status.message
    );
    // It was killed for filling the guest, not for anything before that.
    assert!(
        text.contains("holding 128 MiB"),
        "the hog got little memory before the kill; its log:\n{text}"
    );
    cri.stop_and_remove_container(&ctr).await;
    cri.stop_and_remove_pod(&pod.id).await;
    crate::scenario::assert_gone(h, cri, &pod, &[&pod.id, &ctr]);
}

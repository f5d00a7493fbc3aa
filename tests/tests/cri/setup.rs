//! What the CRI tests (and the pod start-up benchmark) stand on: the prerequisites, and the
//! [`Suite`]: the images in a local registry, a private containerd, a checkpoint image.

use std::path::Path;
use std::time::Instant;

use crate::client::log_step;
use crate::harness::{Harness, CHECKPOINT_NAME, NODE_REPO, PAUSE_REPO};
use crate::image;
use crate::scenario::build_checkpoint;
use nanovisor_tests::{cri_binary, runsc, shim_binary};

extern "C" {
    #[link_name = "geteuid"]
    pub(crate) fn libc_geteuid() -> u32;
}

/// Fails, naming the apt package, when something the test runs is missing.
pub(crate) fn prerequisites() {
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
pub(crate) fn found(what: &str) -> bool {
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

/// What the tests share: the images in the registry, containerd, the checkpoint image.
pub(crate) struct Suite {
    pub(crate) h: Harness,
    pub(crate) node_ref: String,
    pub(crate) start: Instant,
}

impl Suite {
    pub(crate) fn new() -> Suite {
        let start = Instant::now();
        prerequisites();
        let runsc = runsc();
        // Fail before the slow part when a binary is missing.
        let shim = shim_binary();
        cri_binary();
        let node = image::node_image();
        let pause = image::pause_image();
        log_step(start, "images built (or cached)");

        let mut h = Harness::new();
        h.start_registry();
        let node_ref = h.push(&node, NODE_REPO);
        let pause_ref = h.push(&pause, PAUSE_REPO);
        log_step(
            start,
            &format!("registry {} has both images", h.registry_addr),
        );
        h.start_containerd(&runsc, &shim, &pause_ref);
        build_checkpoint(&h, &runsc, &node.rootfs(), CHECKPOINT_NAME);
        log_step(start, "checkpoint image of the server built");
        let rt = tokio_runtime();
        rt.block_on(h.connect());
        Suite { h, node_ref, start }
    }
}

/// A single-threaded runtime for the CRI client.
pub(crate) fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

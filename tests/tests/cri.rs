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
//! The same suite runs through nanovisor-cri (our CRI server, `cri/`) in front of that
//! containerd, configured with its own `nanovisor` handler (`nanovisor-pods`):
//! - `nanovisor_cri_forwards_runc_pods_upstream`: Version, Status, PullImage and ListImages
//!   through nanovisor-cri, then steps 2-4 with containerd's stock `runc` handler, which
//!   nanovisor-cri forwards; its pods and containers show in nanovisor-cri's lists.
//! - `nanovisor_cri_serves_the_nanovisor_handler`: steps 2-4 and the restored pod through
//!   nanovisor-cri's own `nanovisor` handler. Where a pool's sandbox was made before its pod,
//!   no process names the pod, so the checks after removal look for what names the pod's and
//!   containers' ids (and the sandbox's pid, if PodSandboxStatus tells it) instead.
//!
//! `cri_terminals_through_our_shim` (containerd's `nanovisor` handler, `cri/terminal.rs`): a
//! container with `tty: true` and `stdin: true` logs what its terminal looks like; an exec with
//! a terminal, driven through containerd by `ctr tasks exec -t` under `script` (util-linux, a
//! pty for ctr), gets the size ctr sends with ResizePty and the line typed to it, and its output
//! reaches ctr before its exit code does; `ctr tasks attach` sizes the container's terminal
//! and the container sees the new size (SIGWINCH); a tty container that prints and exits is
//! reported exited with its line in its log; in a pod restored from a checkpoint image, a
//! container with a terminal is refused.
//!
//! `cri_reports_oom_killed_containers_through_our_shim` (`cri/oom.rs`): in a pod with a
//! 256 MiB memory limit, a container that allocates until the sandbox's OOM killer ends it
//! is reported exited 137 with reason `OOMKilled`.
//!
//! The five tests share one registry, containerd and checkpoint image (the first test to come
//! makes them, the last to finish removes them) and run one after another.
//!
//! On failure the test prints containerd's warnings and errors, `ctr tasks ls` and runsc's logs
//! (each bundle's `log.json`), and nanovisor-cri's log, before it cleans up; containerd's whole
//! log stays in `target/cri-e2e/containerd.log` (nanovisor-cri's in
//! `target/cri-e2e/nanovisor-cri.log`), and `NANOVISOR_CRI_KEEP=1` keeps the scratch directory.
//!
//! Needs root and Debian's `containerd`, `containernetworking-plugins`, `docker-registry`,
//! `skopeo`, `protobuf-compiler` (for k8s-cri's build), `iproute2` and `gcc`; fails, not skips,
//! naming what is missing. The images are cached under `target/cri-images/`. Build the whole
//! workspace first (`cargo build --workspace`): the test runs `target/debug/runsc`,
//! `containerd-shim-nanovisor-v1` and `nanovisor-cri`.

#[path = "cri/client.rs"]
mod client;
#[path = "cri/harness.rs"]
mod harness;
#[path = "cri/image.rs"]
mod image;
#[path = "cri/oom.rs"]
mod oom;
#[path = "cri/scenario.rs"]
mod scenario;
#[path = "cri/setup.rs"]
mod setup;
#[path = "cri/terminal.rs"]
mod terminal;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use client::*;
use harness::{
    Harness, NanovisorCri, CHECKPOINT_NAME, HANDLER, RUNC_SHIM_HANDLER, STOCK_RUNC_HANDLER,
};
use k8s_cri::v1::*;
use scenario::*;
use setup::{tokio_runtime, Suite};

/// The shared [`Suite`] (made by the first test that comes, removed when the last one is
/// done), and the turn to use it: the tests run one after another, since each checks that
/// nothing of its pods is left.
fn suite() -> (Arc<Suite>, MutexGuard<'static, ()>) {
    static SHARED: Mutex<Weak<Suite>> = Mutex::new(Weak::new());
    static TURN: Mutex<()> = Mutex::new(());
    let suite = {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        match shared.upgrade() {
            Some(suite) => suite,
            None => {
                let suite = Arc::new(Suite::new());
                *shared = Arc::downgrade(&suite);
                suite
            }
        }
    };
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    // What a test that failed before may have left.
    suite.h.remove_all_pods();
    (suite, turn)
}

/// Prints the harness's diagnostics when the test fails (the harness itself is shared).
struct DiagnoseOnPanic<'a>(&'a Harness);

impl Drop for DiagnoseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.dump_diagnostics();
        }
    }
}

#[test]
fn cri_runs_pods_with_our_shim_and_with_the_runc_shim() {
    let (suite, _turn) = suite();
    let _diagnose = DiagnoseOnPanic(&suite.h);
    let (h, node_ref) = (&suite.h, suite.node_ref.as_str());
    let rt = tokio_runtime();
    rt.block_on(async {
        let ch = harness::connect(&h.socket)
            .await
            .expect("connecting to containerd's CRI");
        let mut cri = cri_on(ch, CONTAINERD, HANDLER, Runner::OurShim, suite.start);
        prepare(&mut cri, node_ref).await;
        let booted = scenario(h, &mut cri, node_ref).await;
        let restored = restored_pod(h, &mut cri, node_ref, CHECKPOINT_NAME).await;
        eprintln!(
            "   RunPodSandbox -> first HTTP 200 (one run each): boot {:.1} ms, restore {:.1} ms",
            booted.as_secs_f64() * 1e3,
            restored.as_secs_f64() * 1e3
        );
        cri.use_handler(RUNC_SHIM_HANDLER, Runner::RuncShimWithRunsc);
        scenario(h, &mut cri, node_ref).await;
    });
    log_step(suite.start, "containerd suite done");
}

/// Terminals through our shim (containerd's `nanovisor` handler): a container with `tty: true`
/// and `stdin: true`, and an exec with a terminal through `ctr tasks exec -t` (ResizePty,
/// stdin, output before the exit), `ctr tasks attach` (the container's ResizePty), and the
/// refusal of a terminal in a restored pod; see `cri/terminal.rs`.
#[test]
fn cri_terminals_through_our_shim() {
    let (suite, _turn) = suite();
    let _diagnose = DiagnoseOnPanic(&suite.h);
    let (h, node_ref) = (&suite.h, suite.node_ref.as_str());
    let rt = tokio_runtime();
    rt.block_on(async {
        let ch = harness::connect(&h.socket)
            .await
            .expect("connecting to containerd's CRI");
        let mut cri = cri_on(ch, CONTAINERD, HANDLER, Runner::OurShim, suite.start);
        prepare(&mut cri, node_ref).await;
        terminal::terminals(h, &mut cri, node_ref).await;
        terminal::restored_terminal_refused(h, &mut cri, node_ref).await;
    });
    log_step(suite.start, "terminals done");
}

/// A container over its pod's memory (`linux.resources`, which sizes the pod's guest) is
/// ended by the sandbox's OOM killer and reported exited 137 with reason `OOMKilled`: our
/// shim publishes TaskOOM before the exit (see `cri/oom.rs`).
#[test]
fn cri_reports_oom_killed_containers_through_our_shim() {
    let (suite, _turn) = suite();
    let _diagnose = DiagnoseOnPanic(&suite.h);
    let (h, node_ref) = (&suite.h, suite.node_ref.as_str());
    let rt = tokio_runtime();
    rt.block_on(async {
        let ch = harness::connect(&h.socket)
            .await
            .expect("connecting to containerd's CRI");
        let mut cri = cri_on(ch, CONTAINERD, HANDLER, Runner::OurShim, suite.start);
        prepare(&mut cri, node_ref).await;
        oom::oom_killed(h, &mut cri, node_ref).await;
    });
    log_step(suite.start, "OOM kill through our shim done");
}

/// Acceptance of nanovisor-cri, part one: with its `[nanovisor]` handler configured, a pod of
/// containerd's stock `runc` handler runs through it (forwarded upstream), and so do Version,
/// Status and the ImageService.
#[test]
fn nanovisor_cri_forwards_runc_pods_upstream() {
    let (suite, _turn) = suite();
    let _diagnose = DiagnoseOnPanic(&suite.h);
    let (h, node_ref) = (&suite.h, suite.node_ref.as_str());
    let mut server = h.start_nanovisor_cri(true);
    let rt = tokio_runtime();
    rt.block_on(async {
        let ch = server.connect().await;
        log_step(suite.start, "nanovisor-cri answers");
        let mut cri = cri_on(
            ch,
            NANOVISOR_CRI,
            STOCK_RUNC_HANDLER,
            Runner::StockRunc,
            suite.start,
        );
        prepare(&mut cri, node_ref).await;
        scenario(h, &mut cri, node_ref).await;
    });
    drop(rt);
    drop(server);
    log_step(suite.start, "runc through nanovisor-cri done");
}

/// Acceptance of nanovisor-cri, part two: the containerd `nanovisor` handler's suite (the
/// pause pod, the two-container pod, the pod restored from a checkpoint image), run through
/// nanovisor-cri's own `nanovisor` handler, which `nanovisor-pods` serves.
#[test]
fn nanovisor_cri_serves_the_nanovisor_handler() {
    let (suite, _turn) = suite();
    let _diagnose = DiagnoseOnPanic(&suite.h);
    let (h, node_ref) = (&suite.h, suite.node_ref.as_str());
    let mut server = h.start_nanovisor_cri(true);
    let rt = tokio_runtime();
    rt.block_on(async {
        let ch = server.connect().await;
        let mut cri = cri_on(ch, NANOVISOR_CRI, HANDLER, Runner::Pods, suite.start);
        wait_for_handler(&mut cri, &server).await;
        prepare(&mut cri, node_ref).await;
        forget_sandbox_image(&mut cri, &h.sandbox_image).await;
        let booted = scenario(h, &mut cri, node_ref).await;
        let restored = restored_pod(h, &mut cri, node_ref, CHECKPOINT_NAME).await;
        eprintln!(
            "   through nanovisor-cri, RunPodSandbox -> first HTTP 200 (one run each): \
             boot {:.1} ms, restore {:.1} ms",
            booted.as_secs_f64() * 1e3,
            restored.as_secs_f64() * 1e3
        );
    });
    drop(rt);
    drop(server);
    log_step(suite.start, "nanovisor handler through nanovisor-cri done");
}

/// Removes the pause image, whichever test ran first: kubelet never pulls a runtime's sandbox
/// image (containerd's CRI pulls its own), so neither may this test.
async fn forget_sandbox_image(cri: &mut Cri, image: &str) {
    cri.step(&format!(
        "RemoveImage {image} (the runtime pulls its sandbox image)"
    ));
    let removed = cri
        .im
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await;
    if let Err(e) = removed {
        assert_eq!(
            e.code(),
            tonic::Code::NotFound,
            "RemoveImage {image}: {}",
            e.message()
        );
    }
}

/// Waits (30 s) until nanovisor-cri's Status says its `nanovisor` handler has started
/// (`NanovisorHandlerReady`), or fails saying why it has not.
async fn wait_for_handler(cri: &mut Cri, server: &NanovisorCri) {
    const CONDITION: &str = "NanovisorHandlerReady";
    cri.step("Status until nanovisor-cri's nanovisor handler has started");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = call("Status", cri.rt.status(StatusRequest { verbose: false })).await;
        let conditions = st.status.map(|s| s.conditions).unwrap_or_default();
        let ours = conditions.iter().find(|c| c.r#type == CONDITION);
        if ours.is_some_and(|c| c.status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nanovisor-cri's `nanovisor` runtime handler (nanovisor-pods) did not start within \
             30 s: {}\nnanovisor-cri's log (last 30 lines):\n{}",
            ours.map_or_else(
                || format!("Status has no {CONDITION} condition: {conditions:?}"),
                |c| format!("{}: {}", c.reason, c.message)
            ),
            server.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! podman drives `runsc` as its OCI runtime: `run --rm`, `run -d` + `exec`, `stop`, `rm`.
//! The image is the host's Node.js in a minimal root file system
//! (`scripts/make-node-image.sh`, imported into podman's local storage; no registry).
//!
//! Needs root and podman (`.ci/run` installs it); fails, not skips, without them.

use std::path::PathBuf;
use std::process::{Command, Output};

use nanovisor_tests::{runsc, workspace_root};

/// The ulimits podman needs on these machines (no CAP_SYS_RESOURCE; see ENV.md).
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

fn podman() -> PathBuf {
    let p = PathBuf::from("/usr/bin/podman");
    assert!(
        p.is_file(),
        "podman is not installed (apt-get install podman; .ci/run does)"
    );
    p
}

fn image() -> String {
    let out = Command::new(workspace_root().join("scripts/make-node-image.sh"))
        .output()
        .expect("running make-node-image.sh");
    assert!(
        out.status.success(),
        "make-node-image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn podman_cmd(args: &[&str]) -> Output {
    let out = Command::new(podman())
        .arg("--runtime")
        .arg(runsc())
        .args(args)
        .output()
        .expect("running podman");
    eprintln!(
        "podman {}: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn podman_runs_node_in_the_sandbox() {
    let image = image();
    let mut args = vec!["run", "--rm"];
    args.extend(ULIMITS);
    args.extend([
        image.as_str(),
        "node",
        "-e",
        "console.log('sum', 1 + 1, require('fs').readFileSync('/etc/hosts', 'utf8').length > 0)",
    ]);
    let out = podman_cmd(&args);
    assert!(out.status.success(), "podman run failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sum 2 true");

    // The exit status comes through.
    let mut args = vec!["run", "--rm"];
    args.extend(ULIMITS);
    args.extend([image.as_str(), "node", "-e", "process.exit(7)"]);
    assert_eq!(podman_cmd(&args).status.code(), Some(7));
}

#[test]
fn podman_exec_stop_and_rm() {
    let image = image();
    let name = format!("nv-podman-{}", std::process::id());
    let _ = podman_cmd(&["rm", "-f", &name]);
    let _cleanup = RemoveOnDrop(name.clone());
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend(ULIMITS);
    args.extend([image.as_str(), "node", "-e", "setInterval(() => {}, 1000)"]);
    assert!(podman_cmd(&args).status.success(), "podman run -d failed");
    let out = podman_cmd(&[
        "exec",
        &name,
        "node",
        "-e",
        "console.log('exec', process.pid > 1)",
    ]);
    let exec_ok =
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "exec true";
    let stop = podman_cmd(&["stop", "-t", "2", &name]);
    let rm = podman_cmd(&["rm", &name]);
    assert!(exec_ok, "podman exec failed");
    assert!(stop.status.success(), "podman stop failed");
    assert!(rm.status.success(), "podman rm failed");
}

/// `podman rm -f NAME` when the test ends, passed or not.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(podman())
            .arg("--runtime")
            .arg(runsc())
            .args(["rm", "-f", &self.0])
            .output();
    }
}

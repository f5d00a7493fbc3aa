//! The stand-in for the sandbox of a pod that is restored from a checkpoint image.
//!
//! Such a pod gets its sandbox only when its app container is created, since the image is
//! restored over that container's root file system. Until then containerd still wants a task
//! for the pod's sandbox container, and it puts the pod's other containers in that task's
//! namespaces (`/proc/PID/ns/net`). So the shim starts a process that enters the pod's
//! network namespace and waits to be killed: `containerd-shim-nanovisor-v1 hold NETNS BUNDLE`
//! (the bundle only names it in process listings). It costs a process spawn, not a sandbox.

use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The first argument that makes the shim binary a holder.
pub const HOLD: &str = "hold";

/// Runs as the holder: enter the network namespace (if any) and wait for a signal.
pub fn run(netns: &str) -> i32 {
    if !netns.is_empty() {
        let entered = std::fs::File::open(netns)
            .map_err(|e| e.to_string())
            .and_then(|ns| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = entered {
            eprintln!("entering the network namespace {netns}: {e}");
            return 1;
        }
    }
    loop {
        // SAFETY: pause has no preconditions; it returns only when a handled signal
        // arrives, and the default actions end the process.
        unsafe { libc::pause() };
    }
}

/// Starts a holder for the network namespace `netns` (empty: the shim's own).
pub fn spawn(netns: &str, bundle: &Path) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg(HOLD)
        .arg(netns)
        .arg(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

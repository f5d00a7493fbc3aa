//! `runsc delete [--force] ID`: remove a stopped container's state (and a created one's,
//! killing its sandbox process, as runc does). `--force` kills a running or paused
//! container first, and succeeds for a container that does not exist.
//!
//! Deleting a pod's sandbox container ends the whole pod (its sandbox process); the
//! pod's other containers are then stopped and delete cleanly. Deleting one of those
//! kills only its own processes in the pod's sandbox.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::commands::GlobalOpts;
use crate::container::dir::DirError;
use crate::container::{host_process, Container, ContainerError, State, Status};

/// How long the sandbox process has to go after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a pod container's waiter has to exit by itself once the container is killed.
const WAITER_GRACE: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is running or paused.
    #[arg(short, long)]
    force: bool,
    /// The container id.
    id: String,
}

pub fn run(args: DeleteArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = match Container::load(&global.root()?, &args.id) {
        Ok(c) => c,
        Err(ContainerError::Dir(DirError::NotFound(_))) if args.force => return Ok(0),
        // A state file we cannot read must not keep a forced delete from cleaning up.
        Err(ContainerError::BadState { .. }) if args.force => {
            let dir = global.root()?.open(&args.id)?;
            let _lock = dir.lock()?;
            dir.remove()?;
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let _lock = c.dir.lock()?;
    let (status, _) = c.status_locked();
    if !status.can_delete() && !args.force {
        bail!(
            "cannot delete container {} that is not stopped: {status}",
            args.id
        );
    }
    destroy(&c)?;
    Ok(0)
}

/// Kills the sandbox process if it still runs (for a container of a pod: the container's
/// processes in the pod's sandbox, and its waiter), then removes the container's cgroup
/// directories (when empty) and its state directory. The caller holds the lock.
pub fn destroy(c: &Container) -> anyhow::Result<()> {
    if let Some(state) = &c.state {
        if c.is_hosted() {
            stop_in_pod(c, state);
        } else {
            kill_process(state.pid, state.pid_start_time, "the sandbox process")?;
        }
        for dir in &state.cgroup_dirs {
            // Only an empty cgroup can go; one still in use, or never made, stays.
            if let Err(e) = std::fs::remove_dir(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!("removing cgroup {}: {e}", dir.display());
                }
            }
        }
        if !c.is_hosted() {
            remove_sandbox_cgroup(state);
        }
    }
    c.dir.remove()?;
    Ok(())
}

/// SIGKILL to host process `pid` if it is still the one that started at `start`; waits
/// until it has gone.
fn kill_process(pid: i32, start: u64, what: &str) -> anyhow::Result<()> {
    if !host_process::is_alive(pid, start) {
        return Ok(());
    }
    match host_process::signal(pid, start, libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => bail!("killing {what} {pid}: {e}"),
    }
    if !host_process::wait_gone(pid, start, KILL_TIMEOUT) {
        bail!(
            "{what} {pid} did not exit within {} s of SIGKILL",
            KILL_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// Ends a container of a pod: SIGKILL to all its processes in the pod's sandbox (a
/// pending init is dropped), then its waiter, which exits by itself once the init has
/// gone (and is killed if it has not within [`WAITER_GRACE`]). The rest of the pod runs
/// on.
fn stop_in_pod(c: &Container, state: &State) {
    if c.sandbox_alive() && c.status_locked().0 != Status::Stopped {
        if let Err(e) = c
            .control()
            .and_then(|mut ctl| ctl.signal(0, true, libc::SIGKILL))
        {
            tracing::debug!(container = c.id(), "killing the container in its pod: {e}");
        }
    }
    if !host_process::wait_gone(state.pid, state.pid_start_time, WAITER_GRACE) {
        if let Err(e) = kill_process(state.pid, state.pid_start_time, "the container's waiter") {
            tracing::warn!("{e:#}");
        }
    }
    // The sandbox lets go of the container's root and mounts: the caller (containerd)
    // unmounts them next.
    if c.sandbox_alive() {
        if let Err(e) = c.control().and_then(|mut ctl| ctl.remove_container()) {
            tracing::debug!(
                container = c.id(),
                "removing the container from its pod: {e}"
            );
        }
    }
}

/// The cgroup `runsc boot` made for the sandbox (from the bundle's `linux.cgroupsPath`,
/// else `nanovisor/ID`); gone once its processes are.
fn remove_sandbox_cgroup(state: &crate::container::State) {
    let config = state.bundle.join("config.json");
    let cgroups_path = oci_spec::runtime::Spec::load(&config)
        .ok()
        .and_then(|s| s.linux().as_ref().and_then(|l| l.cgroups_path().clone()));
    let Ok(path) = crate::confine::cgroup::CgroupPath::from_oci(cgroups_path.as_deref(), &state.id)
    else {
        return;
    };
    // The sandbox process was just killed: give the kernel a moment to empty the group.
    for _ in 0..50 {
        match crate::confine::cgroup::Cgroup::open(&path).and_then(|cg| cg.delete()) {
            Ok(()) => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    tracing::debug!("the sandbox's cgroup {path} could not be removed");
}

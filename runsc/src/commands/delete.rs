//! `runsc delete [--force] ID`: remove a stopped container's state (and a created one's,
//! killing its sandbox process, as runc does). `--force` kills a running or paused
//! container first, and succeeds for a container that does not exist.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::commands::GlobalOpts;
use crate::container::dir::DirError;
use crate::container::{host_process, Container, ContainerError};

/// How long the sandbox process has to go after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Kills the sandbox process if it still runs, then removes the container's cgroup
/// directories (when empty) and its state directory. The caller holds the lock.
pub fn destroy(c: &Container) -> anyhow::Result<()> {
    if let Some(state) = &c.state {
        if host_process::is_alive(state.pid, state.pid_start_time) {
            match host_process::signal(state.pid, state.pid_start_time, libc::SIGKILL) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => bail!("killing the sandbox process {}: {e}", state.pid),
            }
            if !host_process::wait_gone(state.pid, state.pid_start_time, KILL_TIMEOUT) {
                bail!(
                    "the sandbox process {} did not exit within {} s of SIGKILL",
                    state.pid,
                    KILL_TIMEOUT.as_secs()
                );
            }
        }
        for dir in &state.cgroup_dirs {
            // Only an empty cgroup can go; one still in use, or never made, stays.
            if let Err(e) = std::fs::remove_dir(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!("removing cgroup {}: {e}", dir.display());
                }
            }
        }
    }
    c.dir.remove()?;
    Ok(())
}

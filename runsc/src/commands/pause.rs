//! `runsc pause ID`: stop every process of a running container until `runsc resume`.
//!
//! The sandbox stops as a whole, as gVisor's does: pausing any container of a pod pauses
//! every container of that pod (each then reports `paused`), and resuming any resumes
//! them all.

use clap::Args;

use crate::commands::{load, GlobalOpts};

#[derive(Args)]
pub struct PauseArgs {
    /// The container id.
    id: String,
}

pub fn run(args: PauseArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let _lock = c.dir.lock()?;
    let (status, _) = c.status_locked();
    if !status.can_pause() {
        anyhow::bail!("container not running");
    }
    c.control()?.pause()?;
    Ok(0)
}

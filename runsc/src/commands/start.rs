//! `runsc start ID`: start the init of a created container.

use clap::Args;

use crate::commands::{load, GlobalOpts};
use crate::container::{Container, Status};

#[derive(Args)]
pub struct StartArgs {
    /// The container id.
    id: String,
}

pub fn run(args: StartArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let _lock = c.dir.lock()?;
    start(&c, c.status_locked().0)?;
    Ok(0)
}

/// Starts a loaded container in `status`, with runc's messages for the wrong states.
pub fn start(c: &Container, status: Status) -> anyhow::Result<()> {
    if status.can_start() {
        c.control()?.start()?;
        return Ok(());
    }
    match status {
        Status::Stopped => anyhow::bail!("cannot start a container that has stopped"),
        Status::Running => anyhow::bail!("cannot start an already running container"),
        s => anyhow::bail!("cannot start a container in the {s} state"),
    }
}

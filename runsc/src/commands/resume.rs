//! `runsc resume ID`: let a paused container run again (with the rest of its pod: see
//! `pause`).

use clap::Args;

use crate::commands::{load, GlobalOpts};

#[derive(Args)]
pub struct ResumeArgs {
    /// The container id.
    id: String,
}

pub fn run(args: ResumeArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let _lock = c.dir.lock()?;
    let (status, _) = c.status_locked();
    if !status.can_resume() {
        anyhow::bail!("container not paused");
    }
    c.control()?.resume()?;
    Ok(0)
}

//! `runsc state ID`: print the container's OCI state as JSON.

use clap::Args;

use crate::commands::{load, GlobalOpts};

#[derive(Args)]
pub struct StateArgs {
    /// The container id.
    id: String,
}

pub fn run(args: StateArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let (status, _) = c.status();
    println!("{}", serde_json::to_string_pretty(&c.oci_state(status))?);
    Ok(0)
}

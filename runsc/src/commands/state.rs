//! `runsc state ID`: print the container's OCI state as JSON. A stopped container whose
//! init the sandbox's out-of-memory killer ended also says `"oomKilled": true` (a field of
//! our own, as runc adds `rootfs` and `created`): the shim's and nanovisor-pods' way to
//! report the exit as CRI's `OOMKilled`.

use clap::Args;

use crate::commands::{load, oom, GlobalOpts};
use crate::container::Status;

#[derive(Args)]
pub struct StateArgs {
    /// The container id.
    id: String,
}

pub fn run(args: StateArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let (status, _) = c.status();
    let mut state = c.oci_state(status);
    if status == Status::Stopped && oom::init_oom_killed(&c) {
        state["oomKilled"] = serde_json::Value::Bool(true);
    }
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}

//! `runsc wait [--pid PID] ID` (as gVisor's): block until the container's init (or
//! process PID) exits and print `{"id":ID,"exitStatus":N}`, N being 128+S for signal S,
//! with `"oomKilled":true` when the init was ended by the sandbox's OOM killer.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::commands::{load, GlobalOpts};
use crate::container::Status;

#[derive(Args)]
pub struct WaitArgs {
    /// Wait for this process (its pid in the sandbox) instead of the init.
    #[arg(long, default_value_t = 0)]
    pid: i32,
    /// The container id.
    id: String,
}

pub fn run(args: WaitArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    // A created container's init does not exist yet: wait for `start`.
    let status = loop {
        match c.status().0 {
            Status::Created | Status::Creating => std::thread::sleep(Duration::from_millis(100)),
            s => break s,
        }
    };
    if status == Status::Stopped && !c.sandbox_alive() {
        bail!(
            "container {:?} has stopped and its exit status is gone with its sandbox",
            args.id
        );
    }
    let (exit, oom_killed) = c.control()?.wait_exit(args.pid)?;
    let mut out = serde_json::json!({"id": args.id, "exitStatus": exit.code()});
    if args.pid == 0 && oom_killed {
        out["oomKilled"] = serde_json::Value::Bool(true);
    }
    println!("{out}");
    Ok(0)
}

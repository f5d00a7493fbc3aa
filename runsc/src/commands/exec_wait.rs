//! `runsc exec-wait ID PID` (hidden): wait for process PID of container ID and exit with
//! its status. `runsc exec --detach` leaves this behind for conmon or containerd's shim
//! to reap, since the process itself lives in the sandbox, not on the host. Signals that
//! can be caught (SIGTERM, SIGINT, …) are passed on to the process, so that signalling
//! the waiter's pid signals the process; SIGKILL ends only the waiter.

use clap::Args;

use crate::commands::run::{forward_signals, forwarded_set};
use crate::commands::{load, GlobalOpts};

#[derive(Args)]
pub struct ExecWaitArgs {
    /// The container id.
    id: String,
    /// The process's pid in the sandbox.
    pid: i32,
}

pub fn run(args: ExecWaitArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let mask = forwarded_set();
    mask.thread_block()?;
    forward_signals(mask, c.dir.clone(), args.pid);
    let status = c.control()?.wait(args.pid)?;
    Ok(status.code())
}

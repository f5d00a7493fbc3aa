//! `runsc exec-wait [--container C] ID PID` (hidden): wait for process PID of container
//! ID (0: its init) and exit with its status. `runsc exec --detach` leaves this behind
//! for conmon or containerd's shim to reap, since the process itself lives in the
//! sandbox, not on the host. `runsc create` of a further container of a pod leaves one
//! too (`--container C POD 0`: container C's init, in the sandbox of the pod's sandbox
//! container POD), whose pid stands for the container. Signals that can be caught
//! (SIGTERM, SIGINT, …) are passed on to the process, so that signalling the waiter's
//! pid signals the process; SIGKILL ends only the waiter. If the sandbox goes away
//! first, the process went with it: the waiter exits with 128+SIGKILL. An init the
//! sandbox's OOM killer ended is marked as such in its container's state directory
//! before the waiter exits (see oom.rs).

use clap::Args;

use crate::commands::run::{forward_signals, forwarded_set};
use crate::commands::{load, oom, GlobalOpts};
use crate::container::control::{ControlError, Endpoint};

#[derive(Args)]
pub struct ExecWaitArgs {
    /// Wait in the sandbox of container ID for container C (a further container of the
    /// pod whose sandbox container is ID).
    #[arg(long, value_name = "C")]
    container: Option<String>,
    /// The container id.
    id: String,
    /// The process's pid in the sandbox (0: the container's init, once it has started).
    pid: i32,
}

pub fn run(args: ExecWaitArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let to = match args.container {
        Some(container_id) => Endpoint {
            container_id,
            ..c.endpoint()
        },
        None => c.endpoint(),
    };
    let mask = forwarded_set();
    mask.thread_block()?;
    forward_signals(mask, to.clone(), args.pid);
    match to.connect().and_then(|mut ctl| ctl.wait_exit(args.pid)) {
        Ok((status, oom_killed)) => {
            // Before our exit tells the container's end: whoever reaps us and then asks
            // `runsc state` must find the OOM kill, even if the pod is gone by then.
            if args.pid == 0 && oom_killed {
                match load(global, &to.container_id) {
                    Ok(target) => oom::mark(&target),
                    Err(e) => tracing::debug!("{e:#}"),
                }
            }
            Ok(status.code())
        }
        Err(e @ (ControlError::Connect(_) | ControlError::Transport(_))) => {
            tracing::info!(
                container = to.container_id,
                "the sandbox went away ({e}): the process was killed with it"
            );
            Ok(128 + libc::SIGKILL)
        }
        Err(e) => Err(e.into()),
    }
}

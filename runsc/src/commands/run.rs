//! `runsc run [--bundle B] [--detach] [--pid-file F] [--console-socket S] [--keep] ID`:
//! `create` and `start` in one. In the foreground (no `--detach`) it relays a terminal if
//! the process has one, forwards SIGINT, SIGTERM and friends to the container's init,
//! waits for the sandbox process and exits with its status (the init's), then deletes
//! the container unless `--keep`.

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;

use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::commands::create::{self, CreateOpts, Created};
use crate::commands::{delete, start, GlobalOpts};
use crate::console::Relay;
use crate::container::control::Endpoint;
use crate::container::{Container, Status};

#[derive(Args)]
pub struct RunArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Return once the container has started, leaving it running.
    #[arg(short, long)]
    detach: bool,
    /// Write the sandbox process's pid here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to, when process.terminal is set.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Keep the container's state after it exits (foreground only).
    #[arg(long)]
    keep: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    no_new_keyring: bool,
    /// Accepted for runc compatibility; extra fds are not passed to the container yet.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    /// The sandbox's initial network policy (YAML/JSON, docs/acl.md); else the
    /// `dev.nanovisor.acl` / `dev.nanovisor.acl-file` annotations; else allow all.
    #[arg(long, value_name = "FILE")]
    acl: Option<PathBuf>,
    /// The container id.
    id: String,
}

/// Signals `run` and `exec` pass on to the container instead of dying of them.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub fn run(args: RunArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    run_from(args, global, None)
}

/// `run`, or with `restore` (`runsc restore`) the same from a checkpoint image.
pub fn run_from(
    args: RunArgs,
    global: &GlobalOpts,
    restore: Option<(&std::path::Path, crate::commands::restore::WorkingSet)>,
) -> anyhow::Result<i32> {
    let Created {
        container,
        mut child,
        master,
    } = create::create(
        global,
        &CreateOpts {
            id: &args.id,
            bundle: &args.bundle,
            pid_file: args.pid_file.as_deref(),
            console_socket: args.console_socket.as_deref(),
            preserve_fds: args.preserve_fds,
            acl: args.acl.as_deref(),
            foreground: !args.detach,
            restore,
        },
    )?;
    let started = {
        let _lock = container.dir.lock()?;
        start::start(&container, Status::Created)
    };
    if let Err(e) = started {
        let _lock = container.dir.lock()?;
        let _ = delete::destroy(&container);
        let _ = child.wait();
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    // Block the forwarded signals before any thread starts, so every thread inherits
    // the mask and only the forwarding thread takes them.
    let mask = forwarded_set();
    mask.thread_block()?;
    let relay = master.map(Relay::start).transpose()?;
    forward_signals(mask, container.endpoint(), 0);
    let status = child.wait()?;
    if let Some(relay) = relay {
        relay.finish();
    }
    if let Some(sig) = status.signal() {
        // The sandbox process itself died (its exit code is the init's otherwise): say
        // so, since the container's own output cannot.
        report_sandbox_death(&args.id, sig, global);
    }
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    if !args.keep {
        remove(&container)?;
    }
    Ok(code)
}

/// Tell the user (stderr, and the `--log` file) that the sandbox process of container
/// `id` was killed by `sig`, and what that signal usually means here.
fn report_sandbox_death(id: &str, sig: i32, global: &GlobalOpts) {
    let name = Signal::try_from(sig).map_or("unknown signal", |s| s.as_str());
    let why = match sig {
        libc::SIGSYS => {
            ": it made a host system call outside its seccomp policy (the kernel's audit log \
             has a type=1326 line naming it; NANOVISOR_SECCOMP=log logs instead of killing)"
        }
        libc::SIGKILL => ": killed from outside, or by the host's OOM killer",
        _ => "",
    };
    let message =
        format!("the sandbox process of container {id:?} was killed by signal {sig} ({name}){why}");
    say!("runsc: {message}");
    if global.log.is_some() {
        tracing::error!("{message}");
    }
}

fn remove(c: &Container) -> anyhow::Result<()> {
    let _lock = c.dir.lock()?;
    delete::destroy(c)
}

/// The set of [`FORWARDED`] signals.
pub fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set
}

/// Starts a thread that takes the signals of `mask` (which the caller has blocked) and
/// sends each to process `pid` (0: the init) of the container `to` names.
pub fn forward_signals(mask: SigSet, to: Endpoint, pid: i32) {
    std::thread::spawn(move || loop {
        let Ok(sig) = mask.wait() else {
            return;
        };
        let sent = to
            .connect()
            .and_then(|mut c| c.signal(pid, false, sig as i32));
        if let Err(e) = sent {
            tracing::debug!("forwarding {sig}: {e}");
        }
    });
}

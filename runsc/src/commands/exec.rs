//! `runsc exec [--process F] [--detach] [--pid-file F] [--internal-pid-file F]
//! [--console-socket S] [--tty]
//! [--env K=V]… [--cwd DIR] [--user UID[:GID]] ID [CMD ARGS…]`: run another process in a
//! running container.
//!
//! The process gets our stdio (the sandbox receives the fds), or a new terminal. In the
//! foreground we wait for it and exit with its status. With `--detach` we start a waiter
//! (`runsc exec-wait ID PID`, which exits with the process's status), write the waiter's
//! pid to `--pid-file` for whoever reaps it (conmon, containerd's shim) and return.
//! `--internal-pid-file` gets the process's pid in the sandbox, which `kill --pid` takes:
//! the waiter passes on only signals that can be caught, so SIGKILL goes that way.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use clap::Args;
use oci_spec::runtime::Process;

use crate::commands::run::{forward_signals, forwarded_set};
use crate::commands::{load, read_input, write_pid_file, GlobalOpts};
use crate::console::{self, Relay};
use crate::container::Status;
use crate::oci;

#[derive(Args)]
pub struct ExecArgs {
    /// A JSON file with the OCI process to run (`-` for stdin); other flags are ignored.
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short, long)]
    detach: bool,
    /// Write the pid to wait for here (with --detach, the waiter's).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Write the process's pid in the sandbox here.
    #[arg(long, value_name = "FILE")]
    internal_pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(short, long)]
    tty: bool,
    /// An environment variable to add (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// The user: UID or UID:GID.
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Supplementary group ids (repeatable).
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    additional_gids: Vec<u32>,
    /// Accepted for runc compatibility (the guest's capabilities are the sentry's).
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    cap: Vec<String>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    no_new_privs: bool,
    /// Accepted for runc compatibility.
    #[arg(long, value_name = "PROFILE")]
    apparmor: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, value_name = "LABEL")]
    process_label: Option<String>,
    /// Accepted for runc compatibility; extra fds are not passed yet.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    /// Accepted for runc compatibility.
    #[arg(long, value_name = "PATH")]
    cgroup: Option<String>,
    /// The container id.
    id: String,
    /// The command and its arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Parses `--user UID[:GID]`.
pub fn parse_user(text: &str) -> Result<(u32, Option<u32>), String> {
    let bad = || format!("invalid --user {text:?}: want UID or UID:GID (numbers)");
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

/// The process to run: `--process`, or the container's own process with the command,
/// environment, directory, user and terminal of the flags (as runc builds it).
fn build_process(args: &ExecArgs, base: &Process) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        let text = read_input(path)?;
        let process: Process =
            serde_json::from_str(&text).with_context(|| format!("--process {}", path.display()))?;
        oci::check_process(&process)
            .map_err(|e| anyhow::anyhow!("--process {}: {e}", path.display()))?;
        return Ok(process);
    }
    if args.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut p = base.clone();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    if !args.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(args.env.iter().cloned());
        p.set_env(Some(env));
    }
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    let user = p.user_mut();
    if let Some(text) = &args.user {
        let (uid, gid) = parse_user(text).map_err(anyhow::Error::msg)?;
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(0));
        user.set_additional_gids(None);
    }
    if !args.additional_gids.is_empty() {
        user.set_additional_gids(Some(args.additional_gids.clone()));
    }
    oci::check_process(&p).map_err(anyhow::Error::msg)?;
    Ok(p)
}

pub fn run(args: ExecArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let (status, _) = c.status();
    if !status.can_exec() {
        match status {
            Status::Stopped => bail!("cannot exec in a stopped container"),
            Status::Paused => bail!("cannot exec in a paused container"),
            s => bail!("cannot exec in a {s} container: start it first"),
        }
    }
    let Some(state) = &c.state else {
        bail!("cannot exec in a container that is being created");
    };
    let process = build_process(&args, &state.process)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && args.detach && args.console_socket.is_none() {
        bail!("cannot allocate tty if runsc will detach without setting console socket");
    }
    if !terminal && args.console_socket.is_some() {
        bail!("cannot use console socket if runsc will not detach or allocate tty");
    }
    if args.preserve_fds > 0 {
        tracing::warn!(
            "--preserve-fds {}: extra fds are not passed",
            args.preserve_fds
        );
    }
    let spec = oci::process_spec(&process);
    let mut control = c.control()?;

    // The process's stdio: a new terminal, or our own fds.
    let mut relay_master = None;
    let pid = if terminal {
        let size = console::window_size(std::io::stdin().as_fd());
        let pty = console::open_pty(size).context("creating the process's terminal")?;
        let pid = control.exec(spec, &[pty.slave.as_fd()])?;
        drop(pty.slave);
        match &args.console_socket {
            Some(socket) => console::send_master(socket, pty.master.as_fd())?,
            None => relay_master = Some(pty.master),
        }
        pid
    } else {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        control.exec(spec, &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd()])?
    };
    if let Some(path) = &args.internal_pid_file {
        write_pid_file(path, pid)?;
    }

    if args.detach {
        let waiter = Command::new(std::env::current_exe().context("finding the runsc binary")?)
            .args(global.child_args(None))
            .arg("exec-wait")
            .arg(&args.id)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the exec waiter")?;
        if let Some(path) = &args.pid_file {
            write_pid_file(path, waiter.id() as i32)?;
        }
        return Ok(0);
    }

    if let Some(path) = &args.pid_file {
        write_pid_file(path, std::process::id() as i32)?;
    }
    let mask = forwarded_set();
    mask.thread_block()?;
    let relay = relay_master.map(Relay::start).transpose()?;
    forward_signals(mask, c.endpoint(), pid);
    let status = control.wait(pid)?;
    if let Some(relay) = relay {
        relay.finish();
    }
    Ok(status.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        exec: ExecArgs,
    }

    fn parse(args: &[&str]) -> ExecArgs {
        Cli::try_parse_from(std::iter::once("exec").chain(args.iter().copied()))
            .expect("valid flags")
            .exec
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000"), Ok((1000, None)));
        assert_eq!(parse_user("1000:100"), Ok((1000, Some(100))));
        assert!(parse_user("root").is_err());
        assert!(parse_user("1:x").is_err());
    }

    #[test]
    fn builds_from_the_container_process() {
        let args = parse(&[
            "--env", "A=1", "--cwd", "/tmp", "--user", "5:6", "-t", "c1", "ls", "-l", "/",
        ]);
        assert_eq!(args.id, "c1");
        let p = build_process(&args, &Process::default()).expect("valid");
        assert_eq!(
            p.args().as_deref(),
            Some(&["ls".to_string(), "-l".to_string(), "/".to_string()][..])
        );
        assert!(p.env().as_ref().expect("env").contains(&"A=1".to_string()));
        assert!(p
            .env()
            .as_ref()
            .expect("env")
            .iter()
            .any(|e| e.starts_with("PATH=")));
        assert_eq!(p.cwd(), &PathBuf::from("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (5, 6));
        assert_eq!(p.terminal(), Some(true));
        let none = parse(&["c1"]);
        assert!(build_process(&none, &Process::default()).is_err());
    }

    #[test]
    fn reads_a_process_file() {
        let dir = std::env::temp_dir().join(format!("runsc-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("file system");
        let path = dir.join("process.json");
        std::fs::write(
            &path,
            r#"{"terminal":false,"user":{"uid":0,"gid":0},"args":["echo","hi"],"env":["X=1"],"cwd":"/"}"#,
        )
        .expect("file system");
        let args = parse(&["--process", path.to_str().expect("utf-8"), "--detach", "c1"]);
        let p = build_process(&args, &Process::default()).expect("valid");
        assert_eq!(
            p.args().as_deref(),
            Some(&["echo".to_string(), "hi".to_string()][..])
        );
        std::fs::write(&path, r#"{"user":{"uid":0,"gid":0},"args":[],"cwd":"/"}"#)
            .expect("file system");
        let e = build_process(&args, &Process::default()).expect_err("refused");
        assert!(
            e.to_string().contains("process.args must not be empty"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

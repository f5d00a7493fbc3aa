//! `runsc kill [--all | --pid PID] ID [SIGNAL]`: send a signal to the container's init
//! (or, with `--all`, to all its processes; with `--pid`, to one process of it by its pid
//! in the sandbox, as gVisor's runsc does: what `exec --internal-pid-file` wrote). SIGNAL
//! is a name with or without `SIG` (`TERM`, `SIGKILL`) or a number; the default is SIGTERM.

use std::time::Duration;

use clap::Args;

use crate::commands::{load, GlobalOpts};
use nanovisor_proto::control::ErrorCode;

use crate::container::control::ControlError;
use crate::container::{host_process, Container, Status};

#[derive(Args)]
pub struct KillArgs {
    /// Send the signal to every process in the container, not only its init.
    #[arg(short, long, conflicts_with = "pid")]
    all: bool,
    /// Send the signal to this process (its pid in the sandbox) instead of the init.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pid: Option<i32>,
    /// The container id.
    id: String,
    /// The signal: a name (`KILL`, `SIGKILL`) or a number.
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

/// Signals by name, as Linux numbers them on x86-64 and arm64.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Other names for the same signals.
const ALIASES: [(&str, i32); 4] = [("IOT", 6), ("CLD", 17), ("POLL", 29), ("UNUSED", 31)];

/// Parses a signal the way runc does: a number 1-64, or a name with or without `SIG`
/// (any case), including `RTMIN`, `RTMIN+N` and `RTMAX-N`.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let bad = || format!("unknown signal {text:?}");
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = SIGNALS
        .iter()
        .chain(ALIASES.iter())
        .find(|(s, _)| *s == name)
    {
        return Ok(n);
    }
    // Real-time signals: glibc's SIGRTMIN is 34 (two are kept for threads); SIGRTMAX 64.
    let (rtmin, rtmax) = (34, 64);
    let offset = |s: &str| s.parse::<i32>().map_err(|_| bad());
    let n = if name == "RTMIN" {
        rtmin
    } else if name == "RTMAX" {
        rtmax
    } else if let Some(off) = name.strip_prefix("RTMIN+") {
        rtmin + offset(off)?
    } else if let Some(off) = name.strip_prefix("RTMAX-") {
        rtmax - offset(off)?
    } else {
        return Err(bad());
    };
    if (rtmin..=rtmax).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// Whether a signal's default action ends a process (not ignore, stop or continue).
pub fn terminates_by_default(sig: i32) -> bool {
    !matches!(
        sig,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    )
}

pub fn run(args: KillArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let signal = parse_signal(&args.signal).map_err(anyhow::Error::msg)?;
    let c = load(global, &args.id)?;
    let _lock = c.dir.lock()?;
    let (status, _) = c.status_locked();
    match args.pid {
        Some(pid) => kill_process(&c, status, pid, signal)?,
        None => kill(&c, status, signal, args.all)?,
    }
    Ok(0)
}

/// Sends `signal` to process `pid` (in the sandbox) of a running or paused container.
fn kill_process(c: &Container, status: Status, pid: i32, signal: i32) -> anyhow::Result<()> {
    if !matches!(status, Status::Running | Status::Paused) {
        anyhow::bail!("container not running");
    }
    match c.control()?.signal(pid, false, signal) {
        Ok(()) => Ok(()),
        Err(ControlError::Remote { code, message }) if code == ErrorCode::NotFound as i32 => {
            anyhow::bail!("process {pid} not found: {message}")
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to a loaded container in `status`. A created container has no init yet
/// (the sandbox starts it on `start`): a signal that would end a process ends the sandbox
/// process itself, as a signal to runc's waiting init would. A further container of a
/// pod has no sandbox process of its own: its sandbox discards the pending init instead.
pub fn kill(c: &Container, status: Status, signal: i32, all: bool) -> anyhow::Result<()> {
    if !status.can_kill() {
        // runc: `kill --all` of a stopped container signals the processes that are
        // left, none here, and succeeds.
        if all && status == Status::Stopped {
            return Ok(());
        }
        // containerd's shim matches "container not running".
        anyhow::bail!("container not running");
    }
    let Some(state) = &c.state else {
        anyhow::bail!("container not running");
    };
    if status == Status::Created && !c.is_hosted() {
        if terminates_by_default(signal) {
            match host_process::signal(state.pid, state.pid_start_time, libc::SIGKILL) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => anyhow::bail!("killing the sandbox process {}: {e}", state.pid),
            }
            host_process::wait_gone(state.pid, state.pid_start_time, Duration::from_secs(10));
        }
        return Ok(());
    }
    match c.control()?.signal(0, all, signal) {
        Ok(()) => Ok(()),
        // The init ended meanwhile; containerd's shim matches these words.
        Err(ControlError::Remote { code, message }) if code == ErrorCode::NotFound as i32 => {
            anyhow::bail!("container not running: {message}")
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals_like_runc() {
        for (text, n) in [
            ("9", 9),
            ("KILL", 9),
            ("SIGKILL", 9),
            ("kill", 9),
            ("sigterm", 15),
            ("TERM", 15),
            ("SIGINT", 2),
            ("HUP", 1),
            ("USR1", 10),
            ("SIGWINCH", 28),
            ("IOT", 6),
            ("RTMIN", 34),
            ("SIGRTMIN+2", 36),
            ("RTMAX-1", 63),
            ("64", 64),
        ] {
            assert_eq!(parse_signal(text), Ok(n), "{text}");
        }
        for bad in ["", "0", "65", "-1", "FOO", "SIG", "SIGRTMIN+40", "RTMAX-x"] {
            assert_eq!(
                parse_signal(bad),
                Err(format!("unknown signal {bad:?}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_match_libc() {
        for (name, n) in SIGNALS {
            let libc_n = match name {
                "HUP" => libc::SIGHUP,
                "KILL" => libc::SIGKILL,
                "TERM" => libc::SIGTERM,
                "USR1" => libc::SIGUSR1,
                "CHLD" => libc::SIGCHLD,
                "STOP" => libc::SIGSTOP,
                "WINCH" => libc::SIGWINCH,
                "SYS" => libc::SIGSYS,
                _ => n,
            };
            assert_eq!(n, libc_n, "{name}");
        }
    }

    #[test]
    fn default_actions() {
        assert!(terminates_by_default(libc::SIGTERM));
        assert!(terminates_by_default(libc::SIGKILL));
        assert!(!terminates_by_default(libc::SIGWINCH));
        assert!(!terminates_by_default(libc::SIGCHLD));
    }
}

//! A typed wrapper around the `runsc` command line: one method per command the shim uses,
//! each returning what the command printed or an error carrying runsc's own message.
//!
//! Commands that leave a process behind (`create`, `exec --detach`) get
//! the container's stdio, so their error goes to the bundle's `log.json`, where it is read
//! back from. Every other command's stdout and stderr come back through pipes. Exits are
//! taken from [`Exits`], never from `Child::wait`, and only those filed after a mark
//! taken before the spawn: a pid can be an earlier process's, whose exit is still filed
//! (see exits.rs).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::exits::{Exit, Exits, Mark};

/// How long any runsc command may take. `create` waits up to a minute for its sandbox.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A command still running after this is logged (a warning, in containerd's log), and
/// again every time this much more has passed: containerd's clients give up on a call
/// long before [`COMMAND_TIMEOUT`], and then the log tells where the time went.
const SLOW_COMMAND: Duration = Duration::from_secs(10);

/// How long a command's output may take to end after its exit (a process that
/// inherited its stdout or stderr and outlives it would keep it open).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// The longest output read from a command.
const MAX_OUTPUT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RunscError {
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("runsc {command}: {message}")]
    Failed { command: String, message: String },
    #[error("runsc {command}: no exit within {COMMAND_TIMEOUT:?}")]
    Timeout { command: String },
    #[error("runsc {command}: unexpected output: {message}")]
    Output { command: String, message: String },
}

/// A container's or process's stdio, as fds for runsc to hand to the sandbox.
#[derive(Default)]
pub struct Stdio3 {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

pub struct Runsc {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub debug: bool,
    exits: Arc<Exits>,
}

/// What a command printed.
pub struct Output {
    pub stdout: String,
}

impl Runsc {
    pub fn new(binary: PathBuf, root: PathBuf, debug: bool, exits: Arc<Exits>) -> Runsc {
        Runsc {
            binary,
            root,
            debug,
            exits,
        }
    }

    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        if self.debug {
            cmd.arg("--debug");
        }
        cmd
    }

    /// `runsc create --bundle B --pid-file P [--console-socket S] [--checkpoint-image DIR] ID`:
    /// with an image, the sandbox is restored from it and its guest waits for `start`.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        checkpoint_image: Option<&Path>,
        console_socket: Option<&Path>,
        stdio: Stdio3,
    ) -> Result<(), RunscError> {
        let log = log_path(bundle);
        let mut cmd = self.command(Some(&log));
        cmd.arg("create").arg("--bundle").arg(bundle);
        cmd.arg("--pid-file").arg(pid_file);
        if let Some(s) = console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        if let Some(image) = checkpoint_image {
            cmd.arg("--checkpoint-image").arg(image);
        }
        cmd.arg(id);
        self.run_detaching("create", cmd, stdio, &log)
    }

    /// `runsc exec --detach --process F --pid-file P --internal-pid-file I [--console-socket S] ID`.
    #[allow(clippy::too_many_arguments)]
    pub fn exec(
        &self,
        id: &str,
        bundle: &Path,
        process: &Path,
        pid_file: &Path,
        internal_pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: Stdio3,
    ) -> Result<(), RunscError> {
        let log = log_path(bundle);
        let mut cmd = self.command(Some(&log));
        cmd.args(["exec", "--detach", "--process"]).arg(process);
        cmd.arg("--pid-file").arg(pid_file);
        cmd.arg("--internal-pid-file").arg(internal_pid_file);
        if let Some(s) = console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(id);
        self.run_detaching("exec", cmd, stdio, &log)
    }

    pub fn start(&self, id: &str) -> Result<(), RunscError> {
        self.simple("start", &[id]).map(drop)
    }

    /// `runsc kill [--all] ID SIGNAL`.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RunscError> {
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        self.simple_args(&args).map(drop)
    }

    /// `runsc kill --pid PID ID SIGNAL`: one process of the container.
    pub fn kill_pid(&self, id: &str, pid: i32, signal: u32) -> Result<(), RunscError> {
        let (pid, signal) = (pid.to_string(), signal.to_string());
        self.simple_args(&["kill", "--pid", &pid, id, &signal])
            .map(drop)
    }

    pub fn delete(&self, id: &str) -> Result<(), RunscError> {
        self.simple("delete", &["--force", id]).map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<(), RunscError> {
        self.simple("pause", &[id]).map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<(), RunscError> {
        self.simple("resume", &[id]).map(drop)
    }

    /// `runsc ps --format json ID`: the container's pids in the sandbox.
    pub fn ps(&self, id: &str) -> Result<Vec<u32>, RunscError> {
        let out = self.simple("ps", &["--format", "json", id])?;
        serde_json::from_str(out.stdout.trim()).map_err(|e| RunscError::Output {
            command: "ps".into(),
            message: format!("{e}: {:?}", out.stdout),
        })
    }

    /// `runsc events --stats ID`: the stats event's `data`.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value, RunscError> {
        let out = self.simple("events", &["--stats", id])?;
        let event: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).map_err(|e| RunscError::Output {
                command: "events".into(),
                message: format!("{e}: {:?}", out.stdout),
            })?;
        Ok(event
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null))
    }

    /// `runsc state ID`'s `oomKilled`: whether the stopped container's init was ended by
    /// the sandbox's out-of-memory killer.
    pub fn oom_killed(&self, id: &str) -> Result<bool, RunscError> {
        let out = self.simple("state", &[id])?;
        let state: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).map_err(|e| RunscError::Output {
                command: "state".into(),
                message: format!("{e}: {:?}", out.stdout),
            })?;
        Ok(state.get("oomKilled") == Some(&serde_json::Value::Bool(true)))
    }

    /// `runsc checkpoint --image-path DIR [--leave-running] ID`.
    pub fn checkpoint(
        &self,
        id: &str,
        image: &Path,
        leave_running: bool,
    ) -> Result<(), RunscError> {
        let mut cmd = self.command(None);
        cmd.arg("checkpoint").arg("--image-path").arg(image);
        if leave_running {
            cmd.arg("--leave-running");
        }
        cmd.arg(id);
        self.run_captured("checkpoint", cmd).map(drop)
    }

    fn simple(&self, command: &str, args: &[&str]) -> Result<Output, RunscError> {
        let mut cmd = self.command(None);
        cmd.arg(command).args(args);
        self.run_captured(command, cmd)
    }

    fn simple_args(&self, args: &[&str]) -> Result<Output, RunscError> {
        let mut cmd = self.command(None);
        cmd.args(args);
        self.run_captured(args.first().copied().unwrap_or("runsc"), cmd)
    }

    /// Runs a command with piped stdout and stderr; its stdout, or its stderr as the error.
    fn run_captured(&self, command: &str, mut cmd: Command) -> Result<Output, RunscError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = describe(&cmd);
        let since = self.exits.mark();
        let mut child = cmd.spawn().map_err(|source| RunscError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id() as i32;
        // Both pipes in threads: neither can fill while the other is read, and the
        // command's timeout holds even if something it started keeps a pipe open.
        let stdout = child.stdout.take().map(read_to_end_in_thread);
        let stderr = child.stderr.take().map(read_to_end_in_thread);
        let exit = self.wait_exit(pid, since, command, &shown)?;
        let deadline = Instant::now() + OUTPUT_GRACE;
        let stdout = stdout.map_or_else(String::new, |r| collect_output(r, deadline, &shown));
        let stderr = stderr.map_or_else(String::new, |r| collect_output(r, deadline, &shown));
        if exit.status != 0 {
            return Err(RunscError::Failed {
                command: command.into(),
                message: message_of(&stderr, exit.status),
            });
        }
        Ok(Output { stdout })
    }

    /// Waits for the exit of command `pid`, spawned after `since` (at most
    /// [`COMMAND_TIMEOUT`]), logging it while it is slow.
    fn wait_exit(
        &self,
        pid: i32,
        since: Mark,
        command: &str,
        shown: &str,
    ) -> Result<Exit, RunscError> {
        let started = Instant::now();
        loop {
            let left = COMMAND_TIMEOUT.saturating_sub(started.elapsed());
            if left.is_zero() {
                containerd_shim::error!("{shown} (pid {pid}): no exit within {COMMAND_TIMEOUT:?}");
                return Err(RunscError::Timeout {
                    command: command.into(),
                });
            }
            if let Some(exit) = self
                .exits
                .wait_after(pid, since, Some(left.min(SLOW_COMMAND)))
            {
                let took = started.elapsed();
                if took >= SLOW_COMMAND {
                    containerd_shim::warn!("{shown} (pid {pid}): exited after {took:?}");
                }
                return Ok(exit);
            }
            containerd_shim::warn!(
                "{shown} (pid {pid}): still running after {:?}",
                started.elapsed()
            );
        }
    }

    /// Runs a command whose children outlive it with the container's stdio; on failure the
    /// error is the last one runsc logged.
    fn run_detaching(
        &self,
        command: &str,
        mut cmd: Command,
        stdio: Stdio3,
        log: &Path,
    ) -> Result<(), RunscError> {
        cmd.stdin(stdio.stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(stdio.stdout.map_or_else(Stdio::null, Stdio::from))
            .stderr(stdio.stderr.map_or_else(Stdio::null, Stdio::from));
        let since = self.exits.mark();
        let child = cmd.spawn().map_err(|source| RunscError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let shown = describe(&cmd);
        // Our copies of the container's fds went with `cmd`; the sandbox has its own.
        drop(cmd);
        let exit = self.wait_exit(child.id() as i32, since, command, &shown)?;
        if exit.status != 0 {
            let logged = std::fs::read_to_string(log).unwrap_or_default();
            return Err(RunscError::Failed {
                command: command.into(),
                message: message_of(&last_logged_error(&logged), exit.status),
            });
        }
        Ok(())
    }
}

/// The command line, for the log.
fn describe(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("runsc {}", args.join(" "))
}

/// Reads `pipe` to its end on a thread of its own; the text comes through the channel.
fn read_to_end_in_thread(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut pipe).take(MAX_OUTPUT).read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// The output a reader thread got, waiting for it until `deadline` (then nothing: the
/// thread stays blocked until whoever holds the pipe closes it).
fn collect_output(reader: mpsc::Receiver<String>, deadline: Instant, shown: &str) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    reader.recv_timeout(left).unwrap_or_else(|_| {
        containerd_shim::warn!(
            "{shown}: its output did not end within {OUTPUT_GRACE:?} of its exit"
        );
        String::new()
    })
}

/// Where runsc logs for a container: `log.json` in its bundle, as runc's shim has it.
pub fn log_path(bundle: &Path) -> PathBuf {
    bundle.join("log.json")
}

fn message_of(text: &str, status: i32) -> String {
    let text = text.trim();
    let text = text.strip_prefix("runsc: ").unwrap_or(text);
    if text.is_empty() {
        format!("exit status {status}")
    } else {
        text.to_string()
    }
}

/// The message of the last `"level":"error"` entry of a JSON log.
fn last_logged_error(log: &str) -> String {
    log.lines()
        .rev()
        .flat_map(|l| json_objects(l).into_iter().rev())
        .find(|v| v.get("level").and_then(|l| l.as_str()) == Some("error"))
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// Every JSON object on a line of a log, in order, skipping what does not parse. Several
/// processes append to one log: a writer killed before its newline leaves its entry (or
/// part of it) at the start of the next writer's line.
fn json_objects(line: &str) -> Vec<serde_json::Value> {
    let mut objects = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('{') {
        rest = &rest[start..];
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        loop {
            match values.next() {
                Some(Ok(v)) => objects.push(v),
                Some(Err(_)) => break,
                None => return objects,
            }
        }
        // Garbage, or an entry cut short: look for the next object after the character
        // where the bad value began.
        let bad = rest[values.byte_offset()..].trim_start();
        let mut chars = bad.chars();
        chars.next();
        rest = chars.as_str();
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_error_of_a_log() {
        let log = "{\"level\":\"info\",\"msg\":\"a\"}\n\
                   {\"level\":\"error\",\"msg\":\"first\"}\n\
                   not json\n\
                   {\"level\":\"error\",\"msg\":\"bundle: no config.json\"}\n\
                   {\"level\":\"debug\",\"msg\":\"b\"}\n";
        assert_eq!(last_logged_error(log), "bundle: no config.json");
        assert_eq!(last_logged_error(""), "");
        assert_eq!(last_logged_error("{\"level\":\"error\"}\n"), "");
        assert_eq!(message_of("", 1), "exit status 1");
        assert_eq!(
            message_of("runsc: no such container\n", 1),
            "no such container"
        );
    }

    /// Two writers on one line: the first killed before its newline.
    #[test]
    fn reads_an_error_from_a_line_of_two_entries() {
        let log = "{\"level\":\"error\",\"msg\":\"older\"}\n\
                   {\"level\":\"error\",\"msg\":\"cgroup: EINVAL\"}{\"level\":\"info\",\"msg\":\"x\"}\n";
        assert_eq!(last_logged_error(log), "cgroup: EINVAL");
        let log = "{\"level\":\"error\",\"msg\":\"a\"} {\"level\":\"error\",\"msg\":\"b\"}\n";
        assert_eq!(last_logged_error(log), "b");
    }

    /// A writer killed in the middle of its entry: the fragment is skipped, whatever
    /// parses before and after it is kept.
    #[test]
    fn skips_a_fragment_of_an_entry() {
        let log = "{\"level\":\"error\",\"msg\":\"cut sh{\"level\":\"error\",\"msg\":\"whole\"}\n";
        assert_eq!(last_logged_error(log), "whole");
        let log = "{\"level\":\"error\",\"msg\":\"first\"}{\"level\":\"err\n";
        assert_eq!(last_logged_error(log), "first");
        let log = "garbage ] {\"level\":\"error\",\"msg\":\"é\"} ünïcode {\"lev";
        assert_eq!(last_logged_error(log), "é");
        let values = json_objects("[1] {\"a\":1}{oops}{\"b\":{\"c\":2}}} tail");
        assert_eq!(
            values,
            [
                serde_json::json!({"a": 1}),
                serde_json::json!({"b": {"c": 2}})
            ]
        );
        assert!(json_objects("").is_empty());
        assert!(json_objects("{").is_empty());
    }
}

//! `runsc`: Nanovisor's command line. An OCI runtime with runc's and gVisor's command
//! line (`create`, `start`, `state`, `kill`, `delete`, `run`, `exec`, …) for podman,
//! containerd's runc shim and our own shim; `acl` to change a running sandbox's network
//! policy; `do` to run a command sandboxed with no bundle; `help syscalls`.
//!
//! Errors print as `runsc: MESSAGE` on stderr and, when `--log` is given, as a runc-style
//! error line in that file (containerd reads the last one); OCI commands exit 1 on error,
//! as runc does.

/// `eprintln!` that cannot panic: stderr may be a pipe whose reader has gone (`runsc do …
/// 2>&1 | head`), and a message about the sandbox must never bring the sandbox down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod acl_convert;
mod boot;
mod commands;
mod confine;
mod console;
mod container;
mod network;
mod oci;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{GlobalOpts, LogFormat, DEFAULT_ROOT};

#[derive(Parser)]
#[command(
    name = "runsc",
    version = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: ", "1.1.0"),
    about = "Nanovisor: a secure container runtime with a user-space kernel on KVM",
    disable_help_subcommand = true
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Debug logging (every syscall; same as RUST_LOG=debug).
    #[arg(long, global = true)]
    debug: bool,
    /// Where logs go (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The sandbox's network (gVisor's flag, given before the command): passed to the
    /// sandbox process. `runsc do` has its own `--network`.
    #[arg(long, value_name = "none|sandbox|host")]
    network: Option<String>,
    /// Accepted for runc compatibility; cgroups are managed as cgroupfs paths.
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (`auto`, `true`, `false`).
    #[arg(long, global = true, hide = true, value_name = "auto|true|false",
          value_parser = ["auto", "true", "false"], num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    rootless: Option<String>,
    /// Accepted for runc compatibility (checkpoints do not use CRIU).
    #[arg(long, global = true, hide = true, value_name = "PATH")]
    criu: Option<PathBuf>,
    /// Accepted for crun/conmon compatibility (`--cgroup-manager disabled`).
    #[arg(
        long = "cgroup-manager",
        global = true,
        hide = true,
        value_name = "MANAGER"
    )]
    cgroup_manager: Option<String>,
    /// Accepted for gVisor compatibility.
    #[arg(long = "ignore-cgroups", global = true, hide = true)]
    ignore_cgroups: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle (its init starts with `start`).
    Create(commands::create::CreateArgs),
    /// Start a created container's init.
    Start(commands::start::StartArgs),
    /// Print a container's OCI state.
    State(commands::state::StateArgs),
    /// Send a signal to a container's init (or all its processes).
    Kill(commands::kill::KillArgs),
    /// Remove a stopped container.
    Delete(commands::delete::DeleteArgs),
    /// Create and start a container; without --detach, wait for it.
    Run(commands::run::RunArgs),
    /// Run another process in a running container.
    Exec(Box<commands::exec::ExecArgs>),
    /// List a container's processes.
    Ps(commands::ps::PsArgs),
    /// List containers.
    List(commands::list::ListArgs),
    /// Print a container's resource use.
    Events(commands::events::EventsArgs),
    /// Suspend every process of a container.
    Pause(commands::pause::PauseArgs),
    /// Save a running container's whole sandbox as a checkpoint image.
    Checkpoint(commands::checkpoint::CheckpointArgs),
    /// Create and start a container from a checkpoint image.
    Restore(commands::restore::RestoreArgs),
    /// Build checkpoint images of apps; push and pull them to and from a registry.
    Image(commands::image::ImageArgs),
    /// Resume a paused container.
    Resume(commands::resume::ResumeArgs),
    /// Wait for a container's init to exit and print its status.
    Wait(commands::wait::WaitArgs),
    /// Write a starting config.json.
    Spec(commands::spec::SpecArgs),
    /// Print what this runtime implements (OCI features JSON).
    Features(commands::features::FeaturesArgs),
    /// Read and change a running sandbox's network policy.
    Acl(commands::acl::AclArgs),
    /// Run a command in a new sandbox, with no container image or bundle.
    Do(Box<commands::run_do::DoArgs>),
    /// Reference information.
    Help(commands::help::HelpArgs),
    /// Become the sandbox process of a container (started by `create`).
    #[command(hide = true)]
    Boot(commands::boot::BootArgs),
    /// Wait for an exec'd process (left behind by `exec --detach`).
    #[command(hide = true)]
    ExecWait(commands::exec_wait::ExecWaitArgs),
}

/// runc's `--rootless` takes its value after a space (`--rootless auto`) as well as after
/// `=`; clap cannot tell such a value from the subcommand, so join it first. Only flags
/// before the subcommand are touched (after it may come a container's command line).
fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    use clap::CommandFactory as _;
    let subcommands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut out: Vec<OsString> = Vec::new();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if subcommands.iter().any(|s| arg == s.as_str()) {
            out.push(arg);
            out.extend(args);
            break;
        }
        if arg == "--rootless" {
            if let Some(v) = args.next_if(|v| v == "auto" || v == "true" || v == "false") {
                let mut joined = OsString::from("--rootless=");
                joined.push(v);
                out.push(joined);
                continue;
            }
            out.push(arg);
            continue;
        }
        out.push(arg);
    }
    out
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = if cli.debug {
        EnvFilter::new("debug")
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))
    };
    // Colours only for a person at a terminal, never in a log file (`--log`, boot.log).
    let ansi = cli.log.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        // A log line that cannot be written is lost, not reported on stderr with a panic
        // (tracing-subscriber's eprintln!) in whichever thread logged it: a guest thread
        // that dies so never leaves its process, and the sandbox waits for it forever.
        .log_internal_errors(false)
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false);
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match &cli.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("opening log file {}: {e}", path.display()))?;
            let file = std::sync::Arc::new(file);
            Box::new(move || Box::new(file.clone()) as Box<dyn std::io::Write>)
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    match cli.log_format {
        LogFormat::Text => builder.with_writer(writer).init(),
        LogFormat::Json => builder.json().with_writer(writer).init(),
    }
    Ok(())
}

/// Appends an error to the `--log` file as runc (logrus) writes one, so that callers that
/// read the runtime's log for its last error (containerd's shim) find ours.
fn log_error(global: &GlobalOpts, message: &str) {
    if let Some(path) = &global.log {
        append_line(path, &error_line(global.log_format, message));
    }
}

/// An error as runc (logrus) logs one.
fn error_line(format: LogFormat, message: &str) -> String {
    let time = netstack::acl::audit::rfc3339_millis(std::time::SystemTime::now());
    match format {
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": message, "time": time}).to_string()
        }
        LogFormat::Text => format!("time={time:?} level=error msg={message:?}"),
    }
}

/// Appends `line` to the log at `path` in a single write(2), newline included. The sandbox
/// process logs its error to the same file as `create` does, and `create` kills it as soon
/// as it has reported: a line written in pieces (`writeln!` writes the newline on its own)
/// could lose its newline, and the next line, ours, would run into it, leaving a last line
/// that a reader taking one JSON object per line (containerd's shim) cannot parse. A line
/// someone else left unfinished all the same is ended first.
fn append_line(path: &std::path::Path, line: &str) {
    let mut text = String::with_capacity(line.len() + 2);
    if !ends_a_line(path) {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Whether the file at `path` is empty or ends with a newline (also when it cannot be
/// read, or is no regular file: a stream has no end to look at).
fn ends_a_line(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileExt as _;
    let Ok(file) = std::fs::File::open(path) else {
        return true;
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return true,
    };
    let Some(last) = len.checked_sub(1) else {
        return true;
    };
    let mut byte = [0u8; 1];
    !matches!(file.read_at(&mut byte, last), Ok(1) if byte[0] != b'\n')
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    if let Err(e) = init_logging(&cli) {
        say!("runsc: {e:#}");
        return ExitCode::from(125);
    }
    let root = match container::dir::Root::new(&cli.root) {
        Ok(r) => r.path().to_path_buf(),
        Err(e) => {
            say!("runsc: {e}");
            if let Some(path) = &cli.log {
                append_line(path, &error_line(cli.log_format, &e.to_string()));
            }
            return ExitCode::from(1);
        }
    };
    if cli.systemd_cgroup || cli.criu.is_some() || cli.cgroup_manager.is_some() {
        tracing::debug!("ignoring --systemd-cgroup, --criu and --cgroup-manager");
    }
    let global = GlobalOpts {
        root,
        log: cli.log.clone(),
        log_format: cli.log_format,
        debug: cli.debug,
        network: cli.network.clone(),
    };
    let is_do = matches!(cli.command, Command::Do(_));
    // The sandbox process's stderr is the container's: its errors go to its log (and
    // `create` passes on what it reports on the ready pipe).
    let quiet = matches!(cli.command, Command::Boot(_)) && global.log.is_some();
    let result = match cli.command {
        Command::Create(args) => commands::create::run(args, &global),
        Command::Start(args) => commands::start::run(args, &global),
        Command::State(args) => commands::state::run(args, &global),
        Command::Kill(args) => commands::kill::run(args, &global),
        Command::Delete(args) => commands::delete::run(args, &global),
        Command::Run(args) => commands::run::run(args, &global),
        Command::Exec(args) => commands::exec::run(*args, &global),
        Command::Ps(args) => commands::ps::run(args, &global),
        Command::List(args) => commands::list::run(args, &global),
        Command::Events(args) => commands::events::run(args, &global),
        Command::Pause(args) => commands::pause::run(args, &global),
        Command::Checkpoint(args) => commands::checkpoint::run(args, &global),
        Command::Restore(args) => commands::restore::run(args, &global),
        Command::Image(args) => commands::image::run(args, &global),
        Command::Resume(args) => commands::resume::run(args, &global),
        Command::Wait(args) => commands::wait::run(args, &global),
        Command::Spec(args) => commands::spec::run(args, &global),
        Command::Features(args) => commands::features::run(args, &global),
        Command::Acl(args) => commands::acl::run(args, &global),
        Command::Boot(args) => commands::boot::run(args, &global.root),
        Command::ExecWait(args) => commands::exec_wait::run(args, &global),
        Command::Do(args) => commands::run_do::run(*args),
        Command::Help(args) => commands::help::run(args).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let message = format!("{e:#}");
            if !quiet {
                say!("runsc: {message}");
            }
            log_error(&global, &message);
            if is_do {
                // `do` follows the shell: 126 for a command that cannot run, 127 if not
                // found, 125 for the runtime itself.
                ExitCode::from(commands::run_do::error_code(&e))
            } else {
                // runc exits 1 whatever went wrong.
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from)))
    }

    #[test]
    fn runc_style_global_flags() {
        // containerd's runc shim.
        let cli = parse(&[
            "runsc",
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "c1",
        ])
        .expect("valid");
        assert_eq!(cli.root, PathBuf::from("/run/containerd/runc/k8s.io"));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(cli.systemd_cgroup);
        assert!(matches!(cli.command, Command::Create(_)));
        // conmon.
        let cli = parse(&[
            "runsc",
            "--systemd-cgroup",
            "--log-format=json",
            "--log",
            "/x/oci-log",
            "start",
            "c1",
        ])
        .expect("valid");
        assert!(matches!(cli.command, Command::Start(_)));
        // go-runc's rootless flag and runc's spaced form.
        for rootless in [
            &["--rootless=false"][..],
            &["--rootless", "auto"],
            &["--rootless"],
        ] {
            let mut args = vec!["runsc"];
            args.extend_from_slice(rootless);
            args.extend_from_slice(&["--criu", "/usr/sbin/criu", "state", "c1"]);
            let cli = parse(&args).expect("valid");
            assert!(cli.rootless.is_some());
            assert!(matches!(cli.command, Command::State(_)));
        }
        // PyPI gvisor.
        let cli = parse(&[
            "runsc",
            "--root",
            "/s",
            "--ignore-cgroups",
            "--network=none",
            "run",
            "--bundle",
            "/b",
            "--detach",
            "c1",
        ])
        .expect("valid");
        assert_eq!(cli.network.as_deref(), Some("none"));
        // Global flags after the subcommand work too.
        let cli = parse(&["runsc", "kill", "--root", "/s", "c1", "KILL"]).expect("valid");
        assert_eq!(cli.root, PathBuf::from("/s"));
        assert_eq!(
            parse(&["runsc", "list"]).expect("valid").root,
            PathBuf::from(DEFAULT_ROOT)
        );
        assert!(parse(&["runsc", "--log-format", "xml", "list"]).is_err());
        let cli = parse(&["runsc", "spec", "--rootless", "--bundle", "/b"]).expect("valid");
        assert!(matches!(cli.command, Command::Spec(_)));
    }

    #[test]
    fn only_flags_before_the_subcommand_are_rewritten() {
        let args = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
        assert_eq!(
            normalize_args(args(&[
                "runsc",
                "--rootless",
                "auto",
                "exec",
                "c1",
                "x",
                "--rootless",
                "auto"
            ])),
            args(&[
                "runsc",
                "--rootless=auto",
                "exec",
                "c1",
                "x",
                "--rootless",
                "auto"
            ])
        );
        assert_eq!(
            normalize_args(args(&["runsc", "--rootless", "list"])),
            args(&["runsc", "--rootless", "list"])
        );
    }

    #[test]
    fn exec_takes_the_command_after_the_id() {
        let cli = parse(&[
            "runsc", "--root", "/s", "exec", "--cwd", "/", "--env", "A=1", "c1", "ls", "-la",
        ])
        .expect("valid");
        let Command::Exec(_) = cli.command else {
            panic!("not exec");
        };
        let cli = parse(&["runsc", "kill", "--all", "c1", "9"]).expect("valid");
        assert!(matches!(cli.command, Command::Kill(_)));
        let cli = parse(&["runsc", "ps", "--format=json", "c1"]).expect("valid");
        assert!(matches!(cli.command, Command::Ps(_)));
    }

    #[test]
    fn an_error_line_is_whole_even_after_a_torn_one() {
        let dir = std::env::temp_dir().join(format!("runsc-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("log.json");
        let _ = std::fs::remove_file(&path);
        let global = GlobalOpts {
            root: dir.clone(),
            log: Some(path.clone()),
            log_format: LogFormat::Json,
            debug: false,
            network: None,
        };
        let last = || -> serde_json::Value {
            let text = std::fs::read_to_string(&path).expect("reading the log");
            assert!(text.ends_with('\n'), "{text:?}");
            let line = text.lines().last().expect("a line");
            serde_json::from_str(line).expect("the last line is one JSON object")
        };
        log_error(&global, "first");
        assert_eq!(last()["msg"], "first");
        // A sandbox process killed between its line and its newline.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(br#"{"level":"error","msg":"torn"}"#))
            .expect("appending");
        log_error(&global, "cfs_quota");
        assert_eq!(last()["msg"], "cfs_quota");
        assert_eq!(
            std::fs::read_to_string(&path).expect("log").lines().count(),
            3
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}

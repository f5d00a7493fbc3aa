//! `runsc`: Nanovisor's command line. Today: `do` (run a command in a fresh sandbox) and
//! `help syscalls`. The OCI runtime commands arrive with issue 5.

mod commands;
mod network;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runsc",
    version,
    about = "Nanovisor: a secure container runtime with a user-space kernel on KVM",
    disable_help_subcommand = true
)]
struct Cli {
    /// Log every syscall (same as RUST_LOG=debug).
    #[arg(long, global = true)]
    debug: bool,
    /// Where logs go (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new sandbox, with no container image or bundle.
    Do(Box<commands::run_do::DoArgs>),
    /// Reference information.
    Help(commands::help::HelpArgs),
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = if cli.debug {
        EnvFilter::new("debug")
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("runsc: {e:#}");
        return ExitCode::from(125);
    }
    let result = match cli.command {
        Command::Do(args) => commands::run_do::run(*args),
        Command::Help(args) => commands::help::run(args).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("runsc: {e:#}");
            // runc and gVisor's runsc use 125 for "the runtime itself failed", and `do`
            // follows the shell: 126 for a command that cannot run, 127 if not found.
            ExitCode::from(commands::run_do::error_code(&e))
        }
    }
}

//! `runsc do [--rootfs DIR] [--cwd DIR] [--env K=V]… -- CMD ARGS…`: run a command in a
//! fresh sandbox; exit with its status (128+N when killed by signal N).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sentry::abi::Errno;
use sentry::sandbox::{self, SandboxConfig, SandboxError};

#[derive(Args)]
pub struct DoArgs {
    /// Root file system (a host directory, read-only; writes go to an in-memory overlay).
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
    /// Working directory inside the sandbox.
    #[arg(long, default_value = "/")]
    cwd: String,
    /// Environment variable for the command (repeatable). Without any, PATH is set.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Guest physical memory, in MiB.
    #[arg(long, default_value_t = 2048)]
    memory_mib: u64,
    /// Host name inside the sandbox.
    #[arg(long, default_value = "nanovisor")]
    hostname: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

pub fn run(args: DoArgs) -> anyhow::Result<i32> {
    for kv in &args.env {
        if !kv.contains('=') || kv.starts_with('=') {
            anyhow::bail!("--env {kv:?}: expected KEY=VALUE");
        }
    }
    if !args.cwd.starts_with('/') {
        anyhow::bail!(
            "--cwd {:?}: must be an absolute path inside the sandbox",
            args.cwd
        );
    }
    let meta = std::fs::metadata(&args.rootfs)
        .with_context(|| format!("--rootfs {}", args.rootfs.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("--rootfs {}: not a directory", args.rootfs.display());
    }
    let mut envp: Vec<Vec<u8>> = args.env.iter().map(|s| s.as_bytes().to_vec()).collect();
    if envp.is_empty() {
        envp.push(b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_vec());
    }
    let argv: Vec<Vec<u8>> = args.command.iter().map(|s| s.as_bytes().to_vec()).collect();
    let status = sandbox::run(SandboxConfig {
        rootfs: args.rootfs,
        cwd: args.cwd.into_bytes(),
        argv,
        envp,
        hostname: args.hostname.into_bytes(),
        memory: args.memory_mib << 20,
    })?;
    Ok(status.shell_code())
}

/// The exit code for a failure of `do` itself.
pub fn error_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<SandboxError>() {
        Some(SandboxError::Exec { errno, .. }) if *errno == Errno::ENOENT => 127,
        Some(SandboxError::Load { source, .. }) if source.errno() == Errno::ENOENT => 127,
        Some(SandboxError::Exec { .. }) | Some(SandboxError::Load { .. }) => 126,
        _ => 125,
    }
}

//! One file per subcommand, and what they share: the global flags ([`GlobalOpts`]) and
//! small helpers for loading containers and writing pid files.

pub mod acl;
pub mod boot;
pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod exec_wait;
pub mod features;
pub mod help;
pub mod image;
pub mod image_build;
pub mod image_pull;
pub mod image_push;
pub mod kill;
pub mod list;
pub mod oom;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod resume;
pub mod run;
pub mod run_do;
pub mod spec;
pub mod start;
pub mod state;
pub mod wait;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::container::dir::Root;
use crate::container::{Container, Status};

/// Where container state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/nanovisor";

/// Log line format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The global flags every command gets.
#[derive(Clone, Debug)]
pub struct GlobalOpts {
    /// The state root (`--root`), absolute.
    pub root: PathBuf,
    /// `--log`.
    pub log: Option<PathBuf>,
    pub log_format: LogFormat,
    pub debug: bool,
    /// gVisor's `--network` (`none`, `sandbox`, `host`), passed on to `runsc boot`.
    pub network: Option<String>,
}

impl GlobalOpts {
    /// The state root.
    pub fn root(&self) -> anyhow::Result<Root> {
        Ok(Root::new(&self.root)?)
    }

    /// The global flags to give a `runsc` we start ourselves (`boot`, `exec-wait`), with
    /// `log` in place of ours when given.
    pub fn child_args(&self, log: Option<&Path>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--root".into(), self.root.clone().into()];
        if let Some(log) = log.or(self.log.as_deref()) {
            args.push("--log".into());
            args.push(log.into());
        }
        args.push("--log-format".into());
        args.push(self.log_format.as_str().into());
        if self.debug {
            args.push("--debug".into());
        }
        if let Some(network) = &self.network {
            args.push(format!("--network={network}").into());
        }
        args
    }
}

/// Loads container `id` under the global root.
pub fn load(global: &GlobalOpts, id: &str) -> anyhow::Result<Container> {
    Ok(Container::load(&global.root()?, id)?)
}

/// Loads container `id` and fails unless it is in a state where the sandbox can answer.
pub fn load_live(global: &GlobalOpts, id: &str) -> anyhow::Result<(Container, Status)> {
    let c = load(global, id)?;
    let (status, _) = c.status();
    if matches!(status, Status::Stopped | Status::Creating) {
        anyhow::bail!("container {id:?} is {status}");
    }
    Ok((c, status))
}

/// Writes `pid` to `path` (relative to the current directory) atomically, as runc does.
pub fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(path)
    };
    crate::container::dir::write_atomic(&path, pid.to_string().as_bytes())
        .with_context(|| format!("writing the pid file {}", path.display()))?;
    Ok(())
}

/// Reads a whole file or stdin (`-`), for flags that take a file.
pub fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_args_carry_the_globals() {
        let g = GlobalOpts {
            root: "/r".into(),
            log: Some("/l.json".into()),
            log_format: LogFormat::Json,
            debug: true,
            network: Some("none".into()),
        };
        let args: Vec<String> = g
            .child_args(None)
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/r",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "--debug",
                "--network=none"
            ]
        );
        let no_log = GlobalOpts { log: None, ..g };
        let args = no_log.child_args(Some(Path::new("/s/boot.log")));
        assert!(args.iter().any(|a| a == "/s/boot.log"));
    }

    #[test]
    fn pid_files_are_written_whole() {
        let dir = std::env::temp_dir().join(format!("runsc-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("file system");
        let path = dir.join("pid");
        write_pid_file(&path, 1234).expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "1234");
        write_pid_file(&path, 5).expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "5");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

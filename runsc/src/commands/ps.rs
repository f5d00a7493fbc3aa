//! `runsc ps [--format table|json] ID`: the container's processes. JSON is an array of
//! pids, as runc prints (containerd's shim reads it); pids are the sandbox's own.

use clap::{Args, ValueEnum};

use crate::commands::{load_live, GlobalOpts};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The container id.
    id: String,
    /// Accepted for runc compatibility (`ps` options); ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    ps_args: Vec<String>,
}

pub fn run(args: PsArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let (c, _) = load_live(global, &args.id)?;
    let processes = c.control()?.processes()?;
    match args.format {
        Format::Json => {
            let pids: Vec<i32> = processes.iter().map(|p| p.pid).collect();
            println!("{}", serde_json::to_string(&pids)?);
        }
        Format::Table => {
            println!("{:<8} {:>7} {:>7}  CMD", "UID", "PID", "PPID");
            for p in &processes {
                let cmd: Vec<String> = p
                    .args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                    .collect();
                println!("{:<8} {:>7} {:>7}  {}", p.uid, p.pid, p.ppid, cmd.join(" "));
            }
        }
    }
    Ok(0)
}

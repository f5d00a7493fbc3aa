//! `runsc help syscalls [--format md|json]`: the syscall table, from the same data the
//! sentry dispatches with.

use clap::{Args, Subcommand, ValueEnum};

#[derive(Args)]
pub struct HelpArgs {
    #[command(subcommand)]
    topic: Topic,
}

#[derive(Subcommand)]
enum Topic {
    /// The syscalls the sentry implements, with their support level.
    Syscalls {
        #[arg(long, value_enum, default_value_t = Format::Md)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Json,
}

#[derive(serde::Serialize)]
struct Row {
    nr: u32,
    name: &'static str,
    support: sentry::syscalls::Support,
    note: &'static str,
}

pub fn run(args: HelpArgs) -> anyhow::Result<()> {
    let Topic::Syscalls { format } = args.topic;
    let rows: Vec<Row> = sentry::syscalls::all()
        .into_iter()
        .map(|d| Row {
            nr: d.nr,
            name: d.name,
            support: d.support,
            note: d.note,
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Md => {
            println!("| nr | name | support | note |\n| ---: | --- | --- | --- |");
            for r in &rows {
                let support = serde_json::to_value(r.support)?;
                println!(
                    "| {} | {} | {} | {} |",
                    r.nr,
                    r.name,
                    support.as_str().unwrap_or("?"),
                    r.note
                );
            }
            println!("\nAny other number returns ENOSYS (counted, and logged once per number).");
        }
    }
    Ok(())
}

//! `runsc list [--format table|json] [-q]`: every container under the root.

use std::io::Write as _;

use clap::{Args, ValueEnum};

use crate::commands::GlobalOpts;
use crate::container::{Container, ContainerError};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Print only the ids.
    #[arg(short, long)]
    quiet: bool,
}

/// The name of `uid` from /etc/passwd, or `#UID` (as runc prints an unknown owner).
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

pub fn run(args: ListArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let root = global.root()?;
    let mut rows = Vec::new();
    for id in root.ids()? {
        let c = match Container::load(&root, &id) {
            Ok(c) => c,
            // Deleted while we listed.
            Err(ContainerError::Dir(_)) => continue,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        let (status, _) = c.status();
        let mut state = c.oci_state(status);
        if let (Some(s), Some(obj)) = (&c.state, state.as_object_mut()) {
            obj.insert("owner".into(), user_name(s.owner).into());
        }
        rows.push(state);
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for r in &rows {
            writeln!(out, "{}", r["id"].as_str().unwrap_or_default())?;
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(&rows)?)?,
        Format::Table => {
            let str_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    [
                        str_of(&r["id"]),
                        r["pid"].to_string(),
                        str_of(&r["status"]),
                        str_of(&r["bundle"]),
                        str_of(&r["created"]),
                        str_of(&r["owner"]),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &table {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(&table) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "#4000000000");
    }
}

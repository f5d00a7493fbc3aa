//! `runsc acl list|add|rm|replace|audit ID …`: read and change the network policy of a
//! running sandbox (docs/acl.md, "Changing a running sandbox"). Rules and policies are
//! checked here, by the same parser the sandbox uses, before they are sent.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use netstack::acl::{AuditMode, Policy};

use crate::acl_convert::{policy_from_proto, policy_to_proto, rule_to_proto};
use crate::commands::{load_live, read_input, GlobalOpts};

#[derive(Args)]
pub struct AclArgs {
    #[command(subcommand)]
    command: AclCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Off,
    Denies,
    All,
}

#[derive(Subcommand)]
enum AclCommand {
    /// Print the current policy (every rule with its id); the output is a valid policy file.
    List {
        /// The container id.
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
    },
    /// Add one rule, written like an item of `rules` in YAML flow style or JSON; prints its id.
    Add {
        /// The container id.
        id: String,
        /// The rule, e.g. `{id: block, egress: {to: [1.2.3.4]}, action: deny}`.
        #[arg(long, value_name = "RULE")]
        rule: String,
        /// Where to put it in the rule list (0 = first); default: the end.
        #[arg(long, value_name = "N")]
        position: Option<u32>,
    },
    /// Remove the rule with an id.
    #[command(alias = "remove")]
    Rm {
        /// The container id.
        id: String,
        /// The rule's id.
        rule_id: String,
    },
    /// Swap in a whole new policy file (YAML, or JSON if it ends in .json; `-`: stdin).
    Replace {
        /// The container id.
        id: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the audit log (`--follow`: and keep printing), or change which verdicts
    /// are written (`--mode`).
    Audit {
        /// The container id.
        id: String,
        /// Keep printing new lines until interrupted.
        #[arg(short, long, conflicts_with = "mode")]
        follow: bool,
        /// Write no verdicts but those of `audit` rules (`off`), denies (`denies`), or all.
        #[arg(long, value_enum)]
        mode: Option<Mode>,
    },
}

pub fn run(args: AclArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    match args.command {
        AclCommand::List { id, format } => {
            let (c, _) = load_live(global, &id)?;
            let policy = policy_from_proto(&c.control()?.acl_get()?)
                .context("the sandbox sent a policy that does not read back")?;
            match format {
                Format::Yaml => print!("{}", policy.to_yaml()),
                Format::Json => println!("{}", policy.to_json()),
            }
        }
        AclCommand::Add { id, rule, position } => {
            let rule = netstack::acl::parse_rule(&rule)?;
            let (c, _) = load_live(global, &id)?;
            let id = c.control()?.acl_add(rule_to_proto(&rule), position)?;
            println!("{id}");
        }
        AclCommand::Rm { id, rule_id } => {
            let (c, _) = load_live(global, &id)?;
            c.control()?.acl_remove(&rule_id)?;
        }
        AclCommand::Replace { id, file } => {
            let policy = if file == std::path::Path::new("-") {
                Policy::from_yaml(&read_input(&file)?)?
            } else {
                Policy::load(&file)?
            };
            let (c, _) = load_live(global, &id)?;
            c.control()?.acl_replace(policy_to_proto(&policy))?;
        }
        AclCommand::Audit { id, follow, mode } => {
            let (c, _) = load_live(global, &id)?;
            let mut control = c.control()?;
            if let Some(mode) = mode {
                let mut policy = policy_from_proto(&control.acl_get()?)?;
                policy.set_audit_mode(match mode {
                    Mode::Off => AuditMode::Off,
                    Mode::Denies => AuditMode::Denies,
                    Mode::All => AuditMode::All,
                });
                control.acl_replace(policy_to_proto(&policy))?;
                return Ok(0);
            }
            use std::io::Write as _;
            let mut out = std::io::stdout();
            control.acl_audit(follow, |line| {
                writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
            })?;
        }
    }
    Ok(0)
}

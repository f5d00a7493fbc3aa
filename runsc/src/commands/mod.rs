//! One file per subcommand.

pub mod help;
pub mod run_do;

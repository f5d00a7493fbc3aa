//! `runsc restore --image-path DIR [--bundle B] [--detach] … ID`: `run`, with the
//! sandbox restored from a checkpoint image instead of starting the bundle's process.
//! The bundle gives the root file system and mounts (the same content the image was
//! taken over), the network namespace and the policy; the image gives the processes,
//! their memory and everything else. Established TCP connections do not survive.

use std::path::PathBuf;

use clap::Args;

use crate::commands::run::{self, RunArgs};
use crate::commands::GlobalOpts;

#[derive(Args)]
pub struct RestoreArgs {
    /// The checkpoint image (written by `runsc checkpoint`).
    #[arg(long, value_name = "DIR")]
    image_path: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(args: RestoreArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    run::run_from(args.run, global, Some(&args.image_path))
}

//! `runsc image …`: checkpoint images of apps. `build` boots an app once and saves it
//! ready to serve (see `image_build.rs`).

use clap::{Args, Subcommand};

use crate::commands::{image_build, GlobalOpts};

#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Boot an app, wait until it is ready, and save it as a checkpoint image.
    Build(image_build::BuildArgs),
}

pub fn run(args: ImageArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    match args.command {
        ImageCommand::Build(a) => image_build::run(a, global),
    }
}

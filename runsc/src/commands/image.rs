//! `runsc image …`: checkpoint images of apps. `build` boots an app once and saves it
//! ready to serve (see `image_build.rs`); `push` and `pull` move an image to and from an OCI
//! registry as an artifact (`image_push.rs`, `image_pull.rs`; the layout is in
//! `checkpoints::registry` and docs/checkpoint-images.md).

use clap::{Args, Subcommand};

use crate::commands::{image_build, image_pull, image_push, GlobalOpts};

#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Boot an app, wait until it is ready, and save it as a checkpoint image.
    Build(image_build::BuildArgs),
    /// Push a checkpoint image directory to a registry (prints REF@sha256:…).
    Push(image_push::PushArgs),
    /// Pull a checkpoint image from a registry into an empty directory.
    Pull(image_pull::PullArgs),
}

pub fn run(args: ImageArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    match args.command {
        ImageCommand::Build(a) => image_build::run(a, global),
        ImageCommand::Push(a) => image_push::run(a),
        ImageCommand::Pull(a) => image_pull::run(a),
    }
}

/// How `push` and `pull` reach the registry.
#[derive(Args, Debug, Clone, Copy)]
pub struct RegistryOpts {
    /// Speak plain HTTP to the registry, with no TLS (only on a trusted network). Registries
    /// on loopback (localhost, 127.0.0.0/8, [::1]) always get plain HTTP, as containerd and
    /// Docker do; any other gets HTTPS unless this is given. Access is anonymous.
    #[arg(long)]
    pub plain_http: bool,
}

impl RegistryOpts {
    pub fn transport(self) -> checkpoints::registry::Transport {
        if self.plain_http {
            checkpoints::registry::Transport::PlainHttp
        } else {
            checkpoints::registry::Transport::Auto
        }
    }
}

/// Runs one registry transfer to completion. A current-thread runtime: a transfer is one
/// sequence of requests, and the registry code expects to be alone on its thread.
pub fn block_on<T>(transfer: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    Ok(runtime.block_on(transfer))
}

//! `runsc image pull [--plain-http] REF DIR`: pull the checkpoint image REF
//! (`registry/repository:tag` or `…@sha256:…`) into DIR, which must be absent or empty.
//! The image is checked in full (every blob's digest and size, every file against its
//! manifest.json) before it appears at DIR; nothing is left there on failure. Prints the
//! pulled manifest as `REF@sha256:…` on stdout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use checkpoints::registry::{self, Access, Registry};
use clap::Args;

use crate::commands::image::{block_on, RegistryOpts};

#[derive(Args)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryOpts,
    /// What to pull: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:….
    #[arg(value_name = "REF")]
    reference: String,
    /// Where to put the image: a directory that is absent (its parent must exist) or empty.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn run(args: PullArgs) -> anyhow::Result<i32> {
    let start = Instant::now();
    let reference = &args.reference;
    let pulled = block_on(async {
        let registry =
            Registry::connect(reference, args.registry.transport(), Access::Pull).await?;
        registry::pull(&registry, &args.dir, sentry::VERSION).await
    })?
    .with_context(|| format!("pulling {reference} into {}", args.dir.display()))?;
    tracing::info!(
        image = %pulled.image.digest(),
        elapsed_ms = start.elapsed().as_millis() as u64,
        "pulled"
    );
    println!("{}", pulled.reference);
    Ok(0)
}

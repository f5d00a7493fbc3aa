//! `runsc image push [--plain-http] DIR REF`: check the image in DIR, then push it to REF
//! (`registry/repository:tag`) as an OCI artifact, uploading only the blobs the registry
//! lacks. Prints the pushed manifest as `REF@sha256:…` on stdout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use checkpoints::registry::{self, Access, Artifact, Registry};
use clap::Args;

use crate::commands::image::{block_on, RegistryOpts};

#[derive(Args)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryOpts,
    /// The checkpoint image directory (as written by `runsc checkpoint` or `image build`).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to push: REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/apps/hello:v1.
    #[arg(value_name = "REF")]
    reference: String,
}

pub fn run(args: PushArgs) -> anyhow::Result<i32> {
    let start = Instant::now();
    let dir = args.dir.display();
    // A bad image is refused here, before anything is sent.
    let image = checkpoints::Image::open(&args.dir, sentry::VERSION)
        .with_context(|| format!("image {dir}"))?;
    let artifact = Artifact::from_image(&image)
        .with_context(|| format!("preparing image {dir} for a push"))?;
    let reference = &args.reference;
    let pushed = block_on(async {
        let registry =
            Registry::connect(reference, args.registry.transport(), Access::Push).await?;
        registry::push(&registry, &artifact).await
    })?
    .with_context(|| format!("pushing image {dir} to {reference}"))?;
    tracing::info!(
        image = %pushed.image_digest,
        uploaded = pushed.uploaded,
        memory_layer_bytes = artifact.memory_layer_bytes(),
        elapsed_ms = start.elapsed().as_millis() as u64,
        "pushed"
    );
    println!("{}", pushed.reference);
    Ok(0)
}

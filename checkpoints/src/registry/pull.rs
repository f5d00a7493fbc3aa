//! Pulling: manifest, then config (manifest.json), then the two layers streamed through zstd
//! into an [`ImageWriter`], which builds the image in a hidden temporary directory and places it
//! only if every file matches manifest.json; then [`Image::open`] on the result.
//!
//! Order of checks, cheapest first: the destination (before any request), the OCI manifest's
//! layout, manifest.json (format and sentry version, before any layer is fetched), the layer
//! sizes against what manifest.json declares, then each layer as it streams.

use std::path::Path;

use oci_client::Reference;

use super::client::Registry;
use super::codec::Decompressor;
use super::error::{RegistryError, Result};
use super::layout::Layout;
use super::sink::{KernelStateSink, MemorySink};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::manifest::Manifest;
use crate::reader::Image;
use crate::writer::{is_absent_or_empty_dir, ImageWriter};

/// What [`pull`] did.
#[derive(Debug)]
pub struct Pulled {
    /// The opened image, in the destination directory.
    pub image: Image,
    /// `registry/repository[:tag]@sha256:…`: the manifest pulled, pinned.
    pub reference: String,
    /// The OCI manifest's digest.
    pub manifest_digest: Digest,
}

/// Pulls the checkpoint image `registry` refers to into `dir`, which must be absent or an
/// empty directory (its parent must exist), for a sentry of version `sentry_version`.
///
/// On any failure nothing is left at `dir` but what was there (an empty directory or nothing).
pub async fn pull(registry: &Registry, dir: &Path, sentry_version: &str) -> Result<Pulled> {
    if !is_absent_or_empty_dir(dir)? {
        return Err(RegistryError::NotEmpty {
            path: dir.to_path_buf(),
        });
    }
    let existed = dir.exists();
    let reference = registry.reference().whole();
    let (manifest_bytes, manifest_digest) = registry.fetch_manifest().await?;
    let layout = Layout::parse(&reference, &manifest_bytes)?;

    // The config blob is manifest.json (at most MANIFEST_MAX_BYTES, checked by the layout).
    let mut config = Vec::new();
    registry
        .fetch_blob(&layout.config, &mut |bytes| {
            config.extend_from_slice(bytes);
            Ok(())
        })
        .await?;
    let manifest = Manifest::decode(&config)?;
    if manifest.sentry_version != sentry_version {
        return Err(ImageError::SentryVersion {
            found: manifest.sentry_version,
            expected: sentry_version.to_owned(),
        }
        .into());
    }
    layout.check_sizes(&reference, &manifest)?;

    // Dropping the writer on any error below removes its temporary directory.
    let mut writer = ImageWriter::create(dir, sentry_version, manifest.guest_memory_bytes)?;
    {
        let name = layout.memory.name();
        let mut sink = MemorySink::new(&mut writer, manifest.guest_memory_bytes, name.clone());
        let mut zstd = Decompressor::new(name)?;
        registry
            .fetch_blob(&layout.memory, &mut |bytes| zstd.feed(bytes, &mut sink))
            .await?;
        zstd.finish()?;
        sink.finish()?;
    }
    let kernel_state = {
        let name = layout.kernel_state.name();
        let mut sink = KernelStateSink::new(manifest.files.kernel_state.size, name.clone());
        let mut zstd = Decompressor::new(name)?;
        registry
            .fetch_blob(&layout.kernel_state, &mut |bytes| {
                zstd.feed(bytes, &mut sink)
            })
            .await?;
        zstd.finish()?;
        sink.finish()?
    };
    writer.write_kernel_state(&kernel_state)?;
    drop(kernel_state);
    let written = writer.finish_with_manifest(&config).map_err(|e| match e {
        // The files as pulled are not what manifest.json says: name the artifact.
        ImageError::DigestMismatch { .. }
        | ImageError::Truncated { .. }
        | ImageError::TooLong { .. } => RegistryError::Mismatch {
            reference: reference.clone(),
            source: e,
        },
        e => e.into(),
    })?;

    // Belt and braces, and it records the verification stamp so the first restore from this
    // image does not hash memory.img again.
    let image = match Image::open(&written.dir, sentry_version) {
        Ok(image) => image,
        Err(e) => {
            // Leave `dir` as it was: absent, or an empty directory.
            let _ = std::fs::remove_dir_all(&written.dir);
            if existed {
                let _ = std::fs::create_dir(&written.dir);
            }
            return Err(e.into());
        }
    };
    let r = registry.reference();
    let pinned = match r.tag() {
        Some(tag) => Reference::with_tag_and_digest(
            r.registry().to_owned(),
            r.repository().to_owned(),
            tag.to_owned(),
            manifest_digest.to_string(),
        ),
        None => r.clone_with_digest(manifest_digest.to_string()),
    };
    Ok(Pulled {
        image,
        reference: pinned.whole(),
        manifest_digest,
    })
}

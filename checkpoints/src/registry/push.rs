//! Pushing: an [`Artifact`] is an image made ready for a registry (its layers compressed into
//! temporary files, all digests known); [`push`] uploads the blobs the registry lacks, then the
//! manifest.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use oci_client::Reference;

use super::client::Registry;
use super::codec::{compress, Compressed, InputDigest};
use super::error::{RegistryError, Result};
use super::layout::{Blob, Layout, Role};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::manifest::Manifest;
use crate::reader::Image;
use crate::{MANIFEST_FILE, MANIFEST_MAX_BYTES, MEMORY_FILE};

/// A checkpoint image ready to push.
#[derive(Debug)]
pub struct Artifact {
    /// manifest.json, byte for byte: the config blob.
    manifest_json: Vec<u8>,
    created_unix_secs: u64,
    memory: Compressed,
    kernel_state: Compressed,
}

impl Artifact {
    /// Prepares an opened (so verified) image. `memory.img` is hashed again as it is
    /// compressed, and must still match manifest.json, so what is pushed is what was checked.
    pub fn from_image(image: &Image) -> Result<Self> {
        let manifest_json = read_manifest(image)?;
        let memory_entry = image.manifest().files.memory;
        let file = image.checked_memory_file()?;
        let memory = compress(
            PositionalReader {
                file,
                offset: 0,
                end: memory_entry.size,
            },
            MEMORY_FILE,
            InputDigest::Pages,
        )?;
        if memory.input != memory_entry {
            // The file changed (or shrank) after Image::open checked it.
            return Err(ImageError::ChangedDuringVerify { file: MEMORY_FILE }.into());
        }
        let kernel_state = compress(
            image.kernel_state(),
            crate::KERNEL_STATE_FILE,
            InputDigest::Flat,
        )?;
        Ok(Self {
            manifest_json,
            created_unix_secs: image.manifest().created_unix_secs,
            memory,
            kernel_state,
        })
    }

    /// Prepares an artifact from parts that are *not* checked against each other: only that
    /// `manifest_json` decodes. For tools that build artifacts and for tests of the puller,
    /// which is what checks that the parts agree (and refuses them if not).
    pub fn from_parts(
        manifest_json: Vec<u8>,
        memory: impl Read,
        kernel_state: impl Read,
    ) -> Result<Self> {
        let manifest = Manifest::decode(&manifest_json)?;
        Ok(Self {
            created_unix_secs: manifest.created_unix_secs,
            manifest_json,
            memory: compress(memory, MEMORY_FILE, InputDigest::Pages)?,
            kernel_state: compress(kernel_state, crate::KERNEL_STATE_FILE, InputDigest::Flat)?,
        })
    }

    /// The image digest: sha256 of manifest.json, which is also the config blob's digest.
    pub fn image_digest(&self) -> Digest {
        Digest::of(&self.manifest_json)
    }

    /// Compressed size of the `memory.img` layer.
    pub fn memory_layer_bytes(&self) -> u64 {
        self.memory.size
    }

    fn layout(&self) -> Layout {
        Layout {
            config: Blob {
                role: Role::Config,
                digest: self.image_digest(),
                size: self.manifest_json.len() as u64,
            },
            memory: Blob {
                role: Role::Memory,
                digest: self.memory.digest,
                size: self.memory.size,
            },
            kernel_state: Blob {
                role: Role::KernelState,
                digest: self.kernel_state.digest,
                size: self.kernel_state.size,
            },
        }
    }
}

/// What [`push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `registry/repository:tag@sha256:…`: the pushed manifest, pinned.
    pub reference: String,
    /// The OCI manifest's digest.
    pub manifest_digest: Digest,
    /// The image digest (manifest.json's).
    pub image_digest: Digest,
    /// How many of the three blobs were uploaded (the others the registry had).
    pub uploaded: usize,
}

/// Pushes `artifact` under `registry`'s reference, which must name a tag (the manifest digest
/// is only known once the manifest is built). Blobs the repository already has are not sent.
pub async fn push(registry: &Registry, artifact: &Artifact) -> Result<Pushed> {
    let reference = registry.reference();
    let Some(tag) = reference.tag().filter(|_| reference.digest().is_none()) else {
        return Err(RegistryError::NeedsTag {
            reference: reference.whole(),
        });
    };
    let layout = artifact.layout();
    let mut uploaded = 0;
    if !registry.has_blob(&layout.memory).await? {
        registry
            .push_blob_file(&layout.memory, &artifact.memory.file)
            .await?;
        uploaded += 1;
    }
    if !registry.has_blob(&layout.kernel_state).await? {
        registry
            .push_blob_file(&layout.kernel_state, &artifact.kernel_state.file)
            .await?;
        uploaded += 1;
    }
    if !registry.has_blob(&layout.config).await? {
        registry
            .push_blob_bytes(&layout.config, artifact.manifest_json.clone())
            .await?;
        uploaded += 1;
    }
    let manifest_digest = registry
        .push_manifest(layout.manifest_bytes(artifact.created_unix_secs)?)
        .await?;
    let pinned = Reference::with_tag_and_digest(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        tag.to_owned(),
        manifest_digest.to_string(),
    );
    Ok(Pushed {
        reference: pinned.whole(),
        manifest_digest,
        image_digest: layout.config.digest,
        uploaded,
    })
}

/// Reads the image's manifest.json and checks it is the one [`Image::open`] verified.
fn read_manifest(image: &Image) -> Result<Vec<u8>> {
    let path = image.dir().join(MANIFEST_FILE);
    let file = File::open(&path).map_err(|e| ImageError::io(MANIFEST_FILE, "open", e))?;
    let mut bytes = Vec::new();
    file.take(MANIFEST_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io(MANIFEST_FILE, "read", e))?;
    if Digest::of(&bytes) != *image.digest() {
        return Err(ImageError::ChangedDuringVerify {
            file: MANIFEST_FILE,
        }
        .into());
    }
    Ok(bytes)
}

/// Reads `file` from `offset` to `end` with positional reads, leaving the file offset (shared
/// with the [`Image`]'s descriptor) alone.
struct PositionalReader<'f> {
    file: &'f File,
    offset: u64,
    end: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.offset;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

//! Checkpoint images in an OCI registry: `runsc image push` and `runsc image pull`.
//!
//! # Why `oci-client`
//!
//! The registry protocol (OCI distribution spec) is done by `oci-client` (the ORAS project's
//! crate, used by wasmtime/krustlet tooling): it speaks token auth, chunked and streamed blob
//! uploads, blob HEAD, raw manifest push and streamed, digest-checked blob pulls, and lets us
//! set any media type, `artifactType`, config blob and annotations. Writing that by hand over
//! a small HTTP client would repeat its auth and upload-session handling. The one thing it
//! cannot do is cap a manifest download (it reads the whole body), so that single GET is made
//! with `reqwest`, the HTTP client underneath it, using the token `oci-client` obtained.
//!
//! # The artifact
//!
//! One OCI image manifest (`application/vnd.oci.image.manifest.v1+json`):
//!
//! ```text
//! artifactType  application/vnd.nanovisor.checkpoint.v1
//! config        manifest.json, byte for byte
//!               application/vnd.nanovisor.checkpoint.manifest.v1+json
//! layers[0]     memory.img, zstd (level 3, one frame; holes compress to almost nothing)
//!               application/vnd.nanovisor.checkpoint.memory.v1+zstd
//! layers[1]     kernel.state, zstd
//!               application/vnd.nanovisor.checkpoint.kernel-state.v1+zstd
//! annotations   org.opencontainers.image.created   the image's creation time (RFC 3339)
//!               dev.nanovisor.checkpoint.digest    sha256:… of manifest.json (the image digest)
//! ```
//!
//! Since the config blob is `manifest.json` itself, its registry digest *is* the image digest,
//! and the manifest.json it carries records the size and digest of the uncompressed
//! `memory.img` (its page digest) and `kernel.state`. The OCI manifest is a pure function of
//! the image (the creation time is the image's, not the push's), so pushing one image twice
//! gives one manifest digest and uploads nothing the second time.
//! The verification stamp (`memory.img.verified`) is local to a host and is never pushed.
//!
//! # Trust on pull
//!
//! Nothing from the registry is trusted. The manifest is capped at 1 MiB and must have exactly
//! the media types above (anything else is refused, naming it); every blob is streamed with its
//! size checked against its descriptor and its sha256 against its digest; decompression is
//! capped by what manifest.json declares (guest memory size, kernel state size, and
//! [`KERNEL_STATE_MAX_BYTES`](crate::KERNEL_STATE_MAX_BYTES)); `memory.img` is written sparse
//! (zero pages stay holes). The image is assembled in a hidden temporary directory, checked
//! against manifest.json (sizes and digests of the decompressed files), renamed into place, and
//! opened with [`Image::open`](crate::Image::open); a failure at any step leaves no image behind.
//!
//! # Blocking
//!
//! The functions are `async` (oci-client is) and meant for a current-thread runtime serving one
//! transfer, as `runsc` runs them: compression, decompression and local file I/O run inline,
//! which only delays that transfer's own next network read.

mod client;
mod codec;
mod error;
mod layout;
mod pull;
mod push;
mod sink;
mod time;

pub use client::{Access, Registry, Transport};
pub use error::{RegistryError, Result};
pub use pull::{pull, Pulled};
pub use push::{push, Artifact, Pushed};

/// `artifactType` of a checkpoint artifact.
pub const ARTIFACT_TYPE: &str = "application/vnd.nanovisor.checkpoint.v1";
/// Media type of the config blob: the image's `manifest.json`.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.nanovisor.checkpoint.manifest.v1+json";
/// Media type of the `memory.img` layer.
pub const MEMORY_MEDIA_TYPE: &str = "application/vnd.nanovisor.checkpoint.memory.v1+zstd";
/// Media type of the `kernel.state` layer.
pub const KERNEL_STATE_MEDIA_TYPE: &str =
    "application/vnd.nanovisor.checkpoint.kernel-state.v1+zstd";
/// Media type of the OCI image manifest that holds it all.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Annotation: when the image was created (RFC 3339, UTC).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation: the image digest (`sha256:…` of manifest.json).
pub const ANNOTATION_DIGEST: &str = "dev.nanovisor.checkpoint.digest";

/// Largest OCI manifest a pull reads. Ours is under a kilobyte.
pub const OCI_MANIFEST_MAX_BYTES: u64 = 1 << 20;

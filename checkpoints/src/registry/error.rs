//! Why a push or pull failed: the registry said no, the artifact is not ours or does not hold
//! what it claims, or a local image or file problem.
//!
//! Messages name what they are about (the registry request, the blob and its digest); the
//! underlying error is the `source`, not repeated in the message, so print the whole chain
//! (`{:#}` with anyhow) to see both.

use std::io;
use std::path::PathBuf;

use crate::error::ImageError;

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference does not parse (`registry/repository[:tag][@sha256:…]`).
    #[error("invalid reference {reference:?}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// The parser's complaint.
        #[source]
        source: oci_client::ParseError,
    },

    /// A push was given a reference with a digest: the digest is the result of a push.
    #[error("{reference}: push to a tag (REGISTRY/REPOSITORY:TAG), not a digest: the digest is that of the manifest the push makes")]
    NeedsTag {
        /// The reference as given.
        reference: String,
    },

    /// A registry request failed (connection, auth, HTTP status, protocol).
    #[error("registry {registry}: {op}")]
    Registry {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was being done, naming the blob or manifest.
        op: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The registry answered a request with an error status.
    #[error("registry {registry}: {op}: HTTP {status}{detail}")]
    Status {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was being done.
        op: String,
        /// The HTTP status code.
        status: u16,
        /// `: ` and the start of the response body, if any.
        detail: String,
    },

    /// The artifact is not a Nanovisor checkpoint in a layout this version reads (a media type,
    /// a layer count, a digest algorithm, a size cap).
    #[error("{reference}: not a checkpoint image artifact this runsc reads: {problem}")]
    Layout {
        /// The reference pulled.
        reference: String,
        /// What is wrong, naming the unexpected value.
        problem: String,
    },

    /// A blob's bytes do not match its descriptor (size or digest), or do not decompress to
    /// what manifest.json declares: a damaged or tampered artifact.
    #[error("{blob}: {problem}")]
    Blob {
        /// The blob: `memory.img layer sha256:…` etc.
        blob: String,
        /// What does not match.
        problem: String,
    },

    /// The pulled files do not match the manifest.json they came with (sizes or sha256): a
    /// tampered or damaged artifact. Nothing was placed.
    #[error("{reference}: the artifact's content does not match its manifest.json")]
    Mismatch {
        /// The reference pulled.
        reference: String,
        /// Which file, and how.
        #[source]
        source: ImageError,
    },

    /// A local file could not be read or written.
    #[error("{what}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The host error.
        #[source]
        source: io::Error,
    },

    /// The image (being pushed, or as pulled) is refused by the image format's checks.
    #[error(transparent)]
    Image(#[from] ImageError),

    /// The pull destination already holds something.
    #[error("{}: already exists and is not empty", path.display())]
    NotEmpty {
        /// The destination directory.
        path: PathBuf,
    },
}

/// The registry module's result type.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// A blob problem.
    pub(crate) fn blob(blob: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Blob {
            blob: blob.into(),
            problem: problem.into(),
        }
    }

    /// A local I/O failure.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

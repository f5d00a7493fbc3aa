//! The one error type of the image format: every refusal names the file and the problem.
//!
//! Messages name the file inside the image (`memory.img: …`), not the image directory: the
//! caller knows which image it opened and adds that context (`restore from /var/img/x: …`).

use std::io;
use std::path::PathBuf;

/// Why an image could not be written, opened or verified.
///
/// One enum for the whole crate because every path (writer, reader, verifier) reports the
/// same kinds of trouble about the same three files; callers match on the variant to tell a
/// damaged image (refuse, maybe rebuild) from a host I/O failure (retry, report).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A host I/O call on one image file failed (permission, disk full, EIO, …).
    #[error("{file}: {op}: {source}")]
    Io {
        /// The image file (`memory.img`, …) or directory the call was about.
        file: String,
        /// What was being done, e.g. "open", "read", "fsync".
        op: &'static str,
        /// The host error.
        #[source]
        source: io::Error,
    },

    /// A file the manifest promises is not in the image directory.
    #[error("{file}: missing from the image")]
    Missing {
        /// The missing file.
        file: &'static str,
    },

    /// An image file is not a regular file (a directory, FIFO, device…): refused before it
    /// is read, so a planted FIFO cannot hang a restore.
    #[error("{file}: not a regular file")]
    NotRegular {
        /// The file.
        file: &'static str,
    },

    /// A file is shorter than the manifest says: an interrupted copy or a cut download.
    #[error("{file}: truncated: {actual} bytes, manifest says {expected}")]
    Truncated {
        /// The file.
        file: &'static str,
        /// Its size on disk.
        actual: u64,
        /// The size recorded in the manifest.
        expected: u64,
    },

    /// A file is longer than the manifest says: something was appended to it.
    #[error("{file}: too long: {actual} bytes, manifest says {expected}")]
    TooLong {
        /// The file.
        file: &'static str,
        /// Its size on disk.
        actual: u64,
        /// The size recorded in the manifest.
        expected: u64,
    },

    /// A file is over the cap this reader accepts, checked before anything is read.
    #[error("{file}: {actual} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The file.
        file: &'static str,
        /// Its size (on disk, or as claimed by the manifest).
        actual: u64,
        /// The cap.
        limit: u64,
    },

    /// A file's content does not hash to what the manifest records: corruption or tampering.
    #[error("{file}: sha256 mismatch: manifest says {expected}, file has {actual}")]
    DigestMismatch {
        /// The file.
        file: &'static str,
        /// The hex digest in the manifest.
        expected: String,
        /// The hex digest of the bytes on disk.
        actual: String,
    },

    /// A file was modified while it was being hashed, so no verdict can be given.
    #[error("{file}: changed while it was being verified")]
    ChangedDuringVerify {
        /// The file.
        file: &'static str,
    },

    /// The image was written in a format version this reader does not read.
    #[error("manifest.json: format version {found}, this runsc reads version {supported}")]
    FormatVersion {
        /// The version in the manifest.
        found: u64,
        /// The one version this crate reads and writes.
        supported: u32,
    },

    /// The image was written by a different sentry, whose kernel state this one cannot load.
    #[error("manifest.json: written by sentry {found}, this is {expected}")]
    SentryVersion {
        /// The sentry version recorded in the manifest.
        found: String,
        /// The sentry version of the reader.
        expected: String,
    },

    /// The manifest is not JSON, or not the JSON this version expects (unknown or missing field).
    #[error("manifest.json: not a valid manifest: {0}")]
    ManifestSyntax(#[source] serde_json::Error),

    /// The manifest parses but its values are inconsistent (sizes, alignment, digests).
    #[error("manifest.json: {0}")]
    ManifestInvalid(String),

    /// The writer was used wrongly (unaligned or out-of-order memory, a file written twice,
    /// `finish` before everything was written). A bug in the caller, reported instead of
    /// writing a bad image.
    #[error("{file}: {problem}")]
    Usage {
        /// The file being written.
        file: &'static str,
        /// What was wrong with the call.
        problem: String,
    },

    /// The destination of a writer already holds an image or other files.
    #[error("{}: already exists and is not empty (ask for overwrite to replace it)", path.display())]
    Exists {
        /// The destination directory.
        path: PathBuf,
    },
}

/// The crate's result type.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// An I/O error on an image file; `NotFound` becomes [`ImageError::Missing`] so a missing
    /// file reads as such rather than as "No such file or directory (os error 2)".
    pub(crate) fn io(file: &'static str, op: &'static str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound && op == "open" {
            return Self::Missing { file };
        }
        Self::Io {
            file: file.to_owned(),
            op,
            source,
        }
    }

    /// An I/O error on a directory (the image dir, its temporary sibling, its parent).
    pub(crate) fn dir(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        Self::Io {
            file: path.display().to_string(),
            op,
            source,
        }
    }

    /// A writer misuse on `file`.
    pub(crate) fn usage(file: &'static str, problem: impl Into<String>) -> Self {
        Self::Usage {
            file,
            problem: problem.into(),
        }
    }
}

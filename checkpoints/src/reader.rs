//! Opening an image: [`Image::open`] checks everything before handing anything out.
//!
//! Order of checks, cheapest and most telling first: the manifest (size cap, format version,
//! syntax, consistency, sentry version), then `kernel.state` (size against the manifest, then
//! a full SHA-256; it is small and restore needs its bytes anyway), then `memory.img` (size,
//! then its content through the verification stamp, see [`crate::verify`]). Either every
//! check passes and the caller gets an [`Image`], or it gets an [`ImageError`] and nothing
//! else, so a restore never starts from a half-checked image.
//!
//! Every file is opened `O_NONBLOCK` and must be a regular file, so a FIFO or device planted
//! under an image file's name is refused instead of hanging or being read forever. The bytes
//! of `kernel.state` and the `memory.img` descriptor handed out are the very ones that were
//! checked, not a second open of the same path.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::{FileEntry, Manifest};
use crate::verify::{verify_memory, MemoryCheck};
use crate::{
    KERNEL_STATE_FILE, KERNEL_STATE_MAX_BYTES, MANIFEST_FILE, MANIFEST_MAX_BYTES, MEMORY_FILE,
};

/// A checked checkpoint image, ready to restore from.
///
/// Holds the manifest, the verified `kernel.state` bytes and an open descriptor of the
/// verified `memory.img`.
pub struct Image {
    dir: PathBuf,
    manifest: Manifest,
    digest: Digest,
    kernel_state: Vec<u8>,
    memory: File,
    memory_check: MemoryCheck,
}

impl Image {
    /// Opens and checks the image in `dir` for a sentry of version `expected_sentry_version`
    /// (the kernel state of another sentry version cannot be loaded, so it is refused here
    /// with a message naming both versions).
    ///
    /// Hashes `kernel.state` in full and `memory.img` in full unless a verification stamp
    /// vouches for it (module doc of [`crate::verify`]); tries to record a stamp after a full
    /// hash, which needs the directory to be writable.
    pub fn open(dir: impl AsRef<Path>, expected_sentry_version: &str) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_bytes = read_manifest(&dir)?;
        let digest = Digest::of(&manifest_bytes);
        let manifest = Manifest::decode(&manifest_bytes)?;
        if manifest.sentry_version != expected_sentry_version {
            return Err(ImageError::SentryVersion {
                found: manifest.sentry_version,
                expected: expected_sentry_version.to_owned(),
            });
        }
        let kernel_state = read_kernel_state(&dir, &manifest.files.kernel_state)?;
        let memory = open_regular(&dir, MEMORY_FILE)?;
        let memory_check = verify_memory(&dir, &memory, &manifest.files.memory, false)?;
        Ok(Self {
            dir,
            manifest,
            digest,
            kernel_state,
            memory,
            memory_check,
        })
    }

    /// Rehashes `memory.img` (ignoring any stamp, then refreshing it) and re-reads and
    /// rehashes `kernel.state` from disk. For `runsc image verify`-style audits, or before
    /// distributing an image; restore does not need it.
    pub fn verify_all(&self) -> Result<()> {
        verify_memory(&self.dir, &self.memory, &self.manifest.files.memory, true)?;
        read_kernel_state(&self.dir, &self.manifest.files.kernel_state)?;
        Ok(())
    }

    /// The image digest, `sha256:<hex>` of the manifest bytes: it names the whole image
    /// (content-addressed), since the manifest holds every other file's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The checked manifest: versions, provenance, sizes.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The image directory this was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified serialized sentry kernel state.
    pub fn kernel_state(&self) -> &[u8] {
        &self.kernel_state
    }

    /// Guest physical memory size in bytes (the length of `memory.img`).
    pub fn guest_memory_bytes(&self) -> u64 {
        self.manifest.guest_memory_bytes
    }

    /// How `memory.img` was verified by [`open`](Self::open): by stamp or by a full hash.
    /// For logging and tests; both mean the content matched.
    pub fn memory_check(&self) -> MemoryCheck {
        self.memory_check
    }

    /// The open, verified `memory.img` (read-only), for callers that map it themselves, e.g.
    /// straight into a KVM memslot. `try_clone` it to keep it beyond this `Image`.
    pub fn memory_file(&self) -> &File {
        &self.memory
    }

    /// The open `memory.img`, its size checked again first, for the caller that maps it
    /// (`MAP_PRIVATE`, so that sandboxes restored from one image share its pages until they
    /// write them): a file truncated since [`open`](Self::open) is refused rather than
    /// faulting later.
    pub fn checked_memory_file(&self) -> Result<&File> {
        let size = self
            .memory
            .metadata()
            .map_err(|e| ImageError::io(MEMORY_FILE, "stat", e))?
            .len();
        check_size(MEMORY_FILE, size, self.manifest.files.memory.size)?;
        Ok(&self.memory)
    }
}

/// Not derived: `kernel_state` can be hundreds of MiB.
impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("dir", &self.dir)
            .field("digest", &self.digest)
            .field("manifest", &self.manifest)
            .field("kernel_state_bytes", &self.kernel_state.len())
            .field("memory_check", &self.memory_check)
            .finish_non_exhaustive()
    }
}

/// Compares a file's size on disk with the manifest's, naming the file in the refusal.
pub(crate) fn check_size(file: &'static str, actual: u64, expected: u64) -> Result<()> {
    if actual < expected {
        return Err(ImageError::Truncated {
            file,
            actual,
            expected,
        });
    }
    if actual > expected {
        return Err(ImageError::TooLong {
            file,
            actual,
            expected,
        });
    }
    Ok(())
}

/// Opens an image file read-only, refusing anything but a regular file (see module doc).
fn open_regular(dir: &Path, name: &'static str) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.join(name))
        .map_err(|e| ImageError::io(name, "open", e))?;
    let meta = file
        .metadata()
        .map_err(|e| ImageError::io(name, "stat", e))?;
    if !meta.is_file() {
        return Err(ImageError::NotRegular { file: name });
    }
    Ok(file)
}

/// Reads exactly `size` bytes (the size `fstat` reported and the caller checked), reporting
/// a file that grew or shrank since as changed.
fn read_exact_size(file: File, name: &'static str, size: u64) -> Result<Vec<u8>> {
    let capacity = usize::try_from(size).map_err(|_| ImageError::TooLarge {
        file: name,
        actual: size,
        limit: usize::MAX as u64,
    })?;
    let mut bytes = Vec::with_capacity(capacity);
    file.take(size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io(name, "read", e))?;
    if bytes.len() as u64 != size {
        return Err(ImageError::ChangedDuringVerify { file: name });
    }
    Ok(bytes)
}

/// Reads `manifest.json`, refusing it before reading if it is over the cap.
fn read_manifest(dir: &Path) -> Result<Vec<u8>> {
    let file = open_regular(dir, MANIFEST_FILE)?;
    let size = file
        .metadata()
        .map_err(|e| ImageError::io(MANIFEST_FILE, "stat", e))?
        .len();
    if size > MANIFEST_MAX_BYTES {
        return Err(ImageError::TooLarge {
            file: MANIFEST_FILE,
            actual: size,
            limit: MANIFEST_MAX_BYTES,
        });
    }
    read_exact_size(file, MANIFEST_FILE, size)
}

/// Reads `kernel.state` and checks its size (before reading) and digest against the manifest.
fn read_kernel_state(dir: &Path, expected: &FileEntry) -> Result<Vec<u8>> {
    let file = open_regular(dir, KERNEL_STATE_FILE)?;
    let size = file
        .metadata()
        .map_err(|e| ImageError::io(KERNEL_STATE_FILE, "stat", e))?
        .len();
    // The manifest's size is already capped (Manifest::check), so equal means capped too;
    // the explicit cap keeps this function safe on its own.
    if size > KERNEL_STATE_MAX_BYTES {
        return Err(ImageError::TooLarge {
            file: KERNEL_STATE_FILE,
            actual: size,
            limit: KERNEL_STATE_MAX_BYTES,
        });
    }
    check_size(KERNEL_STATE_FILE, size, expected.size)?;
    let bytes = read_exact_size(file, KERNEL_STATE_FILE, size)?;
    let actual = Digest::of(&bytes);
    if actual != expected.sha256 {
        return Err(ImageError::DigestMismatch {
            file: KERNEL_STATE_FILE,
            expected: expected.sha256.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;

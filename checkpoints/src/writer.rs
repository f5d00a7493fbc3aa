//! Writing an image: [`ImageWriter`] builds it in a hidden temporary directory and renames it
//! into place only when complete.
//!
//! A checkpoint that crashes or fails halfway leaves at most a `.…tmp-…` directory with no
//! manifest, never a directory at the destination that looks like an image. `finish` writes
//! `memory.img` and `kernel.state` to disk (fsync) first and `manifest.json` last, fsyncs the
//! directory, renames it, and fsyncs the parent, so after `finish` returns the image survives
//! a host crash, and before it no reader can see it.
//!
//! The files are created read-only (mode 0444): an image is immutable once written, and the
//! mapping restore makes of `memory.img` relies on nobody writing the file (see
//! [`Image::checked_memory_file`](crate::Image::checked_memory_file)).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::{FileEntry, Files, Manifest};
use crate::memory::MemoryWriter;
use crate::{
    FORMAT_VERSION, KERNEL_STATE_FILE, KERNEL_STATE_MAX_BYTES, MANIFEST_FILE, MANIFEST_MAX_BYTES,
    MEMORY_FILE, PAGE_SIZE,
};

/// Mode of every image file: read-only for everyone (the image is immutable once written).
const FILE_MODE: u32 = 0o444;

/// Where a finished image goes.
#[derive(Debug, Clone)]
enum Destination {
    /// A named directory, e.g. `runsc checkpoint --image-path DIR`.
    Dir { path: PathBuf, overwrite: bool },
    /// `parent/sha256-<hex>` of the image digest, e.g. an image store.
    ContentAddressed { parent: PathBuf },
}

/// What [`ImageWriter::finish`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The image directory.
    pub dir: PathBuf,
    /// The image digest (`sha256:<hex>` of its manifest), as [`Image::digest`] will report.
    ///
    /// [`Image::digest`]: crate::Image::digest
    pub digest: Digest,
}

/// Writes one checkpoint image.
///
/// Give it guest memory (in increasing offset order) and the kernel state, then call
/// [`finish`](Self::finish). Dropping it unfinished removes the temporary directory.
#[derive(Debug)]
pub struct ImageWriter {
    dest: Destination,
    /// The hidden directory being filled; renamed to the destination by `finish`.
    tmp: PathBuf,
    sentry_version: String,
    guest_memory_bytes: u64,
    created_unix_secs: u64,
    source: BTreeMap<String, String>,
    memory: MemoryWriter,
    kernel_state: Option<FileEntry>,
    /// Set once the temporary directory has been renamed (or deliberately discarded).
    done: bool,
}

impl ImageWriter {
    /// Starts an image that [`finish`](Self::finish) will place at `dir`. Refuses if `dir`
    /// exists and is not an empty directory (see [`create_replacing`](Self::create_replacing)).
    /// `dir`'s parent must exist; the temporary directory is made there, on the same file
    /// system, so the final rename is atomic.
    pub fn create(
        dir: impl AsRef<Path>,
        sentry_version: &str,
        guest_memory_bytes: u64,
    ) -> Result<Self> {
        Self::start(
            Destination::Dir {
                path: dir.as_ref().to_path_buf(),
                overwrite: false,
            },
            sentry_version,
            guest_memory_bytes,
        )
    }

    /// Like [`create`](Self::create), but an existing image (or anything else) at `dir` is
    /// replaced by `finish`. The old content is moved aside first and deleted after the new
    /// image is in place, so `dir` never holds a mix of the two.
    pub fn create_replacing(
        dir: impl AsRef<Path>,
        sentry_version: &str,
        guest_memory_bytes: u64,
    ) -> Result<Self> {
        Self::start(
            Destination::Dir {
                path: dir.as_ref().to_path_buf(),
                overwrite: true,
            },
            sentry_version,
            guest_memory_bytes,
        )
    }

    /// Starts an image that [`finish`](Self::finish) will place at
    /// `parent_dir/sha256-<hex>` of its digest, for an image store (`runsc image build`).
    /// `parent_dir` must exist. If an image with the same digest is already there, it is
    /// the same image (the digest covers every file), so it is kept and the new copy dropped.
    pub fn create_content_addressed(
        parent_dir: impl AsRef<Path>,
        sentry_version: &str,
        guest_memory_bytes: u64,
    ) -> Result<Self> {
        Self::start(
            Destination::ContentAddressed {
                parent: parent_dir.as_ref().to_path_buf(),
            },
            sentry_version,
            guest_memory_bytes,
        )
    }

    fn start(dest: Destination, sentry_version: &str, guest_memory_bytes: u64) -> Result<Self> {
        if sentry_version.is_empty() {
            return Err(ImageError::usage(MANIFEST_FILE, "sentry version is empty"));
        }
        if guest_memory_bytes == 0 || !guest_memory_bytes.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::usage(
                MEMORY_FILE,
                format!(
                    "guest memory size {guest_memory_bytes} is not a positive multiple of the {PAGE_SIZE}-byte page"
                ),
            ));
        }
        let (parent, stem) = match &dest {
            Destination::Dir { path, overwrite } => {
                if !overwrite && !is_absent_or_empty_dir(path)? {
                    return Err(ImageError::Exists { path: path.clone() });
                }
                let name = path.file_name().ok_or_else(|| {
                    ImageError::usage(
                        MANIFEST_FILE,
                        format!("{}: not a usable image directory name", path.display()),
                    )
                })?;
                (parent_of(path), name.to_string_lossy().into_owned())
            }
            Destination::ContentAddressed { parent } => (parent.clone(), "image".to_owned()),
        };
        let tmp = parent.join(unique_name(&stem, "tmp"));
        std::fs::create_dir(&tmp).map_err(|e| ImageError::dir(&tmp, "create directory", e))?;
        // From here on, `Drop` cleans up `tmp` if anything fails.
        let memory = match create_file(&tmp, MEMORY_FILE) {
            Ok(file) => MemoryWriter::new(file, guest_memory_bytes),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        Ok(Self {
            dest,
            tmp,
            sentry_version: sentry_version.to_owned(),
            guest_memory_bytes,
            created_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            source: BTreeMap::new(),
            memory,
            kernel_state: None,
            done: false,
        })
    }

    /// Records one provenance entry (e.g. `rootfs` → `sha256:…`, `command` → `node server.js`)
    /// in the manifest's `source` map; a second value for the same key replaces the first.
    pub fn set_source(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.source.insert(key.into(), value.into());
        self
    }

    /// Overrides the creation time (default: now), e.g. for reproducible image builds where
    /// the same input must give the same digest.
    pub fn set_created_unix_secs(&mut self, secs: u64) -> &mut Self {
        self.created_unix_secs = secs;
        self
    }

    /// Writes guest memory from guest physical address 0: the whole of it, or a prefix (the
    /// rest reads as zeros). All-zero pages are left as holes.
    pub fn write_memory(&mut self, memory: &[u8]) -> Result<()> {
        self.memory.write_at(0, memory)
    }

    /// Writes one region of guest memory at guest physical address `offset`. Offset and length
    /// must be multiples of [`PAGE_SIZE`], regions must come in increasing order without
    /// overlap and lie within guest memory; gaps read as zeros. All-zero pages become holes.
    pub fn write_memory_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.memory.write_at(offset, bytes)
    }

    /// Writes several regions of guest memory, as [`write_memory_at`](Self::write_memory_at)
    /// for each; e.g. one per KVM memslot.
    pub fn write_memory_regions<'a>(
        &mut self,
        regions: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<()> {
        regions
            .into_iter()
            .try_for_each(|(offset, bytes)| self.memory.write_at(offset, bytes))
    }

    /// Writes `kernel.state`, the serialized sentry kernel (opaque to this crate). Exactly
    /// once; refused above [`KERNEL_STATE_MAX_BYTES`] so no image is written that no reader
    /// would open.
    pub fn write_kernel_state(&mut self, bytes: &[u8]) -> Result<()> {
        if self.kernel_state.is_some() {
            return Err(ImageError::usage(KERNEL_STATE_FILE, "written twice"));
        }
        let size = bytes.len() as u64;
        if size > KERNEL_STATE_MAX_BYTES {
            return Err(ImageError::TooLarge {
                file: KERNEL_STATE_FILE,
                actual: size,
                limit: KERNEL_STATE_MAX_BYTES,
            });
        }
        let mut file = create_file(&self.tmp, KERNEL_STATE_FILE)?;
        file.write_all(bytes)
            .map_err(|e| ImageError::io(KERNEL_STATE_FILE, "write", e))?;
        file.sync_all()
            .map_err(|e| ImageError::io(KERNEL_STATE_FILE, "fsync", e))?;
        self.kernel_state = Some(FileEntry {
            size,
            sha256: Digest::of(bytes),
        });
        Ok(())
    }

    /// Completes the image: finishes `memory.img`, writes `manifest.json` last, makes it all
    /// durable and renames the directory into place. Returns where it is and its digest.
    pub fn finish(mut self) -> Result<WrittenImage> {
        let (memory, kernel_state) = self.finish_files()?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            sentry_version: self.sentry_version.clone(),
            created_unix_secs: self.created_unix_secs,
            source: self.source.clone(),
            guest_memory_bytes: self.guest_memory_bytes,
            files: Files {
                memory,
                kernel_state,
            },
        };
        manifest.check()?;
        let bytes = manifest.encode()?;
        self.commit(&bytes)
    }

    /// Completes an image whose `manifest.json` was made elsewhere, e.g. one pulled from a
    /// registry: the files written must have exactly the sizes and digests `manifest_bytes`
    /// records (else a [`ImageError::DigestMismatch`] or size error naming the file, and nothing
    /// is placed), and those very bytes become `manifest.json`, so the image keeps its digest.
    pub(crate) fn finish_with_manifest(mut self, manifest_bytes: &[u8]) -> Result<WrittenImage> {
        let size = manifest_bytes.len() as u64;
        if size > MANIFEST_MAX_BYTES {
            return Err(ImageError::TooLarge {
                file: MANIFEST_FILE,
                actual: size,
                limit: MANIFEST_MAX_BYTES,
            });
        }
        let manifest = Manifest::decode(manifest_bytes)?;
        if manifest.sentry_version != self.sentry_version {
            return Err(ImageError::SentryVersion {
                found: manifest.sentry_version,
                expected: self.sentry_version.clone(),
            });
        }
        if manifest.guest_memory_bytes != self.guest_memory_bytes {
            return Err(ImageError::ManifestInvalid(format!(
                "guest_memory_bytes {} is not the {} bytes written",
                manifest.guest_memory_bytes, self.guest_memory_bytes
            )));
        }
        let (memory, kernel_state) = self.finish_files()?;
        same_content(MEMORY_FILE, &manifest.files.memory, &memory)?;
        same_content(
            KERNEL_STATE_FILE,
            &manifest.files.kernel_state,
            &kernel_state,
        )?;
        self.commit(manifest_bytes)
    }

    /// Finishes `memory.img` (length, fsync) and returns the entries of both data files.
    fn finish_files(&mut self) -> Result<(FileEntry, FileEntry)> {
        let kernel_state = self.kernel_state.ok_or_else(|| {
            ImageError::usage(
                KERNEL_STATE_FILE,
                "not written; call write_kernel_state before finish",
            )
        })?;
        Ok((self.memory.finish()?, kernel_state))
    }

    /// Writes `manifest.json` (last, so an image without one is never complete), makes the
    /// directory durable and places it at the destination.
    fn commit(mut self, manifest_bytes: &[u8]) -> Result<WrittenImage> {
        let digest = Digest::of(manifest_bytes);
        let mut file = create_file(&self.tmp, MANIFEST_FILE)?;
        file.write_all(manifest_bytes)
            .map_err(|e| ImageError::io(MANIFEST_FILE, "write", e))?;
        file.sync_all()
            .map_err(|e| ImageError::io(MANIFEST_FILE, "fsync", e))?;
        sync_dir(&self.tmp)?;

        let dir = match self.dest.clone() {
            Destination::Dir { path, overwrite } => self.place_at(&path, overwrite)?,
            Destination::ContentAddressed { parent } => {
                let path = parent.join(format!("sha256-{}", digest.to_hex()));
                self.place_content_addressed(&path)?
            }
        };
        Ok(WrittenImage { dir, digest })
    }

    /// Renames the finished temporary directory to `path`.
    fn place_at(&mut self, path: &Path, overwrite: bool) -> Result<PathBuf> {
        let parent = parent_of(path);
        if is_absent_or_empty_dir(path)? {
            // rename(2) replaces an empty directory atomically, and fails if another writer
            // filled it in the meantime.
            std::fs::rename(&self.tmp, path).map_err(|e| {
                if is_dir_not_empty(&e) && !overwrite {
                    ImageError::Exists {
                        path: path.to_path_buf(),
                    }
                } else {
                    ImageError::dir(path, "rename", e)
                }
            })?;
        } else if !overwrite {
            return Err(ImageError::Exists {
                path: path.to_path_buf(),
            });
        } else {
            let stem = path
                .file_name()
                .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
            let old = parent.join(unique_name(&stem, "old"));
            std::fs::rename(path, &old).map_err(|e| ImageError::dir(path, "move aside", e))?;
            if let Err(e) = std::fs::rename(&self.tmp, path) {
                // Put the old image back rather than leave nothing at `path`.
                let _ = std::fs::rename(&old, path);
                return Err(ImageError::dir(path, "rename", e));
            }
            // The new image is in place; failing to delete the old one is not the caller's
            // problem (it is a hidden sibling), so the error is ignored.
            let _ = remove_any(&old);
        }
        self.done = true;
        sync_dir(&parent)?;
        Ok(path.to_path_buf())
    }

    /// Renames the finished temporary directory to the content-addressed `path`, or keeps an
    /// identical image already there.
    fn place_content_addressed(&mut self, path: &Path) -> Result<PathBuf> {
        match std::fs::rename(&self.tmp, path) {
            Ok(()) => {
                self.done = true;
                sync_dir(&parent_of(path))?;
            }
            // Same digest, same image (it may have been placed by a concurrent writer): keep
            // it and let `Drop` remove our copy.
            Err(e) if path.is_dir() && is_dir_not_empty(&e) => {}
            Err(e) => return Err(ImageError::dir(path, "rename", e)),
        }
        Ok(path.to_path_buf())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Checks that a file as written has the size and digest the manifest records.
fn same_content(file: &'static str, expected: &FileEntry, written: &FileEntry) -> Result<()> {
    crate::reader::check_size(file, written.size, expected.size)?;
    if written.sha256 != expected.sha256 {
        return Err(ImageError::DigestMismatch {
            file,
            expected: expected.sha256.to_hex(),
            actual: written.sha256.to_hex(),
        });
    }
    Ok(())
}

/// The directory containing `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hidden sibling name that no other writer (thread or process) uses at the same time.
fn unique_name(stem: &str, kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".{stem}.{kind}-{}-{nanos}-{n}", std::process::id())
}

/// True if nothing is at `path`, or an empty directory; false for anything else.
pub(crate) fn is_absent_or_empty_dir(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(ImageError::dir(path, "stat", e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                std::fs::read_dir(path).map_err(|e| ImageError::dir(path, "read directory", e))?;
            Ok(entries.next().is_none())
        }
        Ok(_) => Ok(false),
    }
}

/// Whether a failed rename means the destination is a non-empty directory.
fn is_dir_not_empty(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST))
}

/// Creates a new read-only image file in `dir` (open for writing by us alone).
fn create_file(dir: &Path, name: &'static str) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(dir.join(name))
        .map_err(|e| ImageError::io(name, "create", e))
}

/// Makes a directory's entries (creations, renames) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::dir(dir, "fsync", e))
}

/// Removes whatever is at `path`: a directory tree or a single file.
fn remove_any(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests;

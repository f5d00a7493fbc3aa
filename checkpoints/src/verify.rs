//! Verifying `memory.img` fast: a full SHA-256 once, then a verification stamp.
//!
//! # Why a stamp
//!
//! Restore must take milliseconds, and hashing a memory file of hundreds of MiB takes far
//! longer; yet a corrupted or tampered `memory.img` must never be restored. So the first open
//! of an image hashes `memory.img` in full, and on success records a stamp, `memory.img.verified`
//! in the image directory: the file's identity as `fstat` reports it (device, inode, size,
//! modification and status-change times to the nanosecond) and the digest it was found to
//! have. A later open that finds the same identity and the same digest in the manifest skips
//! the hash. Anything else (no stamp, an unreadable or unparsable one, a different identity,
//! a different digest) means a full rehash, and a mismatch then refuses the image.
//!
//! The argument rests on `ctime`: every change to a file's content (a write through any
//! descriptor or mapping, a truncate, an append) sets its `ctime` to the current time, and
//! no system call sets `ctime` to a chosen value (`utimensat` can fake `mtime`, not `ctime`).
//! Replacing the file gives a new inode. So a one-byte corruption after the stamp was written
//! changes the identity and is caught by a full rehash.
//!
//! # The racy case
//!
//! File times come from a coarse clock (a few milliseconds per tick on many kernels). A write
//! in the same tick as the one that set the `ctime` we recorded would leave the `ctime`
//! unchanged. This is the "racily clean" problem git solves for its index, and the fix is the
//! same: the stamp is trusted only if it was started strictly after the file last changed, by
//! the file system's own clock. Before hashing, the verifier creates the stamp's temporary file
//! in the same directory and takes its `mtime` as `verified_at`. A write after that point has a
//! time `>= verified_at`, so if `verified_at > ctime` the write moves `ctime` and shows. Writes
//! before that point are in the bytes that get hashed; the file is `fstat`ed again after hashing,
//! and a change during the hash refuses the image rather than stamping it. If the file changed
//! in the same tick as `verified_at`, no stamp is written; a later open will hash again and
//! stamp then. A wall clock stepped backwards could in principle defeat this; that is accepted.
//!
//! # Trust
//!
//! The stamp is only as trustworthy as the directory: whoever can write it can also write
//! `memory.img` and the manifest, i.e. replace the image. It is not part of the image (the
//! manifest does not list it, the image digest does not cover it), so whatever copies or
//! distributes an image must leave it out; a stamp copied to another host would in any case not
//! match the new file's inode and times. (One more reason the directory must be trusted: a
//! process that already holds a writable shared mapping of `memory.img` can change a page it
//! has dirtied without a new time until writeback; such a process can write the image anyway.)
//! If the directory is not writable, no stamp is kept and
//! every open rehashes; that is slower, never less safe.
//!
//! The identity is taken from the open descriptor that is hashed and later handed to restore,
//! not from the path, so a file swapped in under the same name is not mistaken for the one
//! that was checked.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::FileEntry;
use crate::{MEMORY_FILE, STAMP_FILE};

/// The stamp is a few hundred bytes; anything much larger is not ours.
const STAMP_MAX_BYTES: u64 = 4096;

/// How `memory.img` was found intact when the image was opened or verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryCheck {
    /// A verification stamp matched the file's identity; the file was not rehashed.
    Stamp,
    /// The file was hashed in full. `stamped` says whether a stamp was recorded so the next
    /// open can skip the hash (false for a read-only directory, or a file changed too
    /// recently to stamp safely; see the module doc).
    Hashed {
        /// Whether a stamp was written.
        stamped: bool,
    },
}

/// A file time to the nanosecond, as `fstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTime {
    sec: i64,
    nsec: i64,
}

/// What identifies one version of one file: any content change moves `ctime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: FileTime,
    ctime: FileTime,
}

impl Identity {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: FileTime {
                sec: meta.mtime(),
                nsec: meta.mtime_nsec(),
            },
            ctime: FileTime {
                sec: meta.ctime(),
                nsec: meta.ctime_nsec(),
            },
        }
    }

    fn of_file(file: &File) -> Result<Self> {
        let meta = file
            .metadata()
            .map_err(|e| ImageError::io(MEMORY_FILE, "stat", e))?;
        Ok(Self::of(&meta))
    }

    /// Whether a stamp started at `verified_at` can vouch for this version (the racy case).
    fn settled_before(&self, verified_at: FileTime) -> bool {
        verified_at > self.ctime && verified_at > self.mtime
    }
}

/// The content of `memory.img.verified`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    file: Identity,
    sha256: Digest,
    verified_at: FileTime,
}

/// Checks `memory.img` (open as `file`, in image directory `dir`) against its manifest entry:
/// size always, content by stamp or by full hash. `force` ignores any stamp (and refreshes it).
pub(crate) fn verify_memory(
    dir: &Path,
    file: &File,
    expected: &FileEntry,
    force: bool,
) -> Result<MemoryCheck> {
    let before = Identity::of_file(file)?;
    crate::reader::check_size(MEMORY_FILE, before.size, expected.size)?;
    if !force && read_stamp(dir).is_some_and(|s| stamp_vouches(&s, &before, expected)) {
        return Ok(MemoryCheck::Stamp);
    }

    // Start the stamp before hashing: its creation time is the clock reading the racy-case
    // argument needs (module doc).
    let pending = PendingStamp::start(dir);
    let actual = crate::memory::page_digest(file, expected.size)?;
    let after = Identity::of_file(file)?;
    if after != before {
        return Err(ImageError::ChangedDuringVerify { file: MEMORY_FILE });
    }
    if actual != expected.sha256 {
        return Err(ImageError::DigestMismatch {
            file: MEMORY_FILE,
            expected: expected.sha256.to_hex(),
            actual: actual.to_hex(),
        });
    }
    let stamped = pending.is_some_and(|p| p.commit(&before, actual));
    Ok(MemoryCheck::Hashed { stamped })
}

fn stamp_vouches(stamp: &Stamp, now: &Identity, expected: &FileEntry) -> bool {
    stamp.file == *now
        && stamp.file.size == expected.size
        && stamp.sha256 == expected.sha256
        && now.settled_before(stamp.verified_at)
}

/// Reads the stamp, if there is a readable, well-formed one. Every failure means "no stamp":
/// the stamp is a cache, and the fallback is the full hash.
fn read_stamp(dir: &Path) -> Option<Stamp> {
    let file = File::open(dir.join(STAMP_FILE)).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > STAMP_MAX_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(STAMP_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A stamp being written: a temporary file in the image directory, renamed over
/// `memory.img.verified` on [`commit`](Self::commit), removed otherwise.
struct PendingStamp {
    dir: PathBuf,
    tmp: PathBuf,
    file: File,
    /// The temporary file's creation time, by the file system's clock.
    verified_at: FileTime,
    committed: bool,
}

impl PendingStamp {
    /// Creates the temporary file, or returns `None` if the directory is not writable.
    fn start(dir: &Path) -> Option<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{STAMP_FILE}.{}.{n}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ok()?;
        let mut pending = Self {
            dir: dir.to_path_buf(),
            tmp,
            file,
            verified_at: FileTime { sec: 0, nsec: 0 },
            committed: false,
        };
        let meta = pending.file.metadata().ok()?;
        pending.verified_at = Identity::of(&meta).mtime;
        Some(pending)
    }

    /// Writes the stamp for `identity` and renames it into place. Returns whether a stamp is
    /// now in place; false if the file changed too recently to vouch for, or on any error.
    fn commit(mut self, identity: &Identity, sha256: Digest) -> bool {
        if !identity.settled_before(self.verified_at) {
            return false;
        }
        let stamp = Stamp {
            file: *identity,
            sha256,
            verified_at: self.verified_at,
        };
        let Ok(bytes) = serde_json::to_vec(&stamp) else {
            return false;
        };
        // No fsync: a stamp lost in a crash only costs one rehash, and a torn one does not
        // parse and is ignored.
        if self.file.write_all(&bytes).is_err() {
            return false;
        }
        if std::fs::rename(&self.tmp, self.dir.join(STAMP_FILE)).is_err() {
            return false;
        }
        self.committed = true;
        true
    }
}

impl Drop for PendingStamp {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sec: i64, nsec: i64) -> FileTime {
        FileTime { sec, nsec }
    }

    fn identity(ctime: FileTime) -> Identity {
        Identity {
            dev: 1,
            ino: 2,
            size: 4096,
            mtime: t(100, 0),
            ctime,
        }
    }

    fn entry() -> FileEntry {
        FileEntry {
            size: 4096,
            sha256: Digest::of(b"m"),
        }
    }

    fn stamp(file: Identity, verified_at: FileTime) -> Stamp {
        Stamp {
            file,
            sha256: Digest::of(b"m"),
            verified_at,
        }
    }

    #[test]
    fn stamp_vouches_only_for_the_same_file_version_and_digest() {
        let id = identity(t(100, 5));
        let good = stamp(id, t(100, 6));
        assert!(stamp_vouches(&good, &id, &entry()));

        let mut changed = id;
        changed.ctime = t(100, 7);
        assert!(!stamp_vouches(&good, &changed, &entry()), "new ctime");
        let mut replaced = id;
        replaced.ino = 3;
        assert!(!stamp_vouches(&good, &replaced, &entry()), "new inode");
        let other_digest = FileEntry {
            sha256: Digest::of(b"other"),
            ..entry()
        };
        assert!(!stamp_vouches(&good, &id, &other_digest), "other digest");
    }

    #[test]
    fn racy_stamp_does_not_vouch() {
        // Started in the same clock tick as the file's last change: a later write in that
        // tick would not move ctime, so the stamp proves nothing.
        let id = identity(t(100, 5));
        assert!(!stamp_vouches(&stamp(id, t(100, 5)), &id, &entry()));
        assert!(!stamp_vouches(&stamp(id, t(99, 0)), &id, &entry()));
        // mtime set into the future (utimensat) makes it racy too.
        let mut future = id;
        future.mtime = t(200, 0);
        assert!(!stamp_vouches(&stamp(future, t(150, 0)), &future, &entry()));
    }

    #[test]
    fn stamp_round_trips_through_json_and_refuses_extras() {
        let s = stamp(identity(t(100, 5)), t(101, 0));
        let bytes = serde_json::to_vec(&s).unwrap();
        let back: Stamp = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.file, s.file);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["extra"] = 1.into();
        assert!(serde_json::from_value::<Stamp>(v).is_err());
    }

    #[test]
    fn commit_refuses_a_racy_identity_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let pending = PendingStamp::start(dir.path()).unwrap();
        let racy = identity(pending.verified_at);
        assert!(!pending.commit(&racy, Digest::of(b"m")));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let pending = PendingStamp::start(dir.path()).unwrap();
        let settled = identity(t(pending.verified_at.sec - 1, 0));
        assert!(pending.commit(&settled, Digest::of(b"m")));
        let read = read_stamp(dir.path()).unwrap();
        assert_eq!(read.file, settled);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

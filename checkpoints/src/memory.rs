//! Writing `memory.img`: guest physical memory as a page-aligned sparse file.
//!
//! Pages that are all zero are not written, so they stay holes: a guest that touched 40 MiB
//! of a 1 GiB address space costs 40 MiB of disk, and restore's `MAP_PRIVATE` mapping reads
//! holes as zero pages without I/O. The file's length is set to the full guest memory size at
//! the end, so offsets in the file are guest physical addresses.
//!
//! The SHA-256 recorded in the manifest for memory.img is its *page digest*: the hash of
//! every page that is not all zero, in increasing offset order, each preceded by its offset
//! (u64, little-endian). Zero pages, holes or not, add nothing, so the digest names the
//! content, is the same however the file's holes fall, and is checked by reading only the
//! file's data (`SEEK_DATA`): hashing a mostly-empty 2 GiB guest memory as a flat file took
//! seconds on every first restore. It is computed while writing, which is why memory must
//! be given in increasing offset order.

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::FileEntry;
use crate::{MEMORY_FILE, PAGE_SIZE};

/// [`PAGE_SIZE`] as a `usize` for slicing (4096 fits every target).
const PAGE: usize = PAGE_SIZE as usize;

/// Writes guest memory into a sparse `memory.img`, hashing as it goes.
#[derive(Debug)]
pub(crate) struct MemoryWriter {
    file: File,
    /// Guest physical memory size: the final file length and the bound for every write.
    guest_bytes: u64,
    /// Everything below this offset has been written (or skipped as zero) and hashed.
    next: u64,
    hasher: Sha256,
}

impl MemoryWriter {
    /// Starts writing into `file`, which must be empty.
    pub(crate) fn new(file: File, guest_bytes: u64) -> Self {
        Self {
            file,
            guest_bytes,
            next: 0,
            hasher: Sha256::new(),
        }
    }

    /// Writes `bytes` at guest physical address `offset`. Both must be page-aligned, regions
    /// must come in increasing order without overlap, and stay inside guest memory; gaps
    /// between regions read back as zeros.
    pub(crate) fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::usage(
                MEMORY_FILE,
                format!(
                    "region at {offset:#x} of {len:#x} bytes is not aligned to {PAGE_SIZE}-byte pages"
                ),
            ));
        }
        if offset < self.next {
            return Err(ImageError::usage(
                MEMORY_FILE,
                format!(
                    "region at {offset:#x} overlaps or precedes the previous one (which ended at {:#x}); give regions in increasing order",
                    self.next
                ),
            ));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.guest_bytes);
        let Some(end) = end else {
            return Err(ImageError::usage(
                MEMORY_FILE,
                format!(
                    "region at {offset:#x} of {len:#x} bytes is past the end of guest memory ({:#x} bytes)",
                    self.guest_bytes
                ),
            ));
        };

        // Write each run of non-zero pages with one call; zero pages are skipped (holes).
        let mut run_start: Option<usize> = None;
        for (i, page) in bytes.chunks_exact(PAGE).enumerate() {
            let at = i * PAGE;
            let zero = is_zero(page);
            if !zero {
                hash_page(&mut self.hasher, offset + at as u64, page);
            }
            match (zero, run_start) {
                (true, Some(start)) => {
                    self.write_run(offset, start, &bytes[start..at])?;
                    run_start = None;
                }
                (false, None) => run_start = Some(at),
                _ => {}
            }
        }
        if let Some(start) = run_start {
            self.write_run(offset, start, &bytes[start..])?;
        }
        self.next = end;
        Ok(())
    }

    fn write_run(&self, region: u64, start: usize, run: &[u8]) -> Result<()> {
        self.file
            .write_all_at(run, region + start as u64)
            .map_err(|e| ImageError::io(MEMORY_FILE, "write", e))
    }

    /// Hashes the zero tail, sets the file length to the guest memory size (leaving the tail
    /// a hole), flushes the file to disk and returns its manifest entry.
    /// Takes `&mut self` so the owner (which has a `Drop`) need not move it out; the writer
    /// is not to be used afterwards.
    pub(crate) fn finish(&mut self) -> Result<FileEntry> {
        self.next = self.guest_bytes;
        self.file
            .set_len(self.guest_bytes)
            .map_err(|e| ImageError::io(MEMORY_FILE, "set length", e))?;
        self.file
            .sync_all()
            .map_err(|e| ImageError::io(MEMORY_FILE, "fsync", e))?;
        Ok(FileEntry {
            size: self.guest_bytes,
            sha256: Digest::from_hasher(std::mem::take(&mut self.hasher)),
        })
    }
}

/// Add a non-zero page at `offset` to a page digest (module doc).
pub(crate) fn hash_page(hasher: &mut Sha256, offset: u64, page: &[u8]) {
    hasher.update(offset.to_le_bytes());
    hasher.update(page);
}

/// The data regions of the first `len` bytes of a sparse `file` (`SEEK_DATA`/`SEEK_HOLE`),
/// as page-aligned `[start, end)` ranges in order: what must be read of it, holes being
/// zeros. A file system without holes gives one region, the whole file.
pub fn data_regions(file: &File, len: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsFd as _;
    let seek = |from: u64, whence| {
        lseek(
            file.as_fd(),
            i64::try_from(from).unwrap_or(i64::MAX),
            whence,
        )
        .map(|at| u64::try_from(at).unwrap_or(len))
    };
    let mut regions = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let data = match seek(pos, Whence::SeekData) {
            Ok(d) => d,
            // No data after `pos`: the rest is a hole.
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = seek(data, Whence::SeekHole)?;
        // Round outwards so that every page with data is read whole.
        let start = data - data % PAGE_SIZE;
        let end = hole
            .min(len)
            .div_ceil(PAGE_SIZE)
            .saturating_mul(PAGE_SIZE)
            .min(len);
        if start < end {
            regions.push((start, end));
        }
        pos = end.max(hole);
    }
    Ok(regions)
}

/// The page digest (module doc) of the first `len` bytes of `file`, reading only its data
/// regions. A file shorter than `len` is [`ImageError::ChangedDuringVerify`]: callers check
/// the size first, so a short read means it shrank under us.
pub(crate) fn page_digest(file: &File, len: u64) -> Result<Digest> {
    const CHUNK: usize = 1 << 20;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let regions = data_regions(file, len).map_err(|e| ImageError::io(MEMORY_FILE, "seek", e))?;
    for (mut at, end) in regions {
        while at < end {
            let n = usize::try_from((end - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = &mut buf[..n];
            file.read_exact_at(chunk, at).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    ImageError::ChangedDuringVerify { file: MEMORY_FILE }
                } else {
                    ImageError::io(MEMORY_FILE, "read", e)
                }
            })?;
            for (i, page) in chunk.chunks(PAGE).enumerate() {
                if !is_zero(page) {
                    hash_page(&mut hasher, at + (i * PAGE) as u64, page);
                }
            }
            at += n as u64;
        }
    }
    Ok(Digest::from_hasher(hasher))
}

/// The page digest of `bytes` taken as memory from offset 0 (for tests).
#[cfg(test)]
pub(crate) fn page_digest_of(bytes: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    for (i, page) in bytes.chunks(PAGE).enumerate() {
        if !is_zero(page) {
            hash_page(&mut hasher, (i * PAGE) as u64, page);
        }
    }
    Digest::from_hasher(hasher)
}

/// Whether a page is all zero. Checks 64 bytes at a time (the OR-fold vectorises) and stops
/// at the first non-zero block, since a page with data usually shows it early.
pub(crate) fn is_zero(page: &[u8]) -> bool {
    page.chunks(64)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn writer(dir: &tempfile::TempDir, guest: u64) -> (MemoryWriter, std::path::PathBuf) {
        let path = dir.path().join(MEMORY_FILE);
        let file = File::create(&path).unwrap();
        (MemoryWriter::new(file, guest), path)
    }

    #[test]
    fn regions_land_at_their_offsets_and_gaps_read_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, path) = writer(&dir, 8 * PAGE_SIZE);
        let a = vec![0xaau8; PAGE];
        let mut b = vec![0u8; 3 * PAGE];
        b[PAGE + 17] = 0xbb; // middle page has data, first and last are zero
        w.write_at(0, &a).unwrap();
        w.write_at(3 * PAGE_SIZE, &b).unwrap();
        let entry = w.finish().unwrap();

        let content = std::fs::read(&path).unwrap();
        let mut expected = vec![0u8; 8 * PAGE];
        expected[..PAGE].copy_from_slice(&a);
        expected[3 * PAGE..6 * PAGE].copy_from_slice(&b);
        assert_eq!(content, expected);
        assert_eq!(entry.size, 8 * PAGE_SIZE);
        assert_eq!(entry.sha256, page_digest_of(&expected));
        // Read back through the file's data regions, the digest is the same.
        let file = File::open(&path).unwrap();
        assert_eq!(page_digest(&file, 8 * PAGE_SIZE).unwrap(), entry.sha256);
    }

    #[test]
    fn zero_pages_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        let guest = 8 * 1024 * 1024u64;
        let (mut w, path) = writer(&dir, guest);
        let mut mem = vec![0u8; guest as usize];
        mem[5 * PAGE] = 1; // two data pages out of 2048
        mem[1500 * PAGE + 4095] = 2;
        w.write_at(0, &mem).unwrap();
        w.finish().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.size(), guest);
        // st_blocks counts 512-byte units actually allocated. Allow generous slack for file
        // system metadata and block size, but far less than the 8 MiB a dense file takes.
        let allocated = meta.blocks() * 512;
        assert!(allocated <= guest / 16, "allocated {allocated} bytes");
    }

    #[test]
    fn refuses_misuse() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = writer(&dir, 4 * PAGE_SIZE);
        let page = vec![1u8; PAGE];
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert!(msg(w.write_at(1, &page)).contains("not aligned"));
        assert!(msg(w.write_at(0, &page[..100])).contains("not aligned"));
        assert!(msg(w.write_at(4 * PAGE_SIZE, &page)).contains("past the end"));
        assert!(msg(w.write_at(u64::MAX - 4095, &page)).contains("past the end"));
        w.write_at(2 * PAGE_SIZE, &page).unwrap();
        assert!(msg(w.write_at(2 * PAGE_SIZE, &page)).contains("increasing order"));
        assert!(msg(w.write_at(0, &page)).contains("increasing order"));
        // After a refusal the writer is still usable.
        w.write_at(3 * PAGE_SIZE, &page).unwrap();
        assert!(msg(w.write_at(0, &page)).starts_with("memory.img: "));
    }

    #[test]
    fn the_page_digest_names_content_not_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = vec![0u8; 16 * PAGE];
        mem[5 * PAGE + 7] = 1;
        mem[9 * PAGE] = 2;
        // Dense (zero pages written out) and sparse (holes) files of the same content.
        let dense = dir.path().join("dense");
        std::fs::write(&dense, &mem).unwrap();
        let sparse = dir.path().join("sparse");
        let f = File::create(&sparse).unwrap();
        f.write_all_at(&mem[5 * PAGE..6 * PAGE], 5 * PAGE_SIZE)
            .unwrap();
        f.write_all_at(&mem[9 * PAGE..10 * PAGE], 9 * PAGE_SIZE)
            .unwrap();
        f.set_len(16 * PAGE_SIZE).unwrap();
        let len = 16 * PAGE_SIZE;
        let a = page_digest(&File::open(&dense).unwrap(), len).unwrap();
        let b = page_digest(&File::open(&sparse).unwrap(), len).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, page_digest_of(&mem));
        // A byte moved to another page is another content.
        let mut moved = mem.clone();
        moved[9 * PAGE] = 0;
        moved[10 * PAGE] = 2;
        assert_ne!(page_digest_of(&moved), a);
    }

    #[test]
    fn is_zero_finds_a_byte_anywhere() {
        let mut page = vec![0u8; PAGE];
        assert!(is_zero(&page));
        for i in [0, 63, 64, 2048, PAGE - 1] {
            page[i] = 1;
            assert!(!is_zero(&page), "byte {i}");
            page[i] = 0;
        }
    }
}

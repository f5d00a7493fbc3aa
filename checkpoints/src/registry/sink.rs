//! Where decompressed layers go on a pull: `memory.img` through the image writer (sparse,
//! capped at the guest memory size) and `kernel.state` into memory (capped).
//!
//! The caps come from the pulled manifest.json, already checked against the format's limits, so
//! a layer that decompresses to more than the image it belongs to is cut off at the first byte
//! too many, not after it has filled a disk.

use super::error::{RegistryError, Result};
use crate::writer::ImageWriter;
use crate::PAGE_SIZE;

/// Takes decompressed bytes in order, in pieces of any size.
pub(crate) trait Sink {
    /// Takes the next piece (possibly empty).
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
}

/// Bytes of guest memory gathered before each write: a multiple of the page size, so every
/// write the image writer gets is page-aligned, and large enough to amortise the call.
const MEMORY_CHUNK: usize = 256 * PAGE_SIZE as usize;

/// Feeds decompressed guest memory to an [`ImageWriter`], which leaves zero pages as holes.
pub(crate) struct MemorySink<'w> {
    writer: &'w mut ImageWriter,
    /// Bytes not yet written, fewer than [`MEMORY_CHUNK`].
    pending: Vec<u8>,
    /// Guest physical address of `pending[0]`.
    offset: u64,
    /// The guest memory size manifest.json declares: exactly this many bytes must arrive.
    expected: u64,
    /// Names the layer in errors.
    blob: String,
}

impl<'w> MemorySink<'w> {
    /// A sink writing `expected` bytes of guest memory through `writer`.
    pub(crate) fn new(writer: &'w mut ImageWriter, expected: u64, blob: String) -> Self {
        Self {
            writer,
            pending: Vec::with_capacity(MEMORY_CHUNK),
            offset: 0,
            expected,
            blob,
        }
    }

    /// Writes what is pending and checks that exactly the expected amount arrived.
    pub(crate) fn finish(mut self) -> Result<()> {
        let total = self.offset + self.pending.len() as u64;
        if total != self.expected {
            return Err(RegistryError::blob(
                &self.blob,
                format!(
                    "decompresses to {total} bytes, manifest.json says memory.img is {}",
                    self.expected
                ),
            ));
        }
        // `expected` is a multiple of the page size (manifest check), so `pending` is too.
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.writer.write_memory_at(self.offset, &self.pending)?;
            self.offset += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }
}

impl Sink for MemorySink<'_> {
    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        let total = self.offset + self.pending.len() as u64 + bytes.len() as u64;
        if total > self.expected {
            return Err(RegistryError::blob(
                &self.blob,
                format!(
                    "decompresses to more than the {} bytes manifest.json says memory.img is",
                    self.expected
                ),
            ));
        }
        while !bytes.is_empty() {
            let take = bytes.len().min(MEMORY_CHUNK - self.pending.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == MEMORY_CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }
}

/// Gathers decompressed `kernel.state` in memory (the writer takes it whole), capped at the
/// size manifest.json declares.
pub(crate) struct KernelStateSink {
    bytes: Vec<u8>,
    expected: u64,
    blob: String,
}

impl KernelStateSink {
    /// A sink for exactly `expected` bytes (already capped by the manifest check).
    pub(crate) fn new(expected: u64, blob: String) -> Self {
        Self {
            bytes: Vec::new(),
            expected,
            blob,
        }
    }

    /// The bytes, if exactly the expected amount arrived.
    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        if self.bytes.len() as u64 != self.expected {
            return Err(RegistryError::blob(
                &self.blob,
                format!(
                    "decompresses to {} bytes, manifest.json says kernel.state is {}",
                    self.bytes.len(),
                    self.expected
                ),
            ));
        }
        Ok(self.bytes)
    }
}

impl Sink for KernelStateSink {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.bytes.len() as u64 + bytes.len() as u64 > self.expected {
            return Err(RegistryError::blob(
                &self.blob,
                format!(
                    "decompresses to more than the {} bytes manifest.json says kernel.state is",
                    self.expected
                ),
            ));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::super::codec::{compress, Decompressor, InputDigest};
    use super::*;
    use crate::test_util::SENTRY;
    use crate::{Image, MEMORY_FILE};

    const GUEST: u64 = 64 << 20;

    /// 64 MiB of guest memory with data in three pages.
    fn memory() -> Vec<u8> {
        let mut mem = vec![0u8; GUEST as usize];
        for page in [0u64, 1000, GUEST / PAGE_SIZE - 1] {
            let at = (page * PAGE_SIZE) as usize;
            mem[at..at + 100].fill(page as u8 | 1);
        }
        mem
    }

    fn compressed(data: &[u8]) -> Vec<u8> {
        use std::io::{Read, Seek};
        let mut c = compress(data, "t", InputDigest::Flat).unwrap();
        c.file.rewind().unwrap();
        let mut out = Vec::new();
        c.file.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn decompressed_memory_is_written_sparse_and_matches() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = memory();
        let stored = compressed(&mem);
        let kernel = b"kernel state".to_vec();

        let dir = tmp.path().join("img");
        let mut w = ImageWriter::create(&dir, SENTRY, GUEST).unwrap();
        let mut sink = MemorySink::new(&mut w, GUEST, "memory".to_owned());
        let mut d = Decompressor::new("memory".to_owned()).unwrap();
        for piece in stored.chunks(10_000) {
            d.feed(piece, &mut sink).unwrap();
        }
        d.finish().unwrap();
        sink.finish().unwrap();
        w.write_kernel_state(&kernel).unwrap();
        let written = w.finish().unwrap();

        let image = Image::open(&written.dir, SENTRY).unwrap();
        assert_eq!(
            image.manifest().files.memory.sha256,
            crate::memory::page_digest_of(&mem)
        );
        let meta = std::fs::metadata(dir.join(MEMORY_FILE)).unwrap();
        assert_eq!(meta.len(), GUEST);
        // Three data pages, not 64 MiB: holes where the guest had zeros.
        assert!(meta.blocks() * 512 <= 1 << 20, "{} blocks", meta.blocks());
        assert!(std::fs::read(dir.join(MEMORY_FILE)).unwrap() == mem);
    }

    #[test]
    fn memory_must_be_exactly_the_declared_size() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ImageWriter::create(tmp.path().join("a"), SENTRY, 4 * PAGE_SIZE).unwrap();

        // One byte too many is refused on arrival.
        let mut sink = MemorySink::new(&mut w, 4 * PAGE_SIZE, "memory layer".to_owned());
        sink.write(&[0u8; 4 * PAGE_SIZE as usize]).unwrap();
        let err = sink.write(&[0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory layer: decompresses to more than the 16384 bytes manifest.json says memory.img is"
        );

        // Too few is refused at the end.
        let mut w = ImageWriter::create(tmp.path().join("b"), SENTRY, 4 * PAGE_SIZE).unwrap();
        let mut sink = MemorySink::new(&mut w, 4 * PAGE_SIZE, "memory layer".to_owned());
        sink.write(&[1u8; 3 * PAGE_SIZE as usize + 5]).unwrap();
        let err = sink.finish().unwrap_err();
        assert!(
            err.to_string().contains("decompresses to 12293 bytes"),
            "{err}"
        );
    }

    #[test]
    fn kernel_state_is_capped() {
        let mut sink = KernelStateSink::new(10, "kernel layer".to_owned());
        sink.write(b"0123456").unwrap();
        assert!(sink.write(b"7890").is_err());
        sink.write(b"789").unwrap();
        assert_eq!(sink.finish().unwrap(), b"0123456789");

        let mut sink = KernelStateSink::new(10, "kernel layer".to_owned());
        sink.write(b"short").unwrap();
        assert!(sink.finish().unwrap_err().to_string().contains("5 bytes"));
    }
}

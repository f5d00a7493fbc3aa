//! zstd for the layers: streaming compression into a temporary file, and streaming
//! decompression into a [`Sink`], never holding a whole layer in memory.
//!
//! Compression goes to an anonymous temporary file (not straight to the network) because the
//! registry digest must be known before the upload, both to ask the registry whether it has
//! the blob already (HEAD) and to commit the upload; the alternative, compressing twice, costs
//! more CPU than the temporary file costs disk (compressed size only).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use sha2::{Digest as _, Sha256};
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

use super::error::{RegistryError, Result};
use super::sink::Sink;
use crate::digest::Digest;
use crate::manifest::FileEntry;
use crate::memory::{hash_page, is_zero};
use crate::PAGE_SIZE;

/// [`PAGE_SIZE`] as a `usize` for slicing.
const PAGE: usize = PAGE_SIZE as usize;

/// zstd level for pushes: level 3 (zstd's default) runs at hundreds of MB/s on data and GB/s on
/// zero pages, and decompression speed does not depend on it.
pub(crate) const LEVEL: i32 = 3;

/// Bytes read or produced per step.
const CHUNK: usize = 1 << 20;

/// Largest zstd window a pulled layer may ask for (2^24 = 16 MiB of decoder memory). Our
/// encoder at [`LEVEL`] uses 2^21 at most; zstd's own default limit is 2^27.
const WINDOW_LOG_MAX: u32 = 24;

/// Most bytes zstd produces for `n` bytes of input (ZSTD_compressBound, plus slack for the
/// frame and block headers of a streamed frame).
pub(crate) fn zstd_bound(n: u64) -> u64 {
    n.saturating_add(n >> 8).saturating_add(64 << 10)
}

/// A layer compressed into an anonymous temporary file (gone when dropped).
#[derive(Debug)]
pub(crate) struct Compressed {
    /// The compressed bytes; the file offset is at the end.
    pub(crate) file: File,
    /// sha256 of the compressed bytes: the registry digest.
    pub(crate) digest: Digest,
    /// Length of the compressed bytes.
    pub(crate) size: u64,
    /// Size and digest of what was compressed, to compare with manifest.json.
    pub(crate) input: FileEntry,
}

/// Which digest of the input [`compress`] takes: the one manifest.json records for that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputDigest {
    /// sha256 of the bytes (`kernel.state`).
    Flat,
    /// The page digest (`memory.img`; see [`crate::memory`]).
    Pages,
}

/// Takes an [`InputDigest`] of bytes given in pieces of any size.
enum InputHasher {
    Flat(Sha256),
    Pages {
        hasher: Sha256,
        /// The start of a page not yet complete.
        partial: Vec<u8>,
        /// Offset of the next whole page.
        offset: u64,
    },
}

impl InputHasher {
    fn new(kind: InputDigest) -> Self {
        match kind {
            InputDigest::Flat => Self::Flat(Sha256::new()),
            InputDigest::Pages => Self::Pages {
                hasher: Sha256::new(),
                partial: Vec::with_capacity(PAGE),
                offset: 0,
            },
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        let (hasher, partial, offset) = match self {
            Self::Flat(hasher) => return hasher.update(bytes),
            Self::Pages {
                hasher,
                partial,
                offset,
            } => (hasher, partial, offset),
        };
        let mut page_done = |page: &[u8], offset: &mut u64| {
            if !is_zero(page) {
                hash_page(hasher, *offset, page);
            }
            *offset += PAGE_SIZE;
        };
        if !partial.is_empty() {
            let take = (PAGE - partial.len()).min(bytes.len());
            partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if partial.len() < PAGE {
                return;
            }
            page_done(partial, offset);
            partial.clear();
        }
        let pages = bytes.chunks_exact(PAGE);
        partial.extend_from_slice(pages.remainder());
        for page in pages {
            page_done(page, offset);
        }
    }

    fn finish(self) -> Digest {
        match self {
            Self::Flat(hasher) => Digest::from_hasher(hasher),
            Self::Pages {
                mut hasher,
                partial,
                offset,
            } => {
                // A trailing part-page counts like a page (memory.img has none).
                if !is_zero(&partial) {
                    hash_page(&mut hasher, offset, &partial);
                }
                Digest::from_hasher(hasher)
            }
        }
    }
}

/// Compresses all of `input` (`what` names it in errors) into a temporary file, hashing both
/// sides as it goes (the input with `digest`).
pub(crate) fn compress(
    mut input: impl Read,
    what: &str,
    digest: InputDigest,
) -> Result<Compressed> {
    let io_err = |op: &str, e: io::Error| RegistryError::io(format!("{what}: {op}"), e);
    let file = tempfile::tempfile().map_err(|e| io_err("creating a temporary file", e))?;
    let out = HashingWriter {
        inner: BufWriter::with_capacity(CHUNK, file),
        hasher: Sha256::new(),
        size: 0,
    };
    let mut encoder =
        zstd::stream::write::Encoder::new(out, LEVEL).map_err(|e| io_err("zstd", e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = InputHasher::new(digest);
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        encoder
            .write_all(&buf[..n])
            .map_err(|e| io_err("compress", e))?;
    }
    let out = encoder.finish().map_err(|e| io_err("compress", e))?;
    let file = out
        .inner
        .into_inner()
        .map_err(|e| io_err("write", e.into_error()))?;
    Ok(Compressed {
        file,
        digest: Digest::from_hasher(out.hasher),
        size: out.size,
        input: FileEntry {
            size,
            sha256: hasher.finish(),
        },
    })
}

/// Counts and hashes what passes through to `inner`.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streaming zstd decompression: compressed bytes go in as they arrive, decompressed bytes go
/// to a [`Sink`] a buffer at a time.
pub(crate) struct Decompressor {
    decoder: Decoder<'static>,
    out: Vec<u8>,
    /// Whether the input so far ends exactly at the end of a frame.
    at_frame_end: bool,
    /// Names the blob in errors.
    blob: String,
}

impl Decompressor {
    /// A decompressor for the blob `blob` (named in errors).
    pub(crate) fn new(blob: String) -> Result<Self> {
        let mut decoder =
            Decoder::new().map_err(|e| RegistryError::io(format!("{blob}: starting zstd"), e))?;
        decoder
            .set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(|e| RegistryError::io(format!("{blob}: starting zstd"), e))?;
        Ok(Self {
            decoder,
            out: vec![0u8; CHUNK],
            at_frame_end: false,
            blob,
        })
    }

    /// Decompresses `input` (any slice of the compressed stream) into `sink`.
    pub(crate) fn feed(&mut self, input: &[u8], sink: &mut dyn Sink) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let mut input = InBuffer::around(input);
        loop {
            let mut output = OutBuffer::around(self.out.as_mut_slice());
            let hint = self
                .decoder
                .run(&mut input, &mut output)
                .map_err(|e| RegistryError::blob(&self.blob, format!("not valid zstd: {e}")))?;
            let produced = output.pos();
            // 0 means a frame was completely decoded and flushed.
            self.at_frame_end = hint == 0;
            sink.write(&self.out[..produced])?;
            // Done when all input is consumed and the decoder has no more to give: it filled
            // less than the whole buffer, or it finished a frame. (Calling it again after a
            // frame's end, with no input, would start the next frame and forget the end.)
            if input.pos() == input.src.len() && (hint == 0 || produced < self.out.len()) {
                return Ok(());
            }
        }
    }

    /// Checks that the compressed stream ended at the end of a frame, not in the middle.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.at_frame_end {
            Ok(())
        } else {
            Err(RegistryError::blob(
                &self.blob,
                "zstd stream ends in the middle of a frame",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects everything it is given.
    struct Collect(Vec<u8>);

    impl Sink for Collect {
        fn write(&mut self, bytes: &[u8]) -> Result<()> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn read_all(mut file: &File) -> Vec<u8> {
        use std::io::Seek;
        file.rewind().unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn round_trip_in_odd_pieces() {
        let mut data = vec![0u8; 5 * CHUNK + 12345];
        for (i, b) in data.iter_mut().enumerate().step_by(7) {
            *b = (i % 251) as u8;
        }
        let c = compress(data.as_slice(), "test", InputDigest::Flat).unwrap();
        let stored = read_all(&c.file);
        assert_eq!(stored.len() as u64, c.size);
        assert_eq!(Digest::of(&stored), c.digest);
        assert_eq!(c.input.size, data.len() as u64);
        assert_eq!(c.input.sha256, Digest::of(&data));
        let c = compress(data.as_slice(), "test", InputDigest::Pages).unwrap();
        assert_eq!(c.input.sha256, crate::memory::page_digest_of(&data));

        let mut d = Decompressor::new("test".to_owned()).unwrap();
        let mut sink = Collect(Vec::new());
        for piece in stored.chunks(777) {
            d.feed(piece, &mut sink).unwrap();
        }
        d.finish().unwrap();
        assert!(sink.0 == data, "round trip differs");
    }

    #[test]
    fn page_digest_in_odd_pieces_matches_the_memory_module() {
        let mut data = vec![0u8; 40 * PAGE];
        data[3 * PAGE + 5] = 1;
        data[17 * PAGE] = 2;
        data[39 * PAGE + PAGE - 1] = 3;
        for piece in [1, 777, PAGE, 3 * PAGE + 1] {
            let mut h = InputHasher::new(InputDigest::Pages);
            data.chunks(piece).for_each(|p| h.update(p));
            assert_eq!(
                h.finish(),
                crate::memory::page_digest_of(&data),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn a_frame_ending_on_a_full_output_buffer_is_complete() {
        // The decoder's last step fills its output buffer exactly and reports the frame's
        // end; asking it for more would start reading a next frame.
        let c = compress(io::repeat(0).take(4 * CHUNK as u64), "t", InputDigest::Flat).unwrap();
        let mut d = Decompressor::new("t".to_owned()).unwrap();
        let mut sink = Collect(Vec::new());
        d.feed(&read_all(&c.file), &mut sink).unwrap();
        d.feed(&[], &mut sink).unwrap();
        d.finish().unwrap();
        assert_eq!(sink.0.len(), 4 * CHUNK);
    }

    #[test]
    fn zeros_compress_to_almost_nothing() {
        // 64 MiB of zeros, read through a reader so nothing holds them all.
        let c = compress(io::repeat(0).take(64 << 20), "zeros", InputDigest::Flat).unwrap();
        assert!(c.size < 16 << 10, "{} bytes", c.size);
        assert!(c.size <= zstd_bound(64 << 20));
    }

    #[test]
    fn truncated_and_garbage_streams_are_refused() {
        let c = compress(&b"hello, checkpoint"[..], "t", InputDigest::Flat).unwrap();
        let stored = read_all(&c.file);

        let mut d = Decompressor::new("layer".to_owned()).unwrap();
        let mut sink = Collect(Vec::new());
        d.feed(&stored[..stored.len() - 3], &mut sink).unwrap();
        let err = d.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer: zstd stream ends in the middle of a frame"
        );

        let d = Decompressor::new("layer".to_owned()).unwrap();
        assert!(d.finish().is_err(), "an empty stream is not a layer");

        let mut d = Decompressor::new("layer".to_owned()).unwrap();
        let err = d.feed(b"this is not zstd at all", &mut sink).unwrap_err();
        assert!(
            err.to_string().starts_with("layer: not valid zstd"),
            "{err}"
        );
    }

    #[test]
    fn sink_errors_stop_decompression() {
        struct Refuse;
        impl Sink for Refuse {
            fn write(&mut self, bytes: &[u8]) -> Result<()> {
                if bytes.is_empty() {
                    Ok(())
                } else {
                    Err(RegistryError::blob("sink", "full"))
                }
            }
        }
        let c = compress(io::repeat(1).take(3 * CHUNK as u64), "t", InputDigest::Flat).unwrap();
        let mut d = Decompressor::new("layer".to_owned()).unwrap();
        let err = d.feed(&read_all(&c.file), &mut Refuse).unwrap_err();
        assert_eq!(err.to_string(), "sink: full");
    }

    #[test]
    fn a_huge_window_is_refused() {
        // A frame asking for a 2^27-byte window, as a decompression-memory attack would.
        let mut enc = zstd::stream::raw::Encoder::new(1).unwrap();
        enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
            .unwrap();
        let mut out = vec![0u8; 1 << 16];
        let mut input = InBuffer::around(&[7u8; 1000][..]);
        let mut output = OutBuffer::around(out.as_mut_slice());
        enc.run(&mut input, &mut output).unwrap();
        enc.finish(&mut output, true).unwrap();
        let n = output.pos();
        let mut d = Decompressor::new("layer".to_owned()).unwrap();
        let err = d.feed(&out[..n], &mut Collect(Vec::new())).unwrap_err();
        assert!(err.to_string().contains("not valid zstd"), "{err}");
    }
}

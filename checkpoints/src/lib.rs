//! The checkpoint image format: a directory holding a manifest, guest memory and kernel state.
//!
//! ```text
//! manifest.json   format version, sentry version, creation time, provenance ("source"),
//!                 guest memory size, and the size and sha256 of each file below
//! memory.img      guest physical memory: file offset = guest physical address, page-aligned
//!                 (4096), sparse (zero pages are holes), length = guest memory size
//! kernel.state    the serialized sentry kernel; opaque bytes to this crate
//! ```
//!
//! [`ImageWriter`] writes an image (in a hidden temporary directory, renamed into place when
//! complete, optionally content-addressed); [`Image::open`] checks one and hands out the
//! verified kernel state and the open `memory.img`, which restore maps copy-on-write.
//! The image's digest is the SHA-256 of its manifest bytes, shown as `sha256:<hex>`: since the
//! manifest holds the digest of every other file, that one value names the whole image.
//!
//! # Integrity
//!
//! A truncated, corrupted or tampered image is refused with an [`ImageError`] naming the file
//! and the problem; never a panic, and never an `Image` that is only partly checked. Every
//! decoder is capped and sizes are compared before anything is read: the manifest at
//! [`MANIFEST_MAX_BYTES`], parsed strictly (unknown fields refused), `kernel.state` at
//! [`KERNEL_STATE_MAX_BYTES`] and hashed in full on every open. `memory.img` is too large to hash
//! on every restore, so a verification stamp records that a full hash succeeded for this exact
//! version of the file; the reasoning, and its limits, are in the [`verify`] module doc.
//! [`Image::verify_all`] always rehashes.
//!
//! What the format does not do: sign images (a digest pinned by the caller is the trust anchor),
//! or protect a mapped image from a privileged process that writes it behind the runtime's back:
//! a `MAP_PRIVATE` mapping shows a page written to the file until the mapping has its own copy,
//! so the image store must keep images read-only.
#![forbid(unsafe_code)]

mod digest;
mod error;
mod manifest;
mod memory;
mod reader;
pub mod registry;
pub mod verify;
mod writer;

#[cfg(test)]
mod test_util;

pub use digest::Digest;
pub use error::{ImageError, Result};
pub use manifest::{FileEntry, Files, Manifest};
pub use memory::data_regions;
pub use reader::Image;
pub use verify::MemoryCheck;
pub use writer::{ImageWriter, WrittenImage};

/// The image format version this crate reads and writes. Bumped for any change to the layout
/// or the manifest schema; a reader refuses every other version.
pub const FORMAT_VERSION: u32 = 1;

/// Guest page size: `memory.img` regions and its length are multiples of it.
pub const PAGE_SIZE: u64 = 4096;

/// Largest `manifest.json` a reader accepts; a real one is well under a kilobyte plus its
/// `source` map.
pub const MANIFEST_MAX_BYTES: u64 = 1 << 20;

/// Largest `kernel.state` a writer produces and a reader accepts. The kernel state is read
/// into memory whole, so this bounds what a hostile image can make a restore allocate.
pub const KERNEL_STATE_MAX_BYTES: u64 = 256 << 20;

/// File name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of guest memory inside an image directory.
pub const MEMORY_FILE: &str = "memory.img";
/// File name of the serialized kernel inside an image directory.
pub const KERNEL_STATE_FILE: &str = "kernel.state";
/// File name of the `memory.img` verification stamp (not part of the image: never copy it).
pub const STAMP_FILE: &str = "memory.img.verified";

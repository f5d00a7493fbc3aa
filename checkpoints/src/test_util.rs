//! Helpers shared by the crate's unit tests: sample images and ways to damage them.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Image, ImageWriter, MemoryCheck, WrittenImage, MANIFEST_FILE, PAGE_SIZE};

/// The sentry version sample images are written by and opened for.
pub(crate) const SENTRY: &str = "0.1.0";

/// Guest memory of sample images: 256 pages (1 MiB).
pub(crate) const GUEST_BYTES: u64 = 256 * PAGE_SIZE;

/// Sample guest memory: mostly zero, with data in a few pages (including the first and last).
pub(crate) fn sample_memory() -> Vec<u8> {
    let page = PAGE_SIZE as usize;
    let mut mem = vec![0u8; GUEST_BYTES as usize];
    for (n, p) in [0usize, 1, 7, 100, 255].into_iter().enumerate() {
        for (i, b) in mem[p * page..(p + 1) * page].iter_mut().enumerate() {
            *b = (i as u8) ^ (n as u8 + 1);
        }
    }
    mem
}

/// Sample kernel state: 4096 bytes of a recognisable pattern.
pub(crate) fn sample_kernel_state() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Writes a sample image to `dir` for sentry `sentry`.
pub(crate) fn build_for(dir: &Path, sentry: &str) -> WrittenImage {
    let mut w = ImageWriter::create(dir, sentry, GUEST_BYTES).unwrap();
    w.set_source("rootfs", "sha256:1234")
        .set_source("command", "node server.js");
    w.write_memory(&sample_memory()).unwrap();
    w.write_kernel_state(&sample_kernel_state()).unwrap();
    w.finish().unwrap()
}

/// Writes a sample image to `dir`.
pub(crate) fn build(dir: &Path) -> WrittenImage {
    build_for(dir, SENTRY)
}

/// Opens `dir` until a verification stamp is in place. The first open may not stamp if the
/// file changed within the file system clock's current tick (the racy case in `verify`).
pub(crate) fn open_stamped(dir: &Path) -> Image {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let image = Image::open(dir, SENTRY).unwrap();
        match image.memory_check() {
            MemoryCheck::Stamp | MemoryCheck::Hashed { stamped: true } => return image,
            MemoryCheck::Hashed { stamped: false } => {
                assert!(Instant::now() < deadline, "no stamp was ever written");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Image files are created read-only; tests that damage them make them writable first (a
/// no-op for root, needed otherwise).
pub(crate) fn make_writable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Inverts the byte at `offset` of `path`.
pub(crate) fn flip_byte(path: &Path, offset: u64) {
    make_writable(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, offset).unwrap();
    file.write_all_at(&[!b[0]], offset).unwrap();
}

/// Sets the length of `path`.
pub(crate) fn set_len(path: &Path, len: u64) {
    make_writable(path);
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Rewrites the manifest of the image in `dir` through its JSON value.
pub(crate) fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    make_writable(&path);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

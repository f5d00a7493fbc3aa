//! Opening images: the round trip, and one test per way an image can be damaged.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::test_util::*;
use crate::{ImageError, MemoryCheck, PAGE_SIZE, STAMP_FILE};

/// A fresh image in a fresh temporary directory; the directory is removed on drop.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        Self::for_sentry(SENTRY)
    }

    fn for_sentry(sentry: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("image");
        build_for(&dir, sentry);
        Self { _tmp: tmp, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn open(&self) -> Result<Image> {
        Image::open(&self.dir, SENTRY)
    }

    fn open_err(&self) -> String {
        self.open().unwrap_err().to_string()
    }
}

fn manifest_digest(dir: &Path) -> Digest {
    Digest::of(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap())
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    let written = build(&dir);
    assert_eq!(written.dir, dir);

    let image = Image::open(&dir, SENTRY).unwrap();
    assert_eq!(image.kernel_state(), sample_kernel_state());
    assert_eq!(image.guest_memory_bytes(), GUEST_BYTES);
    assert_eq!(image.dir(), dir);
    assert_eq!(*image.digest(), written.digest);
    assert_eq!(*image.digest(), manifest_digest(&dir));
    assert!(image.digest().to_string().starts_with("sha256:"));
    let m = image.manifest();
    assert_eq!(m.sentry_version, SENTRY);
    assert_eq!(m.source["command"], "node server.js");
    assert_eq!(m.source["rootfs"], "sha256:1234");
    assert_eq!(
        m.files.memory.sha256,
        crate::memory::page_digest_of(&sample_memory())
    );
    assert!(matches!(image.memory_check(), MemoryCheck::Hashed { .. }));

    let mut content = vec![0u8; GUEST_BYTES as usize];
    image.memory_file().read_exact_at(&mut content, 0).unwrap();
    assert_eq!(content, sample_memory());
    image.verify_all().unwrap();
}

#[test]
fn second_open_uses_the_stamp() {
    let f = Fixture::new();
    open_stamped(&f.dir);
    assert!(f.file(STAMP_FILE).is_file());
    let image = f.open().unwrap();
    assert_eq!(image.memory_check(), MemoryCheck::Stamp);
    assert_eq!(image.kernel_state(), sample_kernel_state());
}

#[test]
fn corrupt_memory_byte_after_stamp_is_caught() {
    let f = Fixture::new();
    open_stamped(&f.dir);
    assert_eq!(f.open().unwrap().memory_check(), MemoryCheck::Stamp);

    // One byte in a data page, and then one in a hole.
    for offset in [7 * PAGE_SIZE + 100, 50 * PAGE_SIZE] {
        flip_byte(&f.file(MEMORY_FILE), offset);
        let err = f.open().unwrap_err();
        let ImageError::DigestMismatch {
            file,
            expected,
            actual,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(*file, MEMORY_FILE);
        assert_eq!(
            err.to_string(),
            format!("memory.img: sha256 mismatch: manifest says {expected}, file has {actual}")
        );
        // Repairing the byte makes the image whole again (its new ctime forces a rehash).
        flip_byte(&f.file(MEMORY_FILE), offset);
        assert!(matches!(
            f.open().unwrap().memory_check(),
            MemoryCheck::Hashed { .. }
        ));
    }
}

#[test]
fn corrupt_memory_byte_without_stamp_is_caught() {
    let f = Fixture::new();
    flip_byte(&f.file(MEMORY_FILE), 0);
    assert!(f
        .open_err()
        .starts_with("memory.img: sha256 mismatch: manifest says "));
}

#[test]
fn a_stamp_does_not_vouch_for_a_different_manifest_digest() {
    let f = Fixture::new();
    open_stamped(&f.dir);
    // Swap the manifest's memory digest for another (valid-looking) one: the stamp records
    // the digest it verified, so it no longer applies and the rehash refuses.
    edit_manifest(&f.dir, |m| {
        m["files"]["memory.img"]["sha256"] = Digest::of(b"other").to_hex().into();
    });
    assert!(f.open_err().starts_with("memory.img: sha256 mismatch"));
}

#[test]
fn garbage_stamp_is_ignored() {
    let f = Fixture::new();
    std::fs::write(f.file(STAMP_FILE), b"{not a stamp").unwrap();
    assert!(matches!(
        f.open().unwrap().memory_check(),
        MemoryCheck::Hashed { .. }
    ));
}

#[test]
fn unwritable_stamp_means_rehash_every_time() {
    let f = Fixture::new();
    // A directory where the stamp would go makes the rename fail, as a read-only image
    // directory would (which cannot be simulated when the tests run as root).
    std::fs::create_dir(f.file(STAMP_FILE)).unwrap();
    for _ in 0..3 {
        let image = f.open().unwrap();
        assert_eq!(image.memory_check(), MemoryCheck::Hashed { stamped: false });
    }
    // No temporary stamp files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn truncated_memory_is_refused() {
    let f = Fixture::new();
    open_stamped(&f.dir);
    set_len(&f.file(MEMORY_FILE), GUEST_BYTES - PAGE_SIZE);
    assert_eq!(
        f.open_err(),
        format!(
            "memory.img: truncated: {} bytes, manifest says {GUEST_BYTES}",
            GUEST_BYTES - PAGE_SIZE
        )
    );
}

#[test]
fn extended_memory_is_refused() {
    let f = Fixture::new();
    set_len(&f.file(MEMORY_FILE), GUEST_BYTES + 1);
    assert_eq!(
        f.open_err(),
        format!(
            "memory.img: too long: {} bytes, manifest says {GUEST_BYTES}",
            GUEST_BYTES + 1
        )
    );
}

#[test]
fn truncated_kernel_state_is_refused() {
    let f = Fixture::new();
    set_len(&f.file(KERNEL_STATE_FILE), 100);
    assert_eq!(
        f.open_err(),
        "kernel.state: truncated: 100 bytes, manifest says 4096"
    );
}

#[test]
fn corrupt_kernel_state_is_refused() {
    let f = Fixture::new();
    open_stamped(&f.dir);
    flip_byte(&f.file(KERNEL_STATE_FILE), 4095);
    let err = f.open_err();
    assert!(
        err.starts_with("kernel.state: sha256 mismatch: manifest says "),
        "{err}"
    );
}

#[test]
fn other_format_version_is_refused() {
    let f = Fixture::new();
    edit_manifest(&f.dir, |m| m["format_version"] = 3.into());
    assert_eq!(
        f.open_err(),
        "manifest.json: format version 3, this runsc reads version 1"
    );
}

#[test]
fn other_sentry_version_is_refused() {
    let f = Fixture::for_sentry("0.2.0");
    assert_eq!(
        f.open_err(),
        "manifest.json: written by sentry 0.2.0, this is 0.1.0"
    );
    Image::open(&f.dir, "0.2.0").unwrap();
}

#[test]
fn unknown_manifest_field_is_refused() {
    let f = Fixture::new();
    edit_manifest(&f.dir, |m| m["restore_hint"] = "fast".into());
    let err = f.open_err();
    assert!(
        err.starts_with("manifest.json: not a valid manifest: unknown field `restore_hint`"),
        "{err}"
    );
}

#[test]
fn oversized_manifest_is_refused_before_parsing() {
    let f = Fixture::new();
    // Valid JSON padded with whitespace past the cap: refused by size, not by the parser.
    let path = f.file(MANIFEST_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.resize(MANIFEST_MAX_BYTES as usize + 1, b' ');
    make_writable(&path);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        f.open_err(),
        format!(
            "manifest.json: {} bytes is over the limit of {MANIFEST_MAX_BYTES} bytes",
            MANIFEST_MAX_BYTES + 1
        )
    );
}

#[test]
fn manifest_that_is_not_json_is_refused() {
    let f = Fixture::new();
    let path = f.file(MANIFEST_FILE);
    make_writable(&path);
    std::fs::write(&path, b"\x7fELF not a manifest").unwrap();
    let err = f.open().unwrap_err();
    assert!(matches!(err, ImageError::ManifestSyntax(_)), "{err}");
    assert!(err
        .to_string()
        .starts_with("manifest.json: not a valid manifest: "));

    // A manifest cut short (an interrupted copy) is not JSON either.
    let f = Fixture::new();
    let path = f.file(MANIFEST_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    set_len(&path, len / 2);
    assert!(matches!(
        f.open().unwrap_err(),
        ImageError::ManifestSyntax(_)
    ));
}

#[test]
fn missing_files_are_refused() {
    for name in [MANIFEST_FILE, MEMORY_FILE, KERNEL_STATE_FILE] {
        let f = Fixture::new();
        std::fs::remove_file(f.file(name)).unwrap();
        assert_eq!(f.open_err(), format!("{name}: missing from the image"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = Image::open(tmp.path().join("nonexistent"), SENTRY).unwrap_err();
    assert_eq!(err.to_string(), "manifest.json: missing from the image");
}

#[test]
fn manifest_sizes_that_do_not_match_the_files_are_refused() {
    let f = Fixture::new();
    edit_manifest(&f.dir, |m| m["files"]["kernel.state"]["size"] = 5000.into());
    assert_eq!(
        f.open_err(),
        "kernel.state: truncated: 4096 bytes, manifest says 5000"
    );

    let f = Fixture::new();
    edit_manifest(&f.dir, |m| m["files"]["kernel.state"]["size"] = 10.into());
    assert_eq!(
        f.open_err(),
        "kernel.state: too long: 4096 bytes, manifest says 10"
    );

    // Consistent within the manifest, but memory.img is shorter than it claims.
    let f = Fixture::new();
    open_stamped(&f.dir);
    let bigger = GUEST_BYTES + PAGE_SIZE;
    edit_manifest(&f.dir, |m| {
        m["guest_memory_bytes"] = bigger.into();
        m["files"]["memory.img"]["size"] = bigger.into();
    });
    assert_eq!(
        f.open_err(),
        format!("memory.img: truncated: {GUEST_BYTES} bytes, manifest says {bigger}")
    );

    // Inconsistent within the manifest.
    let f = Fixture::new();
    edit_manifest(&f.dir, |m| m["files"]["memory.img"]["size"] = 4096.into());
    let err = f.open_err();
    assert!(err.contains("is not guest_memory_bytes"), "{err}");
}

#[test]
fn files_that_are_not_regular_are_refused() {
    let f = Fixture::new();
    std::fs::remove_file(f.file(KERNEL_STATE_FILE)).unwrap();
    std::fs::create_dir(f.file(KERNEL_STATE_FILE)).unwrap();
    assert_eq!(f.open_err(), "kernel.state: not a regular file");

    // A character device (endless zeros) must not be read.
    let f = Fixture::new();
    std::fs::remove_file(f.file(MEMORY_FILE)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", f.file(MEMORY_FILE)).unwrap();
    assert_eq!(f.open_err(), "memory.img: not a regular file");
}

#[test]
fn a_memory_file_truncated_after_open_is_refused() {
    let f = Fixture::new();
    let image = f.open().unwrap();
    set_len(&f.file(MEMORY_FILE), PAGE_SIZE);
    let err = image.checked_memory_file().unwrap_err();
    assert!(matches!(err, ImageError::Truncated { .. }), "{err}");
}

#[test]
fn verify_all_rehashes_even_with_a_stamp() {
    let f = Fixture::new();
    let image = open_stamped(&f.dir);
    image.verify_all().unwrap();
    // Damage the file behind the open image: verify_all reads through the same descriptor.
    flip_byte(&f.file(MEMORY_FILE), 100 * PAGE_SIZE);
    let err = image.verify_all().unwrap_err();
    assert!(
        err.to_string().starts_with("memory.img: sha256 mismatch"),
        "{err}"
    );

    let f = Fixture::new();
    let image = f.open().unwrap();
    flip_byte(&f.file(KERNEL_STATE_FILE), 0);
    let err = image.verify_all().unwrap_err();
    assert!(
        err.to_string().starts_with("kernel.state: sha256 mismatch"),
        "{err}"
    );
}

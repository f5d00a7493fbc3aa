//! Writing images: placement, refusals, cleanup, content addressing and sparseness.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::test_util::*;
use crate::Image;

/// Names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn writer_with_state(w: &mut ImageWriter) {
    w.write_memory(&sample_memory()).unwrap();
    w.write_kernel_state(&sample_kernel_state()).unwrap();
}

#[test]
fn unfinished_image_is_hidden_and_has_no_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(tmp.path().join("image"), SENTRY, GUEST_BYTES).unwrap();
    writer_with_state(&mut w);
    let names = entries(tmp.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with(".image.tmp-"), "{names:?}");
    assert!(!tmp.path().join(&names[0]).join(MANIFEST_FILE).exists());
    assert!(!tmp.path().join("image").exists());

    // Dropping an unfinished writer (a failed checkpoint) leaves nothing behind.
    drop(w);
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn finish_without_kernel_state_is_refused_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(tmp.path().join("image"), SENTRY, GUEST_BYTES).unwrap();
    w.write_memory(&sample_memory()).unwrap();
    let err = w.finish().unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel.state: not written; call write_kernel_state before finish"
    );
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn refuses_an_existing_non_empty_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    build(&dir);
    let err = ImageWriter::create(&dir, SENTRY, GUEST_BYTES).unwrap_err();
    assert!(matches!(err, ImageError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("already exists and is not empty"));

    // A plain file in the way is refused too.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(ImageWriter::create(&file, SENTRY, GUEST_BYTES).is_err());

    // Something appearing at the destination while the image is written is caught by finish.
    let late = tmp.path().join("late");
    let mut w = ImageWriter::create(&late, SENTRY, GUEST_BYTES).unwrap();
    writer_with_state(&mut w);
    std::fs::create_dir(&late).unwrap();
    std::fs::write(late.join("other"), b"x").unwrap();
    assert!(matches!(w.finish().unwrap_err(), ImageError::Exists { .. }));
    assert_eq!(entries(&late), ["other"]);
    assert_eq!(entries(tmp.path()), ["file", "image", "late"]);
}

#[test]
fn fills_an_existing_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    build(&dir);
    Image::open(&dir, SENTRY).unwrap();
}

#[test]
fn create_replacing_replaces_whole_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    build(&dir);
    std::fs::write(dir.join("stray"), b"old").unwrap();

    let mut w = ImageWriter::create_replacing(&dir, SENTRY, 2 * PAGE_SIZE).unwrap();
    w.write_memory(&[7u8; 4096]).unwrap();
    w.write_kernel_state(b"new kernel").unwrap();
    w.finish().unwrap();

    assert_eq!(
        entries(tmp.path()),
        ["image"],
        "no temporary or old copies left"
    );
    assert_eq!(
        entries(&dir),
        [KERNEL_STATE_FILE, MANIFEST_FILE, MEMORY_FILE]
    );
    let image = Image::open(&dir, SENTRY).unwrap();
    assert_eq!(image.kernel_state(), b"new kernel");
    assert_eq!(image.guest_memory_bytes(), 2 * PAGE_SIZE);
}

#[test]
fn content_addressed_image_is_named_by_its_digest_and_deduplicated() {
    let store = tempfile::tempdir().unwrap();
    let write = || {
        let mut w =
            ImageWriter::create_content_addressed(store.path(), SENTRY, GUEST_BYTES).unwrap();
        w.set_created_unix_secs(1_700_000_000)
            .set_source("rootfs", "sha256:abcd");
        writer_with_state(&mut w);
        w.finish().unwrap()
    };
    let first = write();
    assert_eq!(
        first.dir,
        store
            .path()
            .join(format!("sha256-{}", first.digest.to_hex()))
    );
    let image = Image::open(&first.dir, SENTRY).unwrap();
    assert_eq!(*image.digest(), first.digest);
    assert_eq!(image.manifest().created_unix_secs, 1_700_000_000);

    // The same content again: same digest, same place, and no second copy or leftovers.
    let second = write();
    assert_eq!(second, first);
    assert_eq!(entries(store.path()).len(), 1);

    // Different content: a different image beside it.
    let mut w = ImageWriter::create_content_addressed(store.path(), SENTRY, GUEST_BYTES).unwrap();
    w.set_created_unix_secs(1_700_000_000);
    writer_with_state(&mut w);
    let third = w.finish().unwrap();
    assert_ne!(third.digest, first.digest);
    assert_eq!(entries(store.path()).len(), 2);
}

#[test]
fn image_files_are_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    build(&dir);
    for name in [MANIFEST_FILE, MEMORY_FILE, KERNEL_STATE_FILE] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "{name}");
    }
}

#[test]
fn memory_image_is_sparse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    let guest = 8 << 20; // 8 MiB, of which one page has data
    let mut w = ImageWriter::create(&dir, SENTRY, guest).unwrap();
    w.write_memory_regions([(4 << 20, &[0x5au8; 4096][..])])
        .unwrap();
    w.write_kernel_state(b"k").unwrap();
    w.finish().unwrap();

    let meta = std::fs::metadata(dir.join(MEMORY_FILE)).unwrap();
    assert_eq!(meta.size(), guest);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= 128 << 10,
        "{allocated} bytes allocated for one page of data"
    );

    let image = Image::open(&dir, SENTRY).unwrap();
    let mut two = [0u8; 2];
    std::os::unix::fs::FileExt::read_exact_at(
        image.checked_memory_file().unwrap(),
        &mut two,
        (4 << 20) + 4095,
    )
    .unwrap();
    assert_eq!(two, [0x5a, 0]);
}

#[test]
fn memory_regions_in_pieces_equal_one_region() {
    let tmp = tempfile::tempdir().unwrap();
    let mem = sample_memory();
    let page = PAGE_SIZE as usize;
    let dir = tmp.path().join("pieces");
    let mut w = ImageWriter::create(&dir, SENTRY, GUEST_BYTES).unwrap();
    w.write_memory_regions([
        (0, &mem[..2 * page]),
        (7 * PAGE_SIZE, &mem[7 * page..8 * page]),
        (100 * PAGE_SIZE, &mem[100 * page..101 * page]),
        (255 * PAGE_SIZE, &mem[255 * page..]),
    ])
    .unwrap();
    w.write_kernel_state(&sample_kernel_state()).unwrap();
    w.finish().unwrap();
    let pieces = Image::open(&dir, SENTRY).unwrap();

    let whole = Image::open(build(&tmp.path().join("whole")).dir, SENTRY).unwrap();
    assert_eq!(pieces.manifest().files, whole.manifest().files);
}

#[test]
fn refuses_writer_misuse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    let msg = |e: ImageError| e.to_string();
    assert!(msg(ImageWriter::create(&dir, SENTRY, 4097).unwrap_err()).contains("page"));
    assert!(msg(ImageWriter::create(&dir, SENTRY, 0).unwrap_err()).contains("page"));
    assert!(msg(ImageWriter::create(&dir, "", PAGE_SIZE).unwrap_err()).contains("sentry"));

    let mut w = ImageWriter::create(&dir, SENTRY, PAGE_SIZE).unwrap();
    w.write_kernel_state(b"k").unwrap();
    assert_eq!(
        msg(w.write_kernel_state(b"k").unwrap_err()),
        "kernel.state: written twice"
    );
    assert!(msg(w.write_memory(&[1u8; 8192]).unwrap_err()).contains("past the end"));

    // Over the cap: refused before anything is written. (A zeroed allocation is not touched,
    // so this costs no real memory.)
    let huge = vec![0u8; KERNEL_STATE_MAX_BYTES as usize + 1];
    let mut w2 = ImageWriter::create(tmp.path().join("huge"), SENTRY, PAGE_SIZE).unwrap();
    assert!(matches!(
        w2.write_kernel_state(&huge).unwrap_err(),
        ImageError::TooLarge { .. }
    ));
}

#[test]
fn finish_with_manifest_keeps_the_given_bytes_and_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let original = build(&tmp.path().join("a"));
    let manifest = std::fs::read(original.dir.join(MANIFEST_FILE)).unwrap();

    let mut w = ImageWriter::create(tmp.path().join("b"), SENTRY, GUEST_BYTES).unwrap();
    writer_with_state(&mut w);
    let copy = w.finish_with_manifest(&manifest).unwrap();
    assert_eq!(copy.digest, original.digest);
    assert_eq!(
        std::fs::read(copy.dir.join(MANIFEST_FILE)).unwrap(),
        manifest
    );
    assert_eq!(
        Image::open(&copy.dir, SENTRY).unwrap().digest(),
        &original.digest
    );
}

#[test]
fn finish_with_manifest_refuses_other_content_and_places_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let original = build(&tmp.path().join("a"));
    let manifest = std::fs::read(original.dir.join(MANIFEST_FILE)).unwrap();

    // One byte of memory differs from what the manifest records.
    let mut w = ImageWriter::create(tmp.path().join("b"), SENTRY, GUEST_BYTES).unwrap();
    let mut memory = sample_memory();
    memory[7 * PAGE_SIZE as usize + 3] ^= 0xff;
    w.write_memory(&memory).unwrap();
    w.write_kernel_state(&sample_kernel_state()).unwrap();
    let err = w.finish_with_manifest(&manifest).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::DigestMismatch {
                file: MEMORY_FILE,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(entries(tmp.path()), ["a"]);

    // A shorter kernel state is named as such.
    let mut w = ImageWriter::create(tmp.path().join("b"), SENTRY, GUEST_BYTES).unwrap();
    w.write_memory(&sample_memory()).unwrap();
    w.write_kernel_state(&sample_kernel_state()[..100]).unwrap();
    let err = w.finish_with_manifest(&manifest).unwrap_err();
    assert!(matches!(err, ImageError::Truncated { .. }), "{err}");

    // Another sentry's manifest, or another guest size, is refused before anything else.
    let mut w = ImageWriter::create(tmp.path().join("b"), "9.9.9", GUEST_BYTES).unwrap();
    writer_with_state(&mut w);
    let err = w.finish_with_manifest(&manifest).unwrap_err();
    assert!(matches!(err, ImageError::SentryVersion { .. }), "{err}");
    let mut w = ImageWriter::create(tmp.path().join("b"), SENTRY, 2 * GUEST_BYTES).unwrap();
    w.write_kernel_state(&sample_kernel_state()).unwrap();
    let err = w.finish_with_manifest(&manifest).unwrap_err();
    assert!(err.to_string().contains("guest_memory_bytes"), "{err}");
    assert_eq!(entries(tmp.path()), ["a"]);
}

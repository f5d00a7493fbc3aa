//! The test's two images, built without podman, umoci or a registry: a root file system
//! directory, `tar` + `gzip` for its one layer, `sha256sum` for the digests, and a hand-written
//! OCI image layout (`oci-layout`, `index.json`, manifest and config blobs) that
//! `skopeo copy oci:DIR:TAG docker://…` pushes as it is (the layer is already gzipped).
//!
//! Built layouts are cached under `target/cri-images/NAME/`, keyed by what went into them, so
//! reruns skip the build.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use nanovisor_tests::{guest_bin, target_dir, NODE};
use serde_json::json;

/// The tag inside each layout's index.json (`oci:DIR:TAG`).
pub const TAG: &str = "test";

/// Bump when the way images are built changes, so that cached layouts are rebuilt.
const FORMAT: u32 = 2;

/// An OCI image layout directory, ready for `skopeo copy oci:DIR:TAG`, with the root file
/// system it was made from beside it (`DIR/rootfs`: checkpoint images are built over it).
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// The host's Node.js (`/usr/bin/node` and the libraries `ldd` names) in a minimal root file
/// system: `/etc/passwd`, `/etc/group`, `/etc/hosts`, `/tmp`; `PATH=/usr/bin:/bin`, command
/// `node`.
pub fn node_image() -> Layout {
    let libs = ldd(Path::new(NODE));
    let mut key = format!("format {FORMAT}\n{}\n", file_key(Path::new(NODE)));
    for lib in &libs {
        key.push_str(&file_key(lib));
        key.push('\n');
    }
    cached("node", &key, |rootfs| {
        for dir in ["bin", "usr/bin", "etc", "root", "proc", "dev", "sys", "tmp"] {
            mkdir(&rootfs.join(dir));
        }
        set_mode(&rootfs.join("tmp"), 0o1777);
        copy_in(rootfs, Path::new(NODE));
        for lib in &libs {
            copy_in(rootfs, lib);
        }
        write(
            &rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        );
        write(&rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n");
        write(
            &rootfs.join("etc/hosts"),
            "127.0.0.1 localhost\n::1 localhost\n",
        );
        json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["node"],
            "WorkingDir": "/",
        })
    })
}

/// The pod's pause image: `tests/guest/pause.c` built static, as `/pause`.
pub fn pause_image() -> Layout {
    let pause = guest_bin("pause");
    let key = format!("format {FORMAT}\n{}\n", file_key(&pause));
    cached("pause", &key, |rootfs| {
        for dir in ["proc", "dev", "sys", "etc"] {
            mkdir(&rootfs.join(dir));
        }
        std::fs::copy(&pause, rootfs.join("pause")).expect("copying the pause binary");
        json!({ "Entrypoint": ["/pause"], "WorkingDir": "/" })
    })
}

/// `target/cri-images/NAME` if its `key` file says `key`; else built anew by `fill` (which
/// fills the root file system and returns the image config's `config` object).
fn cached(name: &str, key: &str, fill: impl FnOnce(&Path) -> serde_json::Value) -> Layout {
    let base = target_dir().join("cri-images");
    let dir = base.join(name);
    if std::fs::read_to_string(dir.join("key")).ok().as_deref() == Some(key) {
        return Layout { dir };
    }
    // Build beside the final place and rename, so that a concurrent run never sees half.
    let tmp = base.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let rootfs = tmp.join("rootfs");
    mkdir(&rootfs);
    let config = fill(&rootfs);
    build_layout(&tmp, &rootfs, config);
    write(&tmp.join("key"), key);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)
        .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), dir.display()));
    Layout { dir }
}

/// Writes an OCI image layout into `dir`: one gzipped layer holding `rootfs`, the config, the
/// manifest, and an index naming it [`TAG`].
fn build_layout(dir: &Path, rootfs: &Path, config: serde_json::Value) {
    let blobs = dir.join("blobs/sha256");
    mkdir(&blobs);
    let tar = dir.join("layer.tar");
    sh(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let diff_id = sha256(&tar);
    sh(Command::new("gzip").args(["-n", "-1", "-f"]).arg(&tar));
    let gz = dir.join("layer.tar.gz");
    let (layer_digest, layer_size) = (sha256(&gz), size(&gz));
    std::fs::rename(&gz, blobs.join(&layer_digest)).expect("moving the layer blob");

    let config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "tests/tests/cri/image.rs" }],
    });
    let (config_digest, config_size) = blob(&blobs, &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = blob(&blobs, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": TAG },
        }],
    });
    write(&dir.join("index.json"), &index.to_string());
    write(&dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#);
}

/// Stores `value` as a blob; its digest (hex) and size.
fn blob(blobs: &Path, value: &serde_json::Value) -> (String, u64) {
    let tmp = blobs.join("new");
    write(&tmp, &value.to_string());
    let (digest, size) = (sha256(&tmp), size(&tmp));
    std::fs::rename(&tmp, blobs.join(&digest)).expect("moving a blob");
    (digest, size)
}

/// The shared libraries `ldd` lists for `bin` (absolute paths).
fn ldd(bin: &Path) -> Vec<PathBuf> {
    let out = sh(Command::new("ldd").arg(bin));
    out.split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Copies host file `path` (following symlinks) to the same path under `rootfs`.
fn copy_in(rootfs: &Path, path: &Path) {
    let rel = path.strip_prefix("/").expect("an absolute path");
    let dest = rootfs.join(rel);
    mkdir(dest.parent().expect("a parent"));
    std::fs::copy(path, &dest)
        .unwrap_or_else(|e| panic!("copying {} into the image: {e}", path.display()));
}

/// What identifies a host file's content well enough: path, size and mtime.
fn file_key(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{} {} {mtime}", path.display(), meta.len())
}

fn sha256(path: &Path) -> String {
    let out = sh(Command::new("sha256sum").arg(path));
    let digest = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(digest.len(), 64, "sha256sum {}: {out}", path.display());
    digest
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Runs `cmd`; its stdout, or a panic with its stderr.
pub fn sh(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

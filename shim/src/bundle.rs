//! The OCI bundle containerd prepares for a task: its rootfs mounts, its config.json (read
//! for annotations, amended with the default ACL), and a record of how the shim ran runsc for
//! it, so that `containerd-shim-nanovisor-v1 delete` can clean up after a shim that died.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;
use serde::{Deserialize, Serialize};

/// Annotations a pod can carry for its ACL policy (runsc reads them from config.json).
pub const ACL_ANNOTATIONS: [&str; 2] = ["dev.nanovisor.acl", "dev.nanovisor.acl-file"];
const ACL_FILE_ANNOTATION: &str = "dev.nanovisor.acl-file";

/// The CRI annotation naming a pod's sandbox, by which a pod's containers share one shim.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// The longest config.json read.
const MAX_CONFIG: u64 = 4 << 20;

/// The shim's record in a bundle.
const RECORD: &str = "nanovisor-shim.json";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("mounting the rootfs at {target}: {message}")]
    Mount { target: PathBuf, message: String },
}

/// How runsc was run for a bundle.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub runsc: PathBuf,
    pub root: PathBuf,
}

pub fn write_record(bundle: &Path, record: &Record) -> Result<(), BundleError> {
    let path = bundle.join(RECORD);
    let text = serde_json::to_vec(record).map_err(|e| BundleError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(|source| BundleError::Io { path, source })
}

pub fn read_record(bundle: &Path) -> Option<Record> {
    let text = std::fs::read(bundle.join(RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The bundle's config.json as JSON (kept whole, so amending it loses nothing).
pub fn read_config(bundle: &Path) -> Result<serde_json::Value, BundleError> {
    use std::io::Read as _;
    let path = bundle.join("config.json");
    let io = |source| BundleError::Io {
        path: path.clone(),
        source,
    };
    let mut text = Vec::new();
    std::fs::File::open(&path)
        .map_err(io)?
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(BundleError::Invalid {
            path,
            message: format!("larger than {MAX_CONFIG} bytes"),
        });
    }
    serde_json::from_slice(&text).map_err(|e| BundleError::Invalid {
        path,
        message: e.to_string(),
    })
}

pub fn annotation<'a>(config: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    config.get("annotations")?.get(key)?.as_str()
}

/// Whether the bundle starts a sandbox of its own: a pod's sandbox container, or a
/// container outside any pod. A pod's other containers join their sandbox.
pub fn owns_sandbox(config: &serde_json::Value) -> bool {
    matches!(
        annotation(config, CONTAINER_TYPE_ANNOTATION),
        None | Some("sandbox")
    )
}

/// Gives a sandbox without an ACL annotation the default policy file, in config.json.
pub fn add_default_acl(bundle: &Path, acl_file: &Path) -> Result<bool, BundleError> {
    let mut config = read_config(bundle)?;
    if !owns_sandbox(&config)
        || ACL_ANNOTATIONS
            .iter()
            .any(|k| annotation(&config, k).is_some())
    {
        return Ok(false);
    }
    let path = bundle.join("config.json");
    let invalid = |message: &str| BundleError::Invalid {
        path: path.clone(),
        message: message.to_string(),
    };
    let object = config
        .as_object_mut()
        .ok_or_else(|| invalid("not a JSON object"))?;
    let annotations = object
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    let annotations = annotations
        .as_object_mut()
        .ok_or_else(|| invalid("annotations is not an object"))?;
    annotations.insert(
        ACL_FILE_ANNOTATION.to_string(),
        serde_json::Value::String(acl_file.to_string_lossy().into_owned()),
    );
    let text = serde_json::to_vec(&config).map_err(|e| invalid(&e.to_string()))?;
    std::fs::write(&path, text).map_err(|source| BundleError::Io { path, source })?;
    Ok(true)
}

/// Mounts the task's rootfs (containerd's snapshot, usually one overlay) at `bundle/rootfs`.
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<bool, BundleError> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|source| BundleError::Io {
        path: target.clone(),
        source,
    })?;
    for m in mounts {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target).map_err(
            |e| BundleError::Mount {
                target: target.clone(),
                message: format!("{} {}: {e}", m.type_, m.source),
            },
        )?;
    }
    Ok(true)
}

/// Unmounts whatever is mounted at `bundle/rootfs` (several layers, if stacked).
pub fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    for _ in 0..16 {
        if nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), config).expect("write");
        dir
    }

    #[test]
    fn default_acl_goes_to_sandboxes_without_one() {
        let acl = Path::new("/etc/nanovisor/acl.yaml");
        let b = bundle_with(r#"{"ociVersion":"1.0.2","process":{"args":["x"]}}"#);
        assert!(add_default_acl(b.path(), acl).expect("amended"));
        let c = read_config(b.path()).expect("read");
        assert_eq!(
            annotation(&c, "dev.nanovisor.acl-file"),
            Some("/etc/nanovisor/acl.yaml")
        );
        assert_eq!(c["process"]["args"][0], "x", "the rest is kept");

        let own = bundle_with(r#"{"annotations":{"dev.nanovisor.acl":"egress: {}"}}"#);
        assert!(!add_default_acl(own.path(), acl).expect("left"));
        let member =
            bundle_with(r#"{"annotations":{"io.kubernetes.cri.container-type":"container"}}"#);
        assert!(!add_default_acl(member.path(), acl).expect("left"));
    }

    #[test]
    fn bad_configs_are_named() {
        let b = bundle_with("{not json");
        let e = read_config(b.path()).expect_err("refused");
        assert!(e.to_string().contains("config.json"), "{e}");
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Record {
            runsc: "/usr/local/bin/runsc".into(),
            root: "/run/nanovisor/k8s.io".into(),
        };
        write_record(dir.path(), &r).expect("write");
        assert_eq!(read_record(dir.path()), Some(r));
    }
}

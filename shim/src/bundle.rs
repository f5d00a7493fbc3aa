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

/// A pod annotation naming a checkpoint image (a directory under the shim's
/// `checkpoint_dir`): the pod is restored from it instead of booted.
pub const CHECKPOINT_ANNOTATION: &str = "dev.nanovisor.checkpoint-image";

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

/// The CRI's role for the bundle: `sandbox`, `container`, or none outside a pod.
pub fn container_type(config: &serde_json::Value) -> Option<&str> {
    annotation(config, CONTAINER_TYPE_ANNOTATION)
}

/// The checkpoint image a bundle's annotation names, under `dir`. Names are single path
/// components, so an annotation cannot reach outside the directory the operator set up.
pub fn checkpoint_image(config: &serde_json::Value, dir: &Path) -> Result<Option<PathBuf>, String> {
    let Some(name) = annotation(config, CHECKPOINT_ANNOTATION) else {
        return Ok(None);
    };
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(format!(
            "annotation {CHECKPOINT_ANNOTATION}={name:?}: want an image name ([A-Za-z0-9_.-])"
        ));
    }
    let image = dir.join(name);
    if !image.join("manifest.json").is_file() {
        return Err(format!(
            "annotation {CHECKPOINT_ANNOTATION}={name:?}: no checkpoint image at {} \
             (pull it there with `runsc image pull REF {}`)",
            image.display(),
            image.display()
        ));
    }
    Ok(Some(image))
}

/// The network namespace path of the bundle's spec (empty: none given).
pub fn network_namespace(config: &serde_json::Value) -> String {
    config
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
        .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))
        .and_then(|n| n.get("path").and_then(|p| p.as_str()))
        .unwrap_or_default()
        .to_string()
}

/// Makes a pod's container a sandbox of its own (for a restore): runsc would otherwise
/// have it join the pod's sandbox container, which is only a stand-in.
pub fn detach_from_pod(bundle: &Path) -> Result<(), BundleError> {
    let mut config = read_config(bundle)?;
    let path = bundle.join("config.json");
    if let Some(a) = config
        .get_mut("annotations")
        .and_then(|a| a.as_object_mut())
    {
        a.remove(CONTAINER_TYPE_ANNOTATION);
        a.remove(SANDBOX_ID_ANNOTATION);
    }
    let text = serde_json::to_vec(&config).map_err(|e| BundleError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(|source| BundleError::Io { path, source })
}

/// The pod's memory limit (the sum of its containers' limits, which kubelet passes in
/// `PodSandboxConfig.linux.resources`), as containerd 1.6 gives it to the sandbox container:
/// an annotation only, its spec has no limit.
const SANDBOX_MEMORY_ANNOTATION: &str = "io.kubernetes.cri.sandbox-memory";

/// Gives a pod's sandbox container the pod's memory limit as its own (`linux.resources.
/// memory.limit`), unless its spec has one: runsc sizes the guest of the whole pod from the
/// sandbox container's limit, so that a pod filling its memory meets the guest's OOM killer
/// (and its container ends `OOMKilled`) rather than the default guest size. Whether it did.
pub fn size_pod_memory(bundle: &Path) -> Result<bool, BundleError> {
    let mut config = read_config(bundle)?;
    if container_type(&config) != Some("sandbox") {
        return Ok(false);
    }
    let Some(limit) = annotation(&config, SANDBOX_MEMORY_ANNOTATION)
        .and_then(|m| m.parse::<i64>().ok())
        .filter(|m| *m > 0)
    else {
        return Ok(false);
    };
    let has_limit = config
        .pointer("/linux/resources/memory/limit")
        .and_then(|l| l.as_i64())
        .is_some_and(|l| l > 0);
    if has_limit {
        return Ok(false);
    }
    let path = bundle.join("config.json");
    let invalid = |message: &str| BundleError::Invalid {
        path: path.clone(),
        message: message.to_string(),
    };
    let mut memory = config
        .as_object_mut()
        .ok_or_else(|| invalid("not a JSON object"))?;
    for key in ["linux", "resources", "memory"] {
        memory = memory
            .entry(key)
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or_else(|| invalid(&format!("{key} is not an object")))?;
    }
    memory.insert("limit".into(), serde_json::Value::from(limit));
    let text = serde_json::to_vec(&config).map_err(|e| invalid(&e.to_string()))?;
    std::fs::write(&path, text).map_err(|source| BundleError::Io { path, source })?;
    Ok(true)
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
    fn a_pods_memory_sizes_its_sandbox_container() {
        let sandbox = |extra: &str| {
            bundle_with(&format!(
                r#"{{"annotations":{{"io.kubernetes.cri.container-type":"sandbox",
                "io.kubernetes.cri.sandbox-memory":"268435456"}}{extra}}}"#
            ))
        };
        let b = sandbox(r#","linux":{"cgroupsPath":"/pod"}"#);
        assert!(size_pod_memory(b.path()).expect("amended"));
        let c = read_config(b.path()).expect("read");
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 256 << 20);
        assert_eq!(c["linux"]["cgroupsPath"], "/pod", "the rest is kept");

        // A limit of its own stays; so do containers, pods without a limit and non-pods.
        let own = sandbox(r#","linux":{"resources":{"memory":{"limit":1073741824}}}"#);
        assert!(!size_pod_memory(own.path()).expect("left"));
        let c = read_config(own.path()).expect("read");
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 1 << 30);
        for config in [
            r#"{"annotations":{"io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.sandbox-memory":"268435456"}}"#,
            r#"{"annotations":{"io.kubernetes.cri.container-type":"sandbox",
                "io.kubernetes.cri.sandbox-memory":"0"}}"#,
            r#"{"process":{"args":["x"]}}"#,
        ] {
            let b = bundle_with(config);
            assert!(!size_pod_memory(b.path()).expect("left"), "{config}");
        }
    }

    #[test]
    fn checkpoint_names_stay_in_their_directory() {
        let images = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(images.path().join("web")).expect("mkdir");
        std::fs::write(images.path().join("web/manifest.json"), "{}").expect("write");
        let with = |name: &str| serde_json::json!({"annotations": {CHECKPOINT_ANNOTATION: name}});
        assert_eq!(
            checkpoint_image(&with("web"), images.path()),
            Ok(Some(images.path().join("web")))
        );
        assert_eq!(
            checkpoint_image(&serde_json::json!({}), images.path()),
            Ok(None)
        );
        for bad in ["../web", "/etc", "..", "", "a/b"] {
            assert!(
                checkpoint_image(&with(bad), images.path()).is_err(),
                "{bad}"
            );
        }
        let e = checkpoint_image(&with("missing"), images.path()).expect_err("no image");
        assert!(e.contains("runsc image pull"), "{e}");
    }

    #[test]
    fn network_namespace_and_detaching() {
        let b = bundle_with(
            r#"{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]},
                "annotations":{"io.kubernetes.cri.container-type":"container",
                               "io.kubernetes.cri.sandbox-id":"abc","x":"y"}}"#,
        );
        let c = read_config(b.path()).expect("read");
        assert_eq!(network_namespace(&c), "/var/run/netns/cni-1");
        assert_eq!(container_type(&c), Some("container"));
        detach_from_pod(b.path()).expect("detached");
        let c = read_config(b.path()).expect("read");
        assert_eq!(container_type(&c), None);
        assert_eq!(annotation(&c, "x"), Some("y"));
        assert_eq!(network_namespace(&serde_json::json!({})), "");
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

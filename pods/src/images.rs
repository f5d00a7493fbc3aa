//! Container images and root file systems through containerd's own API (the images CRI's
//! PullImage put in the `k8s.io` namespace): the image record, its manifest and config from
//! the content store, and a writable snapshot of its layers for each container.
//!
//! A container's snapshot is `Prepare`d with the image's chain id as parent and the label
//! `containerd.io/gc.root`, so containerd's garbage collector keeps it (and, through it, the
//! layers) until we `Remove` it.

use std::collections::HashMap;

use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    content_client::ContentClient, images_client::ImagesClient, GetImageRequest, ReadContentRequest,
};
use containerd_client::types::Mount;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, PullImageRequest};
use serde_json::Value;
use sha2::Digest as _;
use tonic::transport::Channel;
use tonic::Request;

/// The largest manifest, index or image config read.
const MAX_BLOB: usize = 4 << 20;
/// The label that keeps a snapshot from containerd's garbage collector.
const GC_ROOT: &str = "containerd.io/gc.root";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {0:?} not found in containerd (pull it first)")]
    NotFound(String),
    #[error("containerd {what}: {status}")]
    Containerd { what: String, status: String },
    #[error("image {image:?}: {message}")]
    Bad { image: String, message: String },
}

impl ImageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ImageError::NotFound(_))
    }
}

/// What a container needs of its image.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    /// The name the record was found under.
    pub name: String,
    /// The config's digest: the image id CRI reports.
    pub id: String,
    pub chain_id: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// containerd's image, content and snapshot services in one namespace.
#[derive(Clone)]
pub struct Images {
    channel: Channel,
    namespace: String,
    snapshotter: String,
}

fn containerd(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> ImageError {
    let what = what.into();
    move |s| ImageError::Containerd {
        what,
        status: format!("{:?}: {}", s.code(), s.message()),
    }
}

impl Images {
    pub fn new(channel: Channel, namespace: String, snapshotter: String) -> Images {
        Images {
            channel,
            namespace,
            snapshotter,
        }
    }

    fn request<T>(&self, message: T) -> Result<Request<T>, ImageError> {
        let mut req = Request::new(message);
        let ns = self.namespace.parse().map_err(|_| ImageError::Containerd {
            what: "namespace".into(),
            status: format!("{:?} is not a valid header value", self.namespace),
        })?;
        req.metadata_mut().insert("containerd-namespace", ns);
        Ok(req)
    }

    /// The image `reference` (a name as pulled, a normalized name, or an image id).
    pub async fn resolve(&self, reference: &str) -> Result<ImageInfo, ImageError> {
        let mut client = ImagesClient::new(self.channel.clone());
        let mut found = None;
        for name in candidates(reference) {
            match client
                .get(self.request(GetImageRequest { name: name.clone() })?)
                .await
            {
                Ok(r) => {
                    found = r.into_inner().image;
                    if found.is_some() {
                        break;
                    }
                }
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(containerd(format!("Images.Get {name}"))(s)),
            }
        }
        let image = found.ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let bad = |message: String| ImageError::Bad {
            image: reference.to_string(),
            message,
        };
        let target = image.target.ok_or_else(|| bad("no target".into()))?;
        let mut digest = target.digest;
        // An index names a manifest per platform: take ours.
        let mut manifest = self.read_json(&digest).await?;
        for _ in 0..4 {
            let Some(list) = manifest.get("manifests").and_then(Value::as_array) else {
                break;
            };
            digest =
                pick_platform(list).ok_or_else(|| bad("no manifest for linux/amd64".into()))?;
            manifest = self.read_json(&digest).await?;
        }
        let config_digest = manifest
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("manifest {digest} names no config")))?
            .to_string();
        let config = self.read_json(&config_digest).await?;
        let diff_ids: Vec<String> = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        let chain_id = chain_id(&diff_ids).ok_or_else(|| bad("no layers".into()))?;
        Ok(image_info(image.name, config_digest, chain_id, &config))
    }

    /// The image `reference`, pulled first if containerd does not have it. For the images the
    /// runtime itself needs (the sandbox image, a pool's image): kubelet pulls a pod's
    /// container images, never a runtime's own. containerd's own CRI ImageService, on the same
    /// socket, pulls and unpacks it into this namespace (containerd 1.6 has no Transfer API).
    pub async fn resolve_or_pull(&self, reference: &str) -> Result<ImageInfo, ImageError> {
        match self.resolve(reference).await {
            Err(ImageError::NotFound(_)) => {}
            other => return other,
        }
        tracing::info!(image = reference, "pulling through containerd's CRI");
        let mut client = ImageServiceClient::new(self.channel.clone());
        client
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: reference.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(containerd(format!("CRI PullImage {reference}")))?;
        self.resolve(reference).await
    }

    async fn read_json(&self, digest: &str) -> Result<Value, ImageError> {
        let mut client = ContentClient::new(self.channel.clone());
        let mut stream = client
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            })?)
            .await
            .map_err(containerd(format!("Content.Read {digest}")))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(containerd(format!("Content.Read {digest}")))?
        {
            data.extend_from_slice(&chunk.data);
            if data.len() > MAX_BLOB {
                return Err(ImageError::Bad {
                    image: digest.into(),
                    message: format!("larger than {MAX_BLOB} bytes"),
                });
            }
        }
        serde_json::from_slice(&data).map_err(|e| ImageError::Bad {
            image: digest.into(),
            message: format!("not JSON: {e}"),
        })
    }

    /// A writable snapshot `key` over `parent` (a chain id); its mounts.
    pub async fn prepare(&self, key: &str, parent: &str) -> Result<Vec<Mount>, ImageError> {
        let mut client = SnapshotsClient::new(self.channel.clone());
        let labels = HashMap::from([(GC_ROOT.to_string(), crate::status::rfc3339_now())]);
        let r = client
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
                parent: parent.to_string(),
                labels,
            })?)
            .await
            .map_err(containerd(format!(
                "Snapshots.Prepare {key} (parent {parent})"
            )))?;
        Ok(r.into_inner().mounts)
    }

    /// Removes snapshot `key`; one that is gone already is fine.
    pub async fn remove(&self, key: &str) -> Result<(), ImageError> {
        let mut client = SnapshotsClient::new(self.channel.clone());
        match client
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            })?)
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(containerd(format!("Snapshots.Remove {key}"))(s)),
        }
    }
}

fn strings(config: &Value, key: &str) -> Vec<String> {
    config
        .pointer(&format!("/config/{key}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn image_info(name: String, id: String, chain_id: String, config: &Value) -> ImageInfo {
    let text = |key: &str| {
        config
            .pointer(&format!("/config/{key}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    ImageInfo {
        name,
        id,
        chain_id,
        env: strings(config, "Env"),
        entrypoint: strings(config, "Entrypoint"),
        cmd: strings(config, "Cmd"),
        working_dir: text("WorkingDir"),
        user: text("User"),
    }
}

/// The names to look an image up by: as given, then as Docker normalizes it
/// (`node` → `docker.io/library/node:latest`).
pub fn candidates(reference: &str) -> Vec<String> {
    let mut out = vec![reference.to_string()];
    if reference.starts_with("sha256:") {
        return out;
    }
    let (first, _) = reference.split_once('/').unwrap_or(("", reference));
    let has_domain = first.contains('.') || first.contains(':') || first == "localhost";
    let mut full = match (has_domain, reference.contains('/')) {
        (true, _) => reference.to_string(),
        (false, true) => format!("docker.io/{reference}"),
        (false, false) => format!("docker.io/library/{reference}"),
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !full.contains('@') {
        full.push_str(":latest");
    }
    if full != reference {
        out.push(full);
    }
    out
}

/// The manifest for linux/amd64 in an index's `manifests`.
fn pick_platform(list: &[Value]) -> Option<String> {
    let ours = |m: &&Value| {
        let p = m.get("platform");
        let field = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
        field("os").is_none_or(|o| o == "linux")
            && field("architecture").is_none_or(|a| {
                a == std::env::consts::ARCH
                    || (a == "amd64" && std::env::consts::ARCH == "x86_64")
                    || (a == "arm64" && std::env::consts::ARCH == "aarch64")
            })
    };
    list.iter()
        .find(ours)
        .and_then(|m| m.get("digest")?.as_str().map(str::to_string))
}

/// The OCI chain id of a layer stack (image-spec config.md: ChainID(L0) = DiffID(L0),
/// ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))): the name of the
/// snapshot holding the unpacked layers.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let (first, rest) = diff_ids.split_first()?;
    Some(rest.iter().fold(first.clone(), |chain, diff| {
        let digest = sha2::Sha256::digest(format!("{chain} {diff}").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids() {
        assert_eq!(chain_id(&[]), None);
        let a = "sha256:aa".to_string();
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        // sha256("sha256:aa sha256:bb")
        let two = chain_id(&[a, "sha256:bb".into()]).expect("two layers");
        let expect = sha2::Sha256::digest(b"sha256:aa sha256:bb");
        let hex: String = expect.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(two, format!("sha256:{hex}"));
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            candidates("node"),
            ["node", "docker.io/library/node:latest"]
        );
        assert_eq!(candidates("me/app:1"), ["me/app:1", "docker.io/me/app:1"]);
        assert_eq!(
            candidates("127.0.0.1:5000/node:test"),
            ["127.0.0.1:5000/node:test"]
        );
        assert_eq!(
            candidates("localhost/x"),
            ["localhost/x", "localhost/x:latest"]
        );
        assert_eq!(candidates("sha256:ab"), ["sha256:ab"]);
    }

    #[test]
    fn image_configs() {
        let config = serde_json::json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["node"],
            "WorkingDir": "/app", "User": "1000"}, "rootfs": {"diff_ids": []}});
        let i = image_info("n".into(), "sha256:c".into(), "sha256:x".into(), &config);
        assert_eq!(
            (i.cmd.as_slice(), i.working_dir.as_str(), i.user.as_str()),
            (&["node".to_string()][..], "/app", "1000")
        );
        assert!(i.entrypoint.is_empty());
        let list = [
            serde_json::json!({"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "s390x"}}),
            serde_json::json!({"digest": "sha256:ours", "platform": {"os": "linux", "architecture": "amd64"}}),
        ];
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(pick_platform(&list), Some("sha256:ours".into()));
        }
    }
}

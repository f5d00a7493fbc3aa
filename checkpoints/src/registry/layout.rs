//! The OCI manifest of a checkpoint artifact: built for a push, checked on a pull.
//!
//! Both directions go through [`Layout`], so what push writes and what pull accepts are one
//! definition (the table in the [module doc](super)). Checking is strict: this is the only
//! layout this version writes, so anything else is either another tool's artifact or damage,
//! and is refused with the unexpected value named.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};

use super::codec::zstd_bound;
use super::error::{RegistryError, Result};
use super::{
    time, ANNOTATION_CREATED, ANNOTATION_DIGEST, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE,
    KERNEL_STATE_MEDIA_TYPE, MEMORY_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
};
use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::MANIFEST_MAX_BYTES;

/// Which blob of the artifact a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The config blob: manifest.json.
    Config,
    /// The `memory.img` layer.
    Memory,
    /// The `kernel.state` layer.
    KernelState,
}

impl Role {
    /// The media type this blob must have.
    pub(crate) fn media_type(self) -> &'static str {
        match self {
            Role::Config => CONFIG_MEDIA_TYPE,
            Role::Memory => MEMORY_MEDIA_TYPE,
            Role::KernelState => KERNEL_STATE_MEDIA_TYPE,
        }
    }

    /// How messages name it.
    fn label(self) -> &'static str {
        match self {
            Role::Config => "config blob (manifest.json)",
            Role::Memory => "memory.img layer",
            Role::KernelState => "kernel.state layer",
        }
    }
}

/// One blob as the OCI manifest describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) role: Role,
    /// Registry digest: sha256 of the bytes as stored (compressed, for layers).
    pub(crate) digest: Digest,
    /// Size as stored.
    pub(crate) size: u64,
}

impl Blob {
    /// `memory.img layer sha256:…`, for messages.
    pub(crate) fn name(&self) -> String {
        format!("{} {}", self.role.label(), self.digest)
    }

    /// The descriptor as oci-client takes it.
    pub(crate) fn descriptor(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: self.role.media_type().to_owned(),
            digest: self.digest.to_string(),
            // Sizes come from files or from a checked descriptor; both fit an i64.
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        }
    }
}

/// The three blobs of a checkpoint artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) config: Blob,
    pub(crate) memory: Blob,
    pub(crate) kernel_state: Blob,
}

impl Layout {
    /// The OCI manifest to push, for an image created at `created_unix_secs`. Its bytes are a
    /// pure function of the image, so one image always gets one manifest digest.
    pub(crate) fn manifest_bytes(&self, created_unix_secs: u64) -> Result<Vec<u8>> {
        // Encoding plain strings and numbers cannot fail; the error is mapped, not unwrapped.
        let annotations = BTreeMap::from([
            (
                ANNOTATION_CREATED.to_owned(),
                time::rfc3339_utc(created_unix_secs),
            ),
            // The config digest is the image digest (the config is manifest.json).
            (ANNOTATION_DIGEST.to_owned(), self.config.digest.to_string()),
        ]);
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: Some(ARTIFACT_TYPE.to_owned()),
            config: self.config.descriptor(),
            layers: vec![self.memory.descriptor(), self.kernel_state.descriptor()],
            subject: None,
            annotations: Some(annotations),
        };
        serde_json::to_vec(&manifest)
            .map_err(|e| RegistryError::io("encoding the OCI manifest", e.into()))
    }

    /// Checks a pulled OCI manifest of `reference` and returns its blobs. Sizes are checked
    /// against absolute caps here and against manifest.json in [`check_sizes`](Self::check_sizes).
    pub(crate) fn parse(reference: &str, bytes: &[u8]) -> Result<Self> {
        let refuse = |problem: String| RegistryError::Layout {
            reference: reference.to_owned(),
            problem,
        };
        let manifest: OciImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| refuse(format!("not an OCI image manifest: {e}")))?;
        if manifest.schema_version != 2 {
            return Err(refuse(format!(
                "schemaVersion {}, expected 2",
                manifest.schema_version
            )));
        }
        expect_field(
            "mediaType",
            manifest.media_type.as_deref(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .map_err(refuse)?;
        expect_field(
            "artifactType",
            manifest.artifact_type.as_deref(),
            ARTIFACT_TYPE,
        )
        .map_err(refuse)?;
        let [memory, kernel_state] = manifest.layers.as_slice() else {
            return Err(refuse(format!(
                "{} layers, expected 2 (memory.img, kernel.state)",
                manifest.layers.len()
            )));
        };
        let layout = Self {
            config: blob(Role::Config, &manifest.config).map_err(refuse)?,
            memory: blob(Role::Memory, memory).map_err(refuse)?,
            kernel_state: blob(Role::KernelState, kernel_state).map_err(refuse)?,
        };
        if layout.config.size == 0 || layout.config.size > MANIFEST_MAX_BYTES {
            return Err(refuse(format!(
                "config blob of {} bytes (manifest.json must be 1 to {MANIFEST_MAX_BYTES} bytes)",
                layout.config.size
            )));
        }
        if let Some(claimed) = manifest
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_DIGEST))
        {
            if *claimed != layout.config.digest.to_string() {
                return Err(refuse(format!(
                    "annotation {ANNOTATION_DIGEST} is {claimed:?} but the config blob is {}",
                    layout.config.digest
                )));
            }
        }
        Ok(layout)
    }

    /// Checks the stored (compressed) layer sizes against what manifest.json says they hold:
    /// more than zstd's worst case for that much data means padding, not content, and is
    /// refused before anything is downloaded.
    pub(crate) fn check_sizes(&self, reference: &str, manifest: &Manifest) -> Result<()> {
        for (blob, content) in [
            (&self.memory, manifest.guest_memory_bytes),
            (&self.kernel_state, manifest.files.kernel_state.size),
        ] {
            let limit = zstd_bound(content);
            if blob.size > limit {
                return Err(RegistryError::Layout {
                    reference: reference.to_owned(),
                    problem: format!(
                        "{} is {} bytes, more than zstd needs for the {content} bytes manifest.json declares (at most {limit})",
                        blob.name(),
                        blob.size
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Checks one descriptor: media type, digest algorithm, size, no external URLs.
fn blob(role: Role, d: &OciDescriptor) -> Result<Blob, String> {
    if d.media_type != role.media_type() {
        return Err(format!(
            "{} has media type {:?}, expected {:?}",
            role.label(),
            d.media_type,
            role.media_type()
        ));
    }
    // A descriptor with URLs asks the client to fetch the blob from elsewhere.
    if d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(format!("{} has external urls", role.label()));
    }
    let digest = d
        .digest
        .strip_prefix("sha256:")
        .and_then(Digest::from_hex)
        .ok_or_else(|| {
            format!(
                "{} digest {:?} is not sha256:<64 lowercase hex digits>",
                role.label(),
                d.digest
            )
        })?;
    let size = u64::try_from(d.size)
        .map_err(|_| format!("{} has negative size {}", role.label(), d.size))?;
    Ok(Blob { role, digest, size })
}

/// Checks a string field of the manifest.
fn expect_field(name: &str, found: Option<&str>, expected: &str) -> Result<(), String> {
    match found {
        Some(v) if v == expected => Ok(()),
        Some(v) => Err(format!("{name} {v:?}, expected {expected:?}")),
        None => Err(format!("no {name}, expected {expected:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileEntry, Files};
    use crate::{FORMAT_VERSION, PAGE_SIZE};

    fn sample() -> Layout {
        Layout {
            config: Blob {
                role: Role::Config,
                digest: Digest::of(b"manifest"),
                size: 400,
            },
            memory: Blob {
                role: Role::Memory,
                digest: Digest::of(b"memory"),
                size: 5000,
            },
            kernel_state: Blob {
                role: Role::KernelState,
                digest: Digest::of(b"kernel"),
                size: 300,
            },
        }
    }

    fn json(layout: &Layout) -> serde_json::Value {
        serde_json::from_slice(&layout.manifest_bytes(1_700_000_000).unwrap()).unwrap()
    }

    fn parse(v: &serde_json::Value) -> Result<Layout> {
        Layout::parse("r/x:1", &serde_json::to_vec(v).unwrap())
    }

    fn problem(v: &serde_json::Value) -> String {
        match parse(v).unwrap_err() {
            RegistryError::Layout { problem, .. } => problem,
            e => panic!("not a layout error: {e}"),
        }
    }

    #[test]
    fn built_manifest_has_the_documented_layout_and_parses_back() {
        let layout = sample();
        let v = json(&layout);
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_MANIFEST_MEDIA_TYPE);
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(v["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(v["config"]["digest"], Digest::of(b"manifest").to_string());
        assert_eq!(v["config"]["size"], 400);
        assert_eq!(v["layers"][0]["mediaType"], MEMORY_MEDIA_TYPE);
        assert_eq!(v["layers"][0]["size"], 5000);
        assert_eq!(v["layers"][1]["mediaType"], KERNEL_STATE_MEDIA_TYPE);
        assert_eq!(v["annotations"][ANNOTATION_CREATED], "2023-11-14T22:13:20Z");
        assert_eq!(
            v["annotations"][ANNOTATION_DIGEST],
            Digest::of(b"manifest").to_string()
        );
        assert_eq!(parse(&v).unwrap(), layout);
        // Deterministic: the same image gives the same bytes.
        assert_eq!(
            layout.manifest_bytes(5).unwrap(),
            layout.manifest_bytes(5).unwrap()
        );
    }

    #[test]
    fn unexpected_media_types_are_refused_by_name() {
        let mut v = json(&sample());
        v["artifactType"] = "application/vnd.cncf.helm.config.v1+json".into();
        assert!(problem(&v).contains("artifactType \"application/vnd.cncf.helm.config.v1+json\""));

        let mut v = json(&sample());
        v.as_object_mut().unwrap().remove("artifactType");
        assert!(problem(&v).starts_with("no artifactType"));

        let mut v = json(&sample());
        v["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
        assert!(problem(&v).contains("mediaType"));

        let mut v = json(&sample());
        v["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let p = problem(&v);
        assert!(
            p.contains("config blob") && p.contains("image.config.v1"),
            "{p}"
        );

        let mut v = json(&sample());
        v["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        let p = problem(&v);
        assert!(
            p.contains("memory.img layer") && p.contains("tar+gzip"),
            "{p}"
        );

        // Swapped layers are refused too: the order is part of the layout.
        let mut v = json(&sample());
        let layers = v["layers"].as_array_mut().unwrap();
        layers.swap(0, 1);
        assert!(problem(&v).contains("memory.img layer has media type"));

        let mut v = json(&sample());
        v["schemaVersion"] = 1.into();
        assert!(problem(&v).contains("schemaVersion 1"));
    }

    #[test]
    fn layer_count_digests_urls_and_annotations_are_checked() {
        let mut v = json(&sample());
        let extra = v["layers"][1].clone();
        v["layers"].as_array_mut().unwrap().push(extra);
        assert!(problem(&v).starts_with("3 layers"));

        let mut v = json(&sample());
        v["layers"][1]["digest"] = format!("sha512:{}", "ab".repeat(64)).into();
        assert!(problem(&v).contains("is not sha256"));

        let mut v = json(&sample());
        v["layers"][0]["urls"] = serde_json::json!(["https://elsewhere.example/blob"]);
        assert!(problem(&v).contains("external urls"));

        let mut v = json(&sample());
        v["layers"][0]["size"] = (-1).into();
        assert!(problem(&v).contains("negative size"));

        let mut v = json(&sample());
        v["annotations"][ANNOTATION_DIGEST] = Digest::of(b"other").to_string().into();
        assert!(problem(&v).contains(ANNOTATION_DIGEST));

        // The annotations are informational: an artifact without them is still read.
        let mut v = json(&sample());
        v.as_object_mut().unwrap().remove("annotations");
        assert_eq!(parse(&v).unwrap(), sample());

        for bytes in [&b""[..], b"[]", b"{\"schemaVersion\":2}"] {
            let err = Layout::parse("r/x:1", bytes).unwrap_err();
            assert!(
                err.to_string().contains("not an OCI image manifest"),
                "{err}"
            );
        }
    }

    #[test]
    fn config_size_is_capped() {
        let mut v = json(&sample());
        v["config"]["size"] = (MANIFEST_MAX_BYTES + 1).into();
        assert!(problem(&v).contains("config blob of 1048577 bytes"));
        v["config"]["size"] = 0.into();
        assert!(problem(&v).contains("config blob of 0 bytes"));
    }

    #[test]
    fn layer_sizes_are_capped_by_what_manifest_json_declares() {
        let guest = 1024 * PAGE_SIZE;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            sentry_version: "0.1.0".to_owned(),
            created_unix_secs: 0,
            source: BTreeMap::new(),
            guest_memory_bytes: guest,
            files: Files {
                memory: FileEntry {
                    size: guest,
                    sha256: Digest::of(b"m"),
                },
                kernel_state: FileEntry {
                    size: 300,
                    sha256: Digest::of(b"k"),
                },
            },
        };
        let mut layout = sample();
        layout.check_sizes("r/x:1", &manifest).unwrap();
        layout.memory.size = zstd_bound(guest);
        layout.check_sizes("r/x:1", &manifest).unwrap();
        layout.memory.size += 1;
        let err = layout.check_sizes("r/x:1", &manifest).unwrap_err();
        assert!(err.to_string().contains("memory.img layer"), "{err}");

        let mut layout = sample();
        layout.kernel_state.size = zstd_bound(300) + 1;
        let err = layout.check_sizes("r/x:1", &manifest).unwrap_err();
        assert!(err.to_string().contains("kernel.state layer"), "{err}");
    }
}

//! `manifest.json`: what an image holds, who wrote it, and the size and digest of each file.
//!
//! Decoding is capped ([`MANIFEST_MAX_BYTES`](crate::MANIFEST_MAX_BYTES), checked by the
//! reader before it reads) and strict (`deny_unknown_fields`), and happens in two steps: the
//! format version is read first on its own, so an image from a newer format is refused as
//! "format version 3, this runsc reads version 1" rather than with whatever field the new
//! format happened to add. Only then is the whole manifest parsed and its values checked
//! against each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::{FORMAT_VERSION, KERNEL_STATE_FILE, KERNEL_STATE_MAX_BYTES, PAGE_SIZE};

/// The decoded `manifest.json` of an image.
///
/// A plain data type: the reader hands it out read-only after checking it, the writer builds
/// it last, once every file's size and digest is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The image format version ([`FORMAT_VERSION`]); the format is versioned as a whole.
    pub format_version: u32,
    /// The version of the sentry that wrote `kernel.state`; only the same sentry can load it.
    pub sentry_version: String,
    /// When the checkpoint was taken, in seconds since the Unix epoch (UTC).
    pub created_unix_secs: u64,
    /// Free-form provenance: what the image was made from, e.g. `rootfs` → `sha256:…`,
    /// `command` → `node server.js`. Not interpreted by this crate.
    pub source: BTreeMap<String, String>,
    /// The size of guest physical memory in bytes (a multiple of [`PAGE_SIZE`]).
    pub guest_memory_bytes: u64,
    /// Size and digest of each data file.
    pub files: Files,
}

/// The size and digest of each data file of an image; each must be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    /// `memory.img`: guest physical memory.
    #[serde(rename = "memory.img")]
    pub memory: FileEntry,
    /// `kernel.state`: the serialized sentry kernel.
    #[serde(rename = "kernel.state")]
    pub kernel_state: FileEntry,
}

/// What the manifest records about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Length of the file in bytes (for `memory.img`, including holes).
    pub size: u64,
    /// SHA-256 of the whole file's content (holes read as zeros), as `sha256sum` prints it.
    pub sha256: Digest,
}

/// Just the version, read before anything else (see the module doc). Named `Manifest` for
/// serde so a parse error reads "expected struct Manifest".
#[derive(Deserialize)]
#[serde(rename = "Manifest")]
struct VersionProbe {
    format_version: Option<u64>,
}

impl Manifest {
    /// Decodes and checks manifest bytes: version, syntax, then internal consistency. The
    /// sentry version is not checked here; the reader does that against its own.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(ImageError::ManifestSyntax)?;
        if let Some(found) = probe.format_version {
            if found != u64::from(FORMAT_VERSION) {
                return Err(ImageError::FormatVersion {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(ImageError::ManifestSyntax)?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Encodes the manifest as pretty JSON with a trailing newline. The output is a pure
    /// function of the value (fields in declaration order, `source` sorted), so the image
    /// digest depends only on what the image holds.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(ImageError::ManifestSyntax)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Checks that the values agree with each other and with this format's limits.
    pub fn check(&self) -> Result<()> {
        if self.format_version != FORMAT_VERSION {
            return Err(ImageError::FormatVersion {
                found: u64::from(self.format_version),
                supported: FORMAT_VERSION,
            });
        }
        if self.sentry_version.is_empty() {
            return Err(ImageError::ManifestInvalid(
                "sentry_version is empty".to_owned(),
            ));
        }
        if self.guest_memory_bytes == 0 || !self.guest_memory_bytes.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::ManifestInvalid(format!(
                "guest_memory_bytes {} is not a positive multiple of the {PAGE_SIZE}-byte page",
                self.guest_memory_bytes
            )));
        }
        if self.files.memory.size != self.guest_memory_bytes {
            return Err(ImageError::ManifestInvalid(format!(
                "memory.img size {} is not guest_memory_bytes {}",
                self.files.memory.size, self.guest_memory_bytes
            )));
        }
        if self.files.kernel_state.size > KERNEL_STATE_MAX_BYTES {
            return Err(ImageError::TooLarge {
                file: KERNEL_STATE_FILE,
                actual: self.files.kernel_state.size,
                limit: KERNEL_STATE_MAX_BYTES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            sentry_version: "0.1.0".to_owned(),
            created_unix_secs: 1_700_000_000,
            source: BTreeMap::from([
                ("rootfs".to_owned(), format!("{}", Digest::of(b"rootfs"))),
                ("command".to_owned(), "node server.js".to_owned()),
            ]),
            guest_memory_bytes: 16 * PAGE_SIZE,
            files: Files {
                memory: FileEntry {
                    size: 16 * PAGE_SIZE,
                    sha256: Digest::of(b"m"),
                },
                kernel_state: FileEntry {
                    size: 10,
                    sha256: Digest::of(b"k"),
                },
            },
        }
    }

    fn json(m: &Manifest) -> serde_json::Value {
        serde_json::from_slice(&m.encode().unwrap()).unwrap()
    }

    fn decode_value(v: &serde_json::Value) -> Result<Manifest> {
        Manifest::decode(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn round_trip_is_stable() {
        let m = sample();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(Manifest::decode(&bytes).unwrap().encode().unwrap(), bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"memory.img\""), "{text}");
        assert!(text.contains(&Digest::of(b"m").to_hex()), "{text}");
    }

    #[test]
    fn newer_format_is_refused_by_version_not_by_its_new_fields() {
        let mut v = json(&sample());
        v["format_version"] = 3.into();
        v["some_field_of_v3"] = true.into();
        let err = decode_value(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest.json: format version 3, this runsc reads version 1"
        );
    }

    #[test]
    fn unknown_field_is_refused() {
        let mut v = json(&sample());
        v["extra"] = 1.into();
        let err = decode_value(&v).unwrap_err();
        assert!(matches!(err, ImageError::ManifestSyntax(_)), "{err}");
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");

        let mut v = json(&sample());
        v["files"]["memory.img"]["mode"] = 420.into();
        assert!(decode_value(&v)
            .unwrap_err()
            .to_string()
            .contains("unknown field `mode`"));

        let mut v = json(&sample());
        v["files"]["extra.bin"] = v["files"]["kernel.state"].clone();
        assert!(decode_value(&v).is_err());
    }

    #[test]
    fn missing_field_or_file_entry_is_refused() {
        let mut v = json(&sample());
        v.as_object_mut().unwrap().remove("sentry_version");
        assert!(decode_value(&v)
            .unwrap_err()
            .to_string()
            .contains("missing field"));

        let mut v = json(&sample());
        v["files"].as_object_mut().unwrap().remove("kernel.state");
        let err = decode_value(&v).unwrap_err();
        assert!(err.to_string().contains("kernel.state"), "{err}");
    }

    #[test]
    fn not_json_is_refused() {
        for bytes in [&b""[..], b"\x00\xff", b"{", b"[1,2]", b"null", b"\"x\""] {
            let err = Manifest::decode(bytes).unwrap_err();
            assert!(matches!(err, ImageError::ManifestSyntax(_)), "{err}");
            assert!(err.to_string().starts_with("manifest.json: "), "{err}");
        }
        // Deep nesting hits serde_json's recursion limit, not the stack.
        let deep = "[".repeat(100_000);
        assert!(Manifest::decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn bad_digest_spelling_is_refused() {
        let mut v = json(&sample());
        v["files"]["memory.img"]["sha256"] = "sha256:abc".into();
        let err = decode_value(&v).unwrap_err();
        assert!(err.to_string().contains("not a sha256 digest"), "{err}");
    }

    #[test]
    fn inconsistent_sizes_are_refused() {
        let mut m = sample();
        m.files.memory.size += PAGE_SIZE;
        let err = Manifest::decode(&m.encode().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("is not guest_memory_bytes"),
            "{err}"
        );

        let mut m = sample();
        m.guest_memory_bytes = 4097;
        m.files.memory.size = 4097;
        let err = Manifest::decode(&m.encode().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("multiple of the 4096-byte page"),
            "{err}"
        );

        let mut m = sample();
        m.guest_memory_bytes = 0;
        m.files.memory.size = 0;
        assert!(Manifest::decode(&m.encode().unwrap()).is_err());

        let mut m = sample();
        m.files.kernel_state.size = KERNEL_STATE_MAX_BYTES + 1;
        let err = Manifest::decode(&m.encode().unwrap()).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");

        let mut v = json(&sample());
        v["guest_memory_bytes"] = (-4096).into();
        assert!(decode_value(&v).is_err());
    }
}

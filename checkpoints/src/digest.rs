//! SHA-256 digests: the type that holds one, its hex form, and hashing of image files.
//!
//! Digests are stored in the manifest as bare lowercase hex (what `sha256sum` prints, so an
//! operator can check a file by hand) and shown with the OCI-style `sha256:` prefix.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::Result;

/// A SHA-256 digest.
///
/// Parsed from and serialized to 64 lowercase hex digits; anything else (upper case, a
/// prefix, a wrong length) is refused, so one digest has exactly one spelling in a manifest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, as written in a manifest and by `sha256sum`.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        out
    }

    /// Parses 64 lowercase hex digits (no prefix).
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }
}

/// One lowercase hex digit's value.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// `sha256:<hex>`, the form used for image digests and OCI references.
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<String> for Digest {
    type Error = String;

    fn try_from(hex: String) -> Result<Self, String> {
        Self::from_hex(&hex)
            .ok_or_else(|| format!("not a sha256 digest (64 lowercase hex digits): {hex:?}"))
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_value() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(d.to_string(), format!("sha256:{}", d.to_hex()));
    }

    #[test]
    fn refuses_other_spellings() {
        let hex = Digest::of(b"abc").to_hex();
        assert!(Digest::from_hex(&hex.to_uppercase()).is_none());
        assert!(Digest::from_hex(&format!("sha256:{hex}")).is_none());
        assert!(Digest::from_hex(&hex[..62]).is_none());
        assert!(Digest::from_hex(&format!("{hex}00")).is_none());
        assert!(Digest::from_hex("").is_none());
        // A multi-byte UTF-8 string of the right byte length must not panic.
        assert!(Digest::from_hex(&"é".repeat(32)).is_none());
    }
}

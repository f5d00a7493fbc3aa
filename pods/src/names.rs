//! Names this handler makes or accepts: pod and container ids, network namespace names, and
//! checkpoint image names from annotations.

use std::io::Read as _;

/// A new id: 64 hex digits from the kernel's random source, as containerd's ids.
pub fn new_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A network namespace name in containerd's form, `cni-UUID` (version 4 layout), so that
/// tools that look for pod namespaces find ours.
pub fn netns_name() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "cni-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// A checkpoint image name: one path component of `[A-Za-z0-9_.-]`, as the shim takes.
pub fn is_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `id` could be one of ours (ids become directory names, so nothing else is).
pub fn is_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = new_id().expect("urandom");
        assert!(is_id(&id), "{id}");
        assert_ne!(id, new_id().expect("urandom"));
        assert!(!is_id("../etc"));
        let ns = netns_name().expect("urandom");
        assert!(ns.starts_with("cni-") && ns.len() == 40, "{ns}");
        assert!(is_image_name("web-1.2_x"));
        for bad in ["", "..", "../a", "a/b", ".x"] {
            assert!(!is_image_name(bad), "{bad}");
        }
    }
}

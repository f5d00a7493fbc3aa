//! The OCI spec's `mounts` as the sentry's mount table: bind mounts (type `bind`, or
//! options naming `bind`/`rbind`; `ro` makes them read-only, relative sources are under
//! the bundle), tmpfs (`size=`, `mode=`), proc, sysfs and cgroup (an empty read-only
//! directory), and the kinds the sandbox's own /dev serves (devpts, mqueue, devtmpfs),
//! which are not applied. Other types (nfs, overlay, fuse, …) are not applied either,
//! with a warning.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use oci_spec::runtime::{Mount, Spec};
use sentry::sandbox::{MountKind, MountSpec};

/// The container's mounts, in the spec's order.
pub fn mount_specs(spec: &Spec, bundle: &Path) -> Vec<MountSpec> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| mount_spec(m, bundle))
        .collect()
}

fn mount_spec(m: &Mount, bundle: &Path) -> MountSpec {
    let options = m.options().as_deref().unwrap_or_default();
    let typ = m.typ().as_deref().unwrap_or("");
    let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    let kind = if bind {
        match m.source() {
            Some(source) => MountKind::Bind {
                source: if source.is_absolute() {
                    source.clone()
                } else {
                    bundle.join(source)
                },
                readonly: readonly(options),
            },
            None => MountKind::Ignored("a bind mount without a source".into()),
        }
    } else {
        match typ {
            "tmpfs" => MountKind::Tmpfs {
                size: option_value(options, "size").and_then(parse_size),
                mode: option_value(options, "mode").and_then(|v| u32::from_str_radix(v, 8).ok()),
            },
            "proc" => MountKind::Proc,
            "sysfs" | "cgroup" | "cgroup2" => MountKind::EmptyReadOnly,
            "devpts" | "mqueue" | "devtmpfs" => {
                MountKind::Ignored(format!("{typ}: the sandbox's own /dev serves it"))
            }
            other => {
                tracing::warn!(
                    "mount at {}: type {other:?} is not supported; not mounted",
                    m.destination().display()
                );
                MountKind::Ignored(format!("type {other:?} is not supported"))
            }
        }
    };
    MountSpec {
        destination: m.destination().as_os_str().as_bytes().to_vec(),
        kind,
    }
}

/// fstab style: the last of `ro` and `rw` wins; binds are writable by default.
fn readonly(options: &[String]) -> bool {
    options
        .iter()
        .rev()
        .find_map(|o| match o.as_str() {
            "ro" => Some(true),
            "rw" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// The value of `key=value` among the options (the last one).
fn option_value<'a>(options: &'a [String], key: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// tmpfs's `size=`: bytes, with an optional k/m/g suffix. A percentage of memory is
/// left to the default.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, shift) = match v.chars().last()?.to_ascii_lowercase() {
        'k' => (&v[..v.len() - 1], 10),
        'm' => (&v[..v.len() - 1], 20),
        'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mounts: serde_json::Value) -> Spec {
        let json = serde_json::json!({ "ociVersion": "1.0.2", "mounts": mounts });
        serde_json::from_value(json).expect("spec")
    }

    #[test]
    fn converts_each_kind() {
        let s = spec(serde_json::json!([
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts" },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"] },
            { "destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"] },
            { "destination": "/data", "source": "vol", "options": ["rbind", "ro", "rw"] },
            { "destination": "/x", "type": "nfs", "source": "server:/x" },
        ]));
        let got = mount_specs(&s, Path::new("/bundle"));
        let kinds: Vec<_> = got.iter().map(|m| m.kind.clone()).collect();
        assert_eq!(got[1].destination, b"/dev".to_vec());
        assert_eq!(kinds[0], MountKind::Proc);
        assert_eq!(
            kinds[1],
            MountKind::Tmpfs {
                size: Some(65536 << 10),
                mode: Some(0o755)
            }
        );
        assert!(matches!(kinds[2], MountKind::Ignored(_)));
        assert_eq!(kinds[3], MountKind::EmptyReadOnly);
        assert_eq!(
            kinds[4],
            MountKind::Bind {
                source: "/usr".into(),
                readonly: true
            }
        );
        assert_eq!(
            kinds[5],
            MountKind::Bind {
                source: "/bundle/vol".into(),
                readonly: false
            }
        );
        assert!(matches!(kinds[6], MountKind::Ignored(_)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("50%"), None);
        assert_eq!(parse_size(""), None);
    }
}

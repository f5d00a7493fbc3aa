//! The OCI spec's `mounts` as the sentry's mount table: bind mounts (type `bind`, or
//! options naming `bind`/`rbind`; `ro` makes them read-only, relative sources are under
//! the bundle), tmpfs (`size=`, `mode=`), proc, sysfs and cgroup (an empty read-only
//! directory), and the kinds the sandbox's own /dev serves (devpts, mqueue, devtmpfs),
//! which are not applied. Other types (nfs, overlay, fuse, …) are not applied either,
//! with a warning.
//!
//! A mount is first planned from the spec ([`plan`]), then either opened in this process
//! ([`PlannedMount::open`], `runsc boot` for its first container, before it gives up the
//! host's tree) or sent to a running sandbox as a message with the bind source's fd
//! ([`PlannedMount::to_message`] in `runsc create`, [`from_message`] in the sandbox).

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nanovisor_proto::{mount, BindMount, Empty, Mount as MountMessage, TmpfsMount};
use oci_spec::runtime::{Mount, Spec};
use sentry::sandbox::{HostSource, MountKind, MountSpec};

/// One of the spec's mounts, as the sandbox will make it; nothing opened yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMount {
    /// The absolute guest path of the mount point.
    pub destination: Vec<u8>,
    pub kind: Planned,
}

/// What a planned mount is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// A host directory or file (an absolute path).
    Bind {
        source: PathBuf,
        readonly: bool,
    },
    Tmpfs {
        size: Option<u64>,
        mode: Option<u32>,
    },
    Proc,
    EmptyReadOnly,
    /// Not applied; why.
    Ignored(String),
}

/// The container's mounts, in the spec's order.
pub fn plan(spec: &Spec, bundle: &Path) -> Vec<PlannedMount> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| plan_one(m, bundle))
        .collect()
}

fn plan_one(m: &Mount, bundle: &Path) -> PlannedMount {
    let options = m.options().as_deref().unwrap_or_default();
    let typ = m.typ().as_deref().unwrap_or("");
    let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    let kind = if m.destination() == Path::new("/etc/resolv.conf") {
        // Runtimes bind the pod's resolv.conf there; the guest's resolver must keep
        // pointing at the DNS proxy, which enforces the DNS policy.
        Planned::Ignored("the sandbox's DNS proxy serves /etc/resolv.conf".into())
    } else if bind {
        match m.source() {
            Some(source) => Planned::Bind {
                source: if source.is_absolute() {
                    source.clone()
                } else {
                    bundle.join(source)
                },
                readonly: readonly(options),
            },
            None => Planned::Ignored("a bind mount without a source".into()),
        }
    } else {
        match typ {
            "tmpfs" => Planned::Tmpfs {
                size: option_value(options, "size").and_then(parse_size),
                mode: option_value(options, "mode").and_then(|v| u32::from_str_radix(v, 8).ok()),
            },
            "proc" => Planned::Proc,
            "sysfs" | "cgroup" | "cgroup2" => Planned::EmptyReadOnly,
            "devpts" | "mqueue" | "devtmpfs" => {
                Planned::Ignored(format!("{typ}: the sandbox's own /dev serves it"))
            }
            other => {
                tracing::warn!(
                    "mount at {}: type {other:?} is not supported; not mounted",
                    m.destination().display()
                );
                Planned::Ignored(format!("type {other:?} is not supported"))
            }
        }
    };
    PlannedMount {
        destination: m.destination().as_os_str().as_bytes().to_vec(),
        kind,
    }
}

impl PlannedMount {
    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.destination).into_owned()
    }

    /// Open a bind's source, for a host source the sandbox can use without the host's
    /// tree. `None` for a mount that is not applied.
    fn open_source(&self) -> anyhow::Result<Option<HostSource>> {
        match &self.kind {
            Planned::Bind { source, readonly } => HostSource::open_bind(source, *readonly)
                .map(Some)
                .with_context(|| {
                    format!(
                        "bind mount source {} for {}",
                        source.display(),
                        self.shown()
                    )
                }),
            _ => Ok(None),
        }
    }

    /// The sentry's mount, its source opened now; `None` for a mount not applied.
    pub fn open(self) -> anyhow::Result<Option<MountSpec>> {
        let source = self.open_source()?;
        let shown = self.shown();
        let kind = match (self.kind, source) {
            (Planned::Bind { readonly, .. }, Some(source)) => MountKind::Bind { source, readonly },
            (Planned::Tmpfs { size, mode }, _) => MountKind::Tmpfs { size, mode },
            (Planned::Proc, _) => MountKind::Proc,
            (Planned::EmptyReadOnly, _) => MountKind::EmptyReadOnly,
            (Planned::Ignored(why), _) => {
                tracing::debug!("mount at {shown} not applied: {why}");
                return Ok(None);
            }
            (Planned::Bind { .. }, None) => return Ok(None),
        };
        Ok(Some(MountSpec {
            destination: self.destination,
            kind,
        }))
    }

    /// The mount as a control message, with the bind source opened now (its fd travels
    /// with the message); `None` for a mount not applied.
    pub fn to_message(&self) -> anyhow::Result<Option<(MountMessage, Option<HostSource>)>> {
        let source = self.open_source()?;
        let kind = match &self.kind {
            Planned::Bind { source, readonly } => mount::Kind::Bind(BindMount {
                readonly: *readonly,
                source_path: source.display().to_string(),
            }),
            Planned::Tmpfs { size, mode } => mount::Kind::Tmpfs(TmpfsMount {
                size: *size,
                mode: *mode,
            }),
            Planned::Proc => mount::Kind::Proc(Empty {}),
            Planned::EmptyReadOnly => mount::Kind::EmptyReadOnly(Empty {}),
            Planned::Ignored(why) => {
                tracing::debug!("mount at {} not applied: {why}", self.shown());
                return Ok(None);
            }
        };
        let message = MountMessage {
            destination: self.destination.clone(),
            kind: Some(kind),
        };
        Ok(Some((message, source)))
    }
}

/// The sandbox's end of [`PlannedMount::to_message`]: a bind takes the next of `fds`.
pub fn from_message(
    m: MountMessage,
    fds: &mut impl Iterator<Item = OwnedFd>,
) -> Result<MountSpec, String> {
    let shown = String::from_utf8_lossy(&m.destination).into_owned();
    if !m.destination.starts_with(b"/") || m.destination.contains(&0) {
        return Err(format!("mount destination {shown:?}: not an absolute path"));
    }
    let kind = match m.kind {
        Some(mount::Kind::Bind(b)) => {
            let fd = fds
                .next()
                .ok_or_else(|| format!("bind mount at {shown}: no fd for its source"))?;
            let source = HostSource::from_fd(fd, PathBuf::from(&b.source_path))
                .map_err(|e| format!("bind mount source {} for {shown}: {e}", b.source_path))?;
            MountKind::Bind {
                source,
                readonly: b.readonly,
            }
        }
        Some(mount::Kind::Tmpfs(t)) => MountKind::Tmpfs {
            size: t.size,
            mode: t.mode,
        },
        Some(mount::Kind::Proc(_)) => MountKind::Proc,
        Some(mount::Kind::EmptyReadOnly(_)) => MountKind::EmptyReadOnly,
        None => return Err(format!("mount at {shown}: no kind")),
    };
    Ok(MountSpec {
        destination: m.destination,
        kind,
    })
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
        let got = plan(&s, Path::new("/bundle"));
        let kinds: Vec<_> = got.iter().map(|m| m.kind.clone()).collect();
        assert_eq!(got[1].destination, b"/dev".to_vec());
        assert_eq!(kinds[0], Planned::Proc);
        assert_eq!(
            kinds[1],
            Planned::Tmpfs {
                size: Some(65536 << 10),
                mode: Some(0o755)
            }
        );
        assert!(matches!(kinds[2], Planned::Ignored(_)));
        assert_eq!(kinds[3], Planned::EmptyReadOnly);
        assert_eq!(
            kinds[4],
            Planned::Bind {
                source: "/usr".into(),
                readonly: true
            }
        );
        assert_eq!(
            kinds[5],
            Planned::Bind {
                source: "/bundle/vol".into(),
                readonly: false
            }
        );
        assert!(matches!(kinds[6], Planned::Ignored(_)));
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

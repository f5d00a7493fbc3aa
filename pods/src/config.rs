//! `[nanovisor]` in nanovisor-cri's configuration file: where runsc, containerd, CNI and the
//! checkpoint images are, and the pools of pre-restored sandboxes.
//!
//! ```toml
//! [nanovisor]
//! runsc = "/usr/local/bin/runsc"
//! root = "/run/nanovisor-cri"                      # our state: records, bundles, runsc's root
//! containerd_socket = "/run/containerd/containerd.sock"
//! containerd_namespace = "k8s.io"                  # where CRI's PullImage put the images
//! snapshotter = "overlayfs"
//! sandbox_image = "registry.k8s.io/pause:3.9"      # boots a pod's sandbox; must be pulled
//! cni_bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
//! cni_conf_dir = "/etc/cni/net.d"
//! checkpoint_dir = "/var/lib/nanovisor/checkpoints"
//! default_acl_file = "/etc/nanovisor/acl.yaml"
//! debug = false
//!
//! [[nanovisor.pool]]
//! checkpoint = "web"                               # an image under checkpoint_dir
//! image = "registry.example/web:1"                 # the container image it was built over
//! size = 2
//! ```
//!
//! Unknown keys are refused (a typo must not drop the default ACL), and so are relative paths.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The runsc binary: absolute, or a name looked up on PATH.
    pub runsc: PathBuf,
    /// Our state directory. runsc's control sockets live below it (`ROOT/runsc/ID/`), so it
    /// must be short: a unix socket path has at most 108 bytes.
    pub root: PathBuf,
    pub containerd_socket: PathBuf,
    pub containerd_namespace: String,
    pub snapshotter: String,
    /// The image whose process holds a booted pod's sandbox (the pause container).
    pub sandbox_image: String,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub default_acl_file: Option<PathBuf>,
    pub debug: bool,
    pub pool: Vec<PoolConfig>,
}

/// `[[nanovisor.pool]]`: keep `size` sandboxes restored from `checkpoint` over `image`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub checkpoint: String,
    pub image: String,
    pub size: usize,
    /// An HTTP request made to each pooled sandbox once it is restored, so that the pod's first
    /// request does not pay for faulting in the app's memory (`warm_up = { port = 8080,
    /// path = "/healthz" }`). Only for apps where that request has no effect.
    #[serde(default)]
    pub warm_up: Option<WarmUp>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmUp {
    pub port: u16,
    #[serde(default = "root_path")]
    pub path: String,
}

fn root_path() -> String {
    "/".into()
}

/// The most sandboxes one pool keeps (each is a sandbox process with its memory).
pub const MAX_POOL_SIZE: usize = 64;

impl Default for Config {
    fn default() -> Config {
        Config {
            runsc: PathBuf::from("runsc"),
            root: PathBuf::from("/run/nanovisor-cri"),
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_namespace: "k8s.io".into(),
            snapshotter: "overlayfs".into(),
            sandbox_image: "registry.k8s.io/pause:3.9".into(),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            checkpoint_dir: PathBuf::from("/var/lib/nanovisor/checkpoints"),
            default_acl_file: None,
            debug: false,
            pool: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("[nanovisor] {key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

fn absolute(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(ConfigError {
            key,
            message: format!("must be an absolute path, not {path:?}"),
        })
    }
}

impl Config {
    /// Checks what serde cannot: absolute paths, a root short enough for runsc's sockets,
    /// sane pools.
    pub fn validate(&self) -> Result<(), ConfigError> {
        absolute("root", &self.root)?;
        absolute("containerd_socket", &self.containerd_socket)?;
        absolute("cni_conf_dir", &self.cni_conf_dir)?;
        absolute("checkpoint_dir", &self.checkpoint_dir)?;
        for dir in &self.cni_bin_dirs {
            absolute("cni_bin_dirs", dir)?;
        }
        if let Some(acl) = &self.default_acl_file {
            absolute("default_acl_file", acl)?;
        }
        // ROOT/runsc/<64 hex>/<socket name>: leave room for runsc's own part.
        if self.root.as_os_str().len() > 24 {
            return Err(ConfigError {
                key: "root",
                message: format!(
                    "{:?} is longer than 24 bytes: runsc's control sockets below it would not \
                     fit a unix socket path",
                    self.root
                ),
            });
        }
        for (key, value) in [
            ("containerd_namespace", &self.containerd_namespace),
            ("snapshotter", &self.snapshotter),
            ("sandbox_image", &self.sandbox_image),
        ] {
            if value.is_empty() {
                return Err(ConfigError {
                    key,
                    message: "must not be empty".into(),
                });
            }
        }
        for p in &self.pool {
            if !crate::names::is_image_name(&p.checkpoint) {
                return Err(ConfigError {
                    key: "pool.checkpoint",
                    message: format!("{:?}: want an image name ([A-Za-z0-9_.-])", p.checkpoint),
                });
            }
            if p.image.is_empty() {
                return Err(ConfigError {
                    key: "pool.image",
                    message: format!("pool {:?} names no container image", p.checkpoint),
                });
            }
            if let Some(w) = &p.warm_up {
                let printable = w.path.bytes().all(|b| b.is_ascii_graphic());
                if w.port == 0 || !w.path.starts_with('/') || !printable {
                    return Err(ConfigError {
                        key: "pool.warm_up",
                        message: format!("{w:?}: want a port and an absolute path without spaces"),
                    });
                }
            }
            if p.size == 0 || p.size > MAX_POOL_SIZE {
                return Err(ConfigError {
                    key: "pool.size",
                    message: format!(
                        "{} for pool {:?}: want 1..={MAX_POOL_SIZE}",
                        p.size, p.checkpoint
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(parse(""), Ok(Config::default()));
    }

    #[test]
    fn pools_are_read() {
        let c = parse(
            "root = \"/run/nvc\"\n[[pool]]\ncheckpoint = \"web\"\nimage = \"r/web:1\"\nsize = 2\n",
        )
        .expect("valid");
        assert_eq!(c.pool[0].size, 2);
        assert_eq!(c.pool[0].warm_up, None);
        let w = parse(
            "[[pool]]\ncheckpoint = \"web\"\nimage = \"i\"\nsize = 1\nwarm_up = { port = 8080 }\n",
        )
        .expect("valid");
        assert_eq!(
            w.pool[0].warm_up,
            Some(WarmUp {
                port: 8080,
                path: "/".into()
            })
        );
        assert_eq!(c.root, PathBuf::from("/run/nvc"));
    }

    #[test]
    fn refusals_name_the_key() {
        for (text, key) in [
            ("runs = \"x\"", "runs"),
            ("root = \"rel\"", "root"),
            ("root = \"/a/very/long/state/directory/indeed\"", "root"),
            ("cni_bin_dirs = [\"bin\"]", "cni_bin_dirs"),
            ("default_acl_file = \"acl.yaml\"", "default_acl_file"),
            ("sandbox_image = \"\"", "sandbox_image"),
            (
                "[[pool]]\ncheckpoint = \"../x\"\nimage = \"i\"\nsize = 1",
                "pool.checkpoint",
            ),
            (
                "[[pool]]\ncheckpoint = \"x\"\nimage = \"i\"\nsize = 0",
                "pool.size",
            ),
            (
                "[[pool]]\ncheckpoint = \"x\"\nimage = \"\"\nsize = 1",
                "pool.image",
            ),
            (
                "[[pool]]\ncheckpoint = \"x\"\nimage = \"i\"\nsize = 1\nwarm_up = { port = 80, path = \"a b\" }",
                "pool.warm_up",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}

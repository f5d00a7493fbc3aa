//! The shim's configuration file, `/etc/nanovisor/shim.toml` unless containerd's runtime
//! options name another (`ConfigPath`, as gVisor's shim reads `runsc.toml`):
//!
//! ```toml
//! runsc = "/usr/local/bin/runsc"     # the runsc binary the shim drives
//! root = "/run/nanovisor"            # runsc's state root; one directory per containerd namespace
//! debug = false                      # runsc --debug: a per-syscall trace in each bundle's log
//! default_acl_file = "/etc/nanovisor/acl.yaml"  # for pods that carry no ACL annotation
//! checkpoint_dir = "/var/lib/nanovisor/checkpoints"  # where named checkpoint images live
//! ```
//!
//! Every key is optional. An unknown key or a value of the wrong type is refused, naming it:
//! a typo must not silently drop a security setting such as the default ACL.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the configuration is read from when containerd names none.
pub const DEFAULT_PATH: &str = "/etc/nanovisor/shim.toml";

/// The longest configuration file read.
const MAX_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the shim configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the shim configuration {path} is larger than {MAX_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("the shim configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The runsc binary. Relative names are looked up next to the shim, then on PATH.
    pub runsc: PathBuf,
    /// runsc's `--root`; the containerd namespace is appended.
    pub root: PathBuf,
    /// Pass `--debug` to runsc.
    pub debug: bool,
    /// An ACL policy file (docs/acl.md) for pods without `dev.nanovisor.acl*` annotations.
    pub default_acl_file: Option<PathBuf>,
    /// The directory holding checkpoint images by name (`dev.nanovisor.checkpoint-image`).
    pub checkpoint_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            runsc: PathBuf::from("runsc"),
            root: PathBuf::from("/run/nanovisor"),
            debug: false,
            default_acl_file: None,
            checkpoint_dir: PathBuf::from("/var/lib/nanovisor/checkpoints"),
        }
    }
}

impl Config {
    /// Reads the configuration at `path`. A missing file at the default path gives the
    /// defaults; a missing file that containerd named explicitly is an error.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let text = match read_capped(path) {
            Ok(text) => text,
            Err(ConfigError::Read { source, .. })
                if !explicit && source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(Config::default());
            }
            Err(e) => return Err(e),
        };
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the TOML text; the error names the key and line.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.root.as_os_str().is_empty() || !config.root.is_absolute() {
            return Err(format!(
                "root must be an absolute path, not {:?}",
                config.root
            ));
        }
        if let Some(acl) = &config.default_acl_file {
            if !acl.is_absolute() {
                return Err(format!(
                    "default_acl_file must be an absolute path, not {acl:?}"
                ));
            }
        }
        if !config.checkpoint_dir.is_absolute() {
            return Err(format!(
                "checkpoint_dir must be an absolute path, not {:?}",
                config.checkpoint_dir
            ));
        }
        Ok(config)
    }

    /// runsc's state root for a containerd namespace.
    pub fn root_for(&self, namespace: &str) -> PathBuf {
        self.root.join(namespace)
    }
}

fn read_capped(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_SIZE {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
    }

    #[test]
    fn every_key_is_read() {
        let c = Config::parse(
            "runsc = \"/opt/nv/runsc\"\nroot = \"/run/nv\"\ndebug = true\n\
             default_acl_file = \"/etc/nv/acl.yaml\"\ncheckpoint_dir = \"/var/nv\"\n",
        )
        .expect("valid");
        assert_eq!(c.runsc, PathBuf::from("/opt/nv/runsc"));
        assert_eq!(c.root_for("k8s.io"), PathBuf::from("/run/nv/k8s.io"));
        assert!(c.debug);
        assert_eq!(c.default_acl_file, Some(PathBuf::from("/etc/nv/acl.yaml")));
        assert_eq!(c.checkpoint_dir, PathBuf::from("/var/nv"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::parse("default_acl = \"/x\"").expect_err("unknown key");
        assert!(e.contains("default_acl"), "{e}");
        let e = Config::parse("debug = \"yes\"").expect_err("wrong type");
        assert!(e.contains("debug"), "{e}");
        let e = Config::parse("root = \"relative\"").expect_err("relative root");
        assert!(e.contains("root"), "{e}");
        let e = Config::parse("default_acl_file = \"acl.yaml\"").expect_err("relative acl");
        assert!(e.contains("default_acl_file"), "{e}");
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("shim.toml");
        let e = Config::load(Some(&missing)).expect_err("named file missing");
        assert!(e.to_string().contains("shim.toml"), "{e}");
        std::fs::write(&missing, "debug = true").expect("write");
        assert!(Config::load(Some(&missing)).expect("valid").debug);
    }
}

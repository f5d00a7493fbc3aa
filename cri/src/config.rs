//! nanovisor-cri's configuration file, `/etc/nanovisor/cri.toml` unless `--config` names
//! another:
//!
//! ```toml
//! listen = "/run/nanovisor/cri.sock"              # where kubelet connects (a unix socket)
//! upstream = "/run/containerd/containerd.sock"    # containerd's CRI: every other handler, images
//!
//! [nanovisor]                                     # the nanovisor handler (nanovisor-pods);
//! # ...                                           # absent: a pure forwarding proxy
//! ```
//!
//! An unknown key or a value of the wrong type is refused, naming the key and the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the configuration is read from when `--config` names none.
pub const DEFAULT_PATH: &str = "/etc/nanovisor/cri.toml";

/// The longest configuration file read.
const MAX_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the nanovisor-cri configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the nanovisor-cri configuration {path} is larger than {MAX_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("the nanovisor-cri configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The unix socket nanovisor-cri serves the CRI on.
    pub listen: PathBuf,
    /// The unix socket of the CRI endpoint every other handler and all images go to.
    pub upstream: PathBuf,
    /// The nanovisor runtime handler's own settings; `None`: forward everything.
    pub nanovisor: Option<pods::Config>,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_SIZE {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and checks a configuration; the error says which key is wrong.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // Say on which line, and show it: a type error's message does not name the key.
            let at = e.span().map(|span| span.start.min(text.len()));
            match at {
                Some(at) => {
                    let number = 1 + text[..at].matches('\n').count();
                    let line = text.lines().nth(number - 1).unwrap_or_default().trim();
                    format!("line {number} (`{line}`): {}", e.message().trim())
                }
                None => e.message().trim().to_string(),
            }
        })?;
        for (key, path) in [("listen", &config.listen), ("upstream", &config.upstream)] {
            if !path.is_absolute() {
                return Err(format!(
                    "`{key}` must be an absolute socket path, not {:?}",
                    path.display().to_string()
                ));
            }
        }
        if config.listen == config.upstream {
            return Err(format!(
                "`listen` and `upstream` are the same socket ({})",
                config.listen.display()
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarding_proxy_needs_only_the_two_sockets() {
        let c = Config::parse(
            "listen = \"/run/nanovisor/cri.sock\"\nupstream = \"/run/containerd/containerd.sock\"\n",
        )
        .expect("valid");
        assert_eq!(c.listen, Path::new("/run/nanovisor/cri.sock"));
        assert_eq!(c.upstream, Path::new("/run/containerd/containerd.sock"));
        assert!(c.nanovisor.is_none());
    }

    #[test]
    fn the_nanovisor_table_goes_to_pods() {
        let c = Config::parse("listen = \"/a.sock\"\nupstream = \"/b.sock\"\n[nanovisor]\n")
            .expect("valid");
        assert!(c.nanovisor.is_some());
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = Config::parse("listen = \"/a.sock\"\nupstream = \"/b.sock\"\nlisten_on = 1\n")
            .expect_err("unknown key");
        assert!(e.starts_with("line 3 (`listen_on = 1`): "), "{e}");
    }

    #[test]
    fn a_missing_key_is_named() {
        let e = Config::parse("listen = \"/a.sock\"\n").expect_err("no upstream");
        assert!(e.contains("upstream"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let e = Config::parse("listen = 5\nupstream = \"/b.sock\"\n").expect_err("bad type");
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn relative_and_identical_sockets_are_refused() {
        let e =
            Config::parse("listen = \"cri.sock\"\nupstream = \"/b.sock\"\n").expect_err("relative");
        assert!(e.contains("`listen`"), "{e}");
        let e = Config::parse("listen = \"/a.sock\"\nupstream = \"/a.sock\"\n").expect_err("same");
        assert!(e.contains("same socket"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cri.toml");
        std::fs::write(
            &path,
            "listen = \"/a.sock\"\nupstream = \"/b.sock\"\nbogus = true\n",
        )
        .expect("write");
        let e = Config::load(&path).expect_err("unknown key").to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("bogus"),
            "{e}"
        );
        let e = Config::load(&dir.path().join("absent.toml"))
            .expect_err("absent")
            .to_string();
        assert!(e.contains("absent.toml"), "{e}");
    }
}

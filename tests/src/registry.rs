//! A local OCI registry for tests: Debian's `docker-registry` (distribution 2.8) serving plain
//! HTTP on a free port of 127.0.0.1, its config, storage and log in a directory the caller
//! owns. Dropping the [`Registry`] stops it.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry serve`.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    child: Child,
}

impl Registry {
    /// Whether `docker-registry` is installed.
    pub fn available() -> bool {
        Command::new("docker-registry")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts the registry with its config, storage (`data/`) and log under `dir` (created if
    /// missing), and waits until `/v2/` answers. Panics with the log's tail if it does not
    /// within 20 s.
    pub fn start(dir: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("mkdir {}: {e}", data.display()));
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                data.display()
            ),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log = dir.join("registry.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let err = file.try_clone().expect("dup of a log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting docker-registry: {e}"));
        let mut registry = Registry { addr, log, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http_status(&registry.addr, "/v2/") == Some(200) {
                return registry;
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}):\n{}",
                    registry.log_tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {} within 20 s:\n{}",
                registry.addr,
                registry.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SIGKILL: the registry keeps nothing in memory that its storage needs, and the
        // storage is the test's to delete.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP status of `GET PATH` on `addr`, if it answers.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

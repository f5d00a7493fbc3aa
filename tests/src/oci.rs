//! Driving `runsc` as an OCI runtime from tests, and reading the ticker guest's output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::runsc;

/// Run `runsc --root ROOT ARGS…` with stdout to the file `out` (else discarded); its exit
/// code and stderr. Stderr goes through a file in `dir`: a sandbox process keeps the
/// stderr of the `create` that started it, so a pipe would never reach end of file.
pub fn runsc_at(root: &Path, dir: &Path, args: &[&str], out: Option<&Path>) -> (i32, String) {
    let tag = args.first().copied().unwrap_or("runsc");
    let err_path = dir.join(format!("stderr-{tag}"));
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let stdout = match out {
        Some(p) => Stdio::from(std::fs::File::create(p).expect("stdout file")),
        None => Stdio::null(),
    };
    let status = Command::new(runsc())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(err)
        .status()
        .expect("running runsc");
    let text = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.code().unwrap_or(-1), text)
}

/// The tick numbers `tests/guest/ticker.c` printed to `path` so far.
pub fn ticks(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.split(' ').next()?.parse().ok())
        .collect()
}

/// The ticks in `path`, once there are at least `n` (20 s at most).
pub fn wait_ticks(path: &Path, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = ticks(path);
        if t.len() >= n {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{} ticks after 20 s in {}: {:?}",
            t.len(),
            path.display(),
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! A guest busy loop cannot take more of the host than the container's CPU limit: the
//! sandbox process lives in a host cgroup made from `linux.resources` (here 20% of one
//! CPU), whatever the guest does.
//!
//! Needs root and a cgroup hierarchy with the cpu controller; fails, not skips, without.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nanovisor_tests::runsc;

/// Run runsc; its exit code and stderr. Stderr goes through a file: the sandbox keeps
/// `create`'s stderr as the container's, so a pipe would never reach end of file.
fn runsc_at(root: &Path, args: &[&str]) -> (i32, String) {
    let err_path = root.with_extension(format!("stderr-{}", args[0]));
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let status = Command::new(runsc())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .expect("running runsc");
    let text = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.code().unwrap_or(-1), text)
}

/// CPU time the cgroup has used, from cgroup v1's cpuacct or v2's cpu.stat.
fn cpu_used(id: &str) -> Duration {
    let v1 = PathBuf::from(format!(
        "/sys/fs/cgroup/cpuacct/nanovisor/{id}/cpuacct.usage"
    ));
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return Duration::from_nanos(s.trim().parse().expect("cpuacct.usage"));
    }
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let stat = PathBuf::from(format!("{root}/nanovisor/{id}/cpu.stat"));
        if let Ok(s) = std::fs::read_to_string(&stat) {
            let usec: u64 = s
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())
                .expect("usage_usec");
            return Duration::from_micros(usec);
        }
    }
    panic!(
        "no cgroup CPU accounting for sandbox {id} (looked for {})",
        v1.display()
    );
}

#[test]
fn a_busy_guest_stays_within_its_cpu_limit() {
    let dir = std::env::temp_dir().join(format!("nv-cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                    "args": ["/bin/sh", "-c", "while :; do :; done"],
                    "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
        "root": {"path": "/", "readonly": true},
        "linux": {"resources": {"cpu": {"quota": 20000, "period": 100000}}}
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
    let root = dir.join("root");
    let id = format!("cpu-{}", std::process::id());
    let (code, err) = runsc_at(
        &root,
        &["create", "--bundle", bundle.to_str().expect("utf-8"), &id],
    );
    assert_eq!(code, 0, "create: {err}");
    let (code, err) = runsc_at(&root, &["start", &id]);
    assert_eq!(code, 0, "start: {err}");
    std::thread::sleep(Duration::from_millis(500));
    let (t0, c0) = (Instant::now(), cpu_used(&id));
    std::thread::sleep(Duration::from_secs(2));
    let (t1, c1) = (Instant::now(), cpu_used(&id));
    let (code, err) = runsc_at(&root, &["delete", "--force", &id]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "delete: {err}");
    let share = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64();
    eprintln!("the busy sandbox used {:.1}% of a CPU", share * 100.0);
    assert!(
        share > 0.05,
        "the busy loop hardly ran ({:.0}% of a CPU): is it running at all?",
        share * 100.0
    );
    assert!(
        share <= 0.30,
        "the sandbox used {:.0}% of a CPU under a 20% limit",
        share * 100.0
    );
}

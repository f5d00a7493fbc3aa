//! Checkpoint and restore through the OCI CLI: `runsc checkpoint` saves a running
//! container's whole sandbox as an image, `runsc restore` brings it back in a new
//! sandbox process, which carries on from where it was.
//!
//! Needs root and KVM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nanovisor_tests::guest_bin;
use nanovisor_tests::oci::{runsc_at, ticks, wait_ticks};

struct Scratch {
    dir: PathBuf,
    root: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nv-ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch {
            root: dir.join("root"),
            dir,
        }
    }

    /// A bundle over the host's root (read-only) running `args`.
    fn bundle(&self, args: &[&str]) -> PathBuf {
        let bundle = self.dir.join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle");
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                        "args": args, "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
            "root": {"path": "/", "readonly": true},
            // A small guest: the image's memory.img is as long as guest memory.
            "linux": {"resources": {"memory": {"limit": 256 << 20}}},
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
        bundle
    }

    /// Run runsc with stdout to `out` (the container's, for create/restore); its exit
    /// code and stderr.
    fn runsc(&self, args: &[&str], out: Option<&Path>) -> (i32, String) {
        runsc_at(&self.root, &self.dir, args, out)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for id in [
            "ticker-a",
            "ticker-b",
            "ticker-bad0",
            "ticker-bad1",
            "ticker-bad2",
            "ticker-bad3",
        ] {
            let _ = self.runsc(&["delete", "--force", id], None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of the ticker: its CLOCK_MONOTONIC and CLOCK_REALTIME in ms.
#[derive(Clone, Copy, Debug)]
struct Tick {
    mono: i64,
    real: i64,
}

/// The ticks printed to `path` so far.
fn tick_lines(path: &Path) -> Vec<Tick> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("tick ")?.split(' ');
            let _count: u64 = f.next()?.parse().ok()?;
            Some(Tick {
                mono: f.next()?.parse().ok()?,
                real: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wait until `runsc state` says the container has stopped.
fn wait_stopped(s: &Scratch, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = s.dir.join("state.json");
        let (code, err) = s.runsc(&["state", id], Some(&out));
        assert_eq!(code, 0, "state: {err}");
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("state output"))
                .expect("state JSON");
        if state["status"] == "stopped" {
            return;
        }
        assert!(Instant::now() < deadline, "{id} still {}", state["status"]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_checkpointed_process_carries_on_after_restore() {
    let s = Scratch::new("ticker");
    let ticker = guest_bin("ticker");
    let bundle = s.bundle(&[ticker.to_str().expect("utf-8")]);
    let bundle = bundle.to_str().expect("utf-8");
    let before = s.dir.join("before.out");
    let (code, err) = s.runsc(&["create", "--bundle", bundle, "ticker-a"], Some(&before));
    assert_eq!(code, 0, "create: {err}");
    let (code, err) = s.runsc(&["start", "ticker-a"], None);
    assert_eq!(code, 0, "start: {err}");
    wait_ticks(&before, 3);

    let image = s.dir.join("image");
    let image_arg = image.to_str().expect("utf-8");
    let (code, err) = s.runsc(&["checkpoint", "--image-path", image_arg, "ticker-a"], None);
    assert_eq!(code, 0, "checkpoint: {err}");
    for f in ["manifest.json", "memory.img", "kernel.state"] {
        assert!(image.join(f).is_file(), "the image has no {f}");
    }
    // Without --leave-running the container stops with the checkpoint.
    wait_stopped(&s, "ticker-a");
    let last = *ticks(&before).last().expect("ticks before the checkpoint");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        ticks(&before).last(),
        Some(&last),
        "the process went on after the checkpoint stopped it"
    );
    let (code, err) = s.runsc(&["delete", "ticker-a"], None);
    assert_eq!(code, 0, "delete: {err}");
    let before = *tick_lines(&before).last().expect("a tick");
    // Time passes between the checkpoint and the restore.
    std::thread::sleep(Duration::from_millis(500));

    let after = s.dir.join("after.out");
    let (code, err) = s.runsc(
        &[
            "restore",
            "--image-path",
            image_arg,
            "--bundle",
            bundle,
            "--detach",
            "ticker-b",
        ],
        Some(&after),
    );
    assert_eq!(code, 0, "restore: {err}");
    let t = wait_ticks(&after, 3);
    assert_eq!(
        t[..3],
        [last + 1, last + 2, last + 3],
        "the restored counter must go on from {last}"
    );
    // The clocks went on: monotonic time saw the pause (same host), real time is the host's.
    let first = tick_lines(&after)[0];
    assert!(
        first.mono >= before.mono + 500,
        "CLOCK_MONOTONIC went from {} to {} across a 500 ms pause",
        before.mono,
        first.mono
    );
    assert!(
        (first.real - now_ms()).abs() < 10_000,
        "CLOCK_REALTIME {} is not the host's {}",
        first.real,
        now_ms()
    );
    let (code, err) = s.runsc(&["kill", "ticker-b", "KILL"], None);
    assert_eq!(code, 0, "kill: {err}");
}

/// Copy image directory `from` to `to` (its files only).
fn copy_image(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("image copy");
    for f in ["manifest.json", "memory.img", "kernel.state"] {
        let status = Command::new("cp")
            .arg("--sparse=always")
            .arg(from.join(f))
            .arg(to.join(f))
            .status()
            .expect("cp");
        assert!(status.success(), "copying {f}");
    }
}

#[test]
fn a_damaged_image_is_refused_naming_the_problem() {
    let s = Scratch::new("damaged");
    let ticker = guest_bin("ticker");
    let bundle = s.bundle(&[ticker.to_str().expect("utf-8")]);
    let bundle = bundle.to_str().expect("utf-8");
    let out = s.dir.join("out");
    let (code, err) = s.runsc(&["create", "--bundle", bundle, "ticker-a"], Some(&out));
    assert_eq!(code, 0, "create: {err}");
    let (code, err) = s.runsc(&["start", "ticker-a"], None);
    assert_eq!(code, 0, "start: {err}");
    wait_ticks(&out, 2);
    let image = s.dir.join("image");
    let (code, err) = s.runsc(
        &[
            "checkpoint",
            "--leave-running",
            "--image-path",
            image.to_str().expect("utf-8"),
            "ticker-a",
        ],
        None,
    );
    assert_eq!(code, 0, "checkpoint: {err}");
    // --leave-running: the container goes on.
    let n = ticks(&out).len();
    wait_ticks(&out, n + 2);

    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 4] = [
        (
            "one byte of memory.img",
            |dir| {
                // A byte of the first page with data (the image is sparse: find one).
                let mem = std::fs::read(dir.join("memory.img")).expect("memory.img");
                let at = mem.iter().position(|b| *b != 0).expect("some data");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("memory.img"))
                    .expect("open memory.img");
                use std::os::unix::fs::FileExt as _;
                f.write_all_at(&[mem[at] ^ 0x5a], at as u64).expect("write");
                std::io::Write::flush(&mut f).expect("flush");
            },
            "memory.img",
        ),
        (
            "kernel.state truncated",
            |dir| {
                let path = dir.join("kernel.state");
                let len = std::fs::metadata(&path).expect("kernel.state").len();
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open kernel.state");
                f.set_len(len / 2).expect("truncate");
            },
            "kernel.state",
        ),
        (
            "another format version",
            |dir| {
                let path = dir.join("manifest.json");
                let text = std::fs::read_to_string(&path).expect("manifest");
                let text = text.replacen("\"format_version\": 1", "\"format_version\": 99", 1);
                assert!(text.contains("99"), "the manifest names its format version");
                std::fs::write(&path, text).expect("manifest");
            },
            "format version 99",
        ),
        (
            "memory.img missing",
            |dir| std::fs::remove_file(dir.join("memory.img")).expect("rm"),
            "memory.img",
        ),
    ];
    for (i, (what, damage, named)) in cases.into_iter().enumerate() {
        let copy = s.dir.join(format!("damaged-{i}"));
        copy_image(&image, &copy);
        damage(&copy);
        let id = format!("ticker-bad{i}");
        let (code, err) = s.runsc(
            &[
                "restore",
                "--image-path",
                copy.to_str().expect("utf-8"),
                "--bundle",
                bundle,
                "--detach",
                &id,
            ],
            None,
        );
        assert_ne!(code, 0, "{what}: restore must fail");
        assert!(
            err.contains(named),
            "{what}: the error must name {named:?}: {err}"
        );
        assert!(
            !s.root.join(&id).exists(),
            "{what}: a refused restore leaves no container"
        );
    }
}

//! `runsc kill ID KILL` of a Node HTTP server ends its container promptly, round after
//! round, with the host's CPUs busy. The SIGKILL wakes every Node thread at once; one takes
//! it and ends the group, and the others (the main thread in epoll_wait above all) must
//! not lose that end while they look for a signal of their own: they would go back to
//! sleep until Node's next timer (up to 30 s) and the container would not stop (the
//! pod-start benchmark's "did not exit within 10s of SIGKILL"). Before the fix this hit
//! about one round in 1 to 50 under load.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nanovisor_tests::{runsc, NODE};

const ROUNDS: usize = 30;
/// A healthy kill takes milliseconds; a lost wake-up waits for Node's next timer.
const LIMIT: Duration = Duration::from_secs(5);
const SERVER: &str = "require('http').createServer((q, r) => r.end('hello'))\
    .listen(8080, () => console.log('listening on 8080'))";

struct Scratch(PathBuf);

impl Scratch {
    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    fn runsc(&self, args: &[&str]) -> Output {
        Command::new(runsc())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running runsc")
    }

    fn status(&self, id: &str) -> String {
        let out = self.runsc(&["state", id]);
        if !out.status.success() {
            return "gone".into();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
        v["status"].as_str().unwrap_or("?").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.root()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.runsc(&["delete", "--force", &id]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Busy host threads (as many as CPUs) until dropped: preemption in the sentry's
/// bookkeeping is what opens the window.
struct Load(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Load(stop, threads)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn sigkill_stops_a_node_server_every_time() {
    if !std::path::Path::new(NODE).is_file() {
        eprintln!("skipped: no {NODE} on this host");
        return;
    }
    // Short: the control socket's path under it must fit in sun_path.
    let s = Scratch(PathBuf::from(format!(
        "/tmp/nv-killnode-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&s.0);
    let bundle = s.0.join("bundle");
    std::fs::create_dir_all(&bundle).expect("creating the bundle");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [NODE, "-e", SERVER],
            "env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root"],
            "cwd": "/",
        },
        "root": {"path": "/", "readonly": true},
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
    let bundle = bundle.to_str().expect("utf-8 path");
    let _load = Load::start();
    for round in 0..ROUNDS {
        let id = format!("k{round}");
        let out_path = s.0.join(format!("{id}.out"));
        let out = std::fs::File::create(&out_path).expect("output file");
        let created = Command::new(runsc())
            .arg("--root")
            .arg(s.root())
            .args(["create", "--bundle", bundle, &id])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .status()
            .expect("running runsc create");
        assert!(created.success(), "runsc create {id} failed");
        assert!(s.runsc(&["start", &id]).status.success(), "start {id}");
        let ready = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("listening")
        {
            assert!(
                Instant::now() < ready,
                "round {round}: the server never listened"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        assert!(
            s.runsc(&["kill", &id, "KILL"]).status.success(),
            "kill {id}"
        );
        loop {
            let status = s.status(&id);
            if status == "stopped" || status == "gone" {
                break;
            }
            assert!(
                start.elapsed() < LIMIT,
                "round {round}: the container was still {status} {:?} after SIGKILL",
                start.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = s.runsc(&["delete", "--force", &id]);
    }
}

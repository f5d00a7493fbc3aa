//! A Node HTTP server checkpointed after some requests, restored once and then twenty
//! times at once from the same image: each restored server answers, with the counter
//! it had at the checkpoint, and counts on its own from there. Requests come from a
//! Node client run in the sandbox (`runsc exec`) over its loopback.
//!
//! Needs root, KVM and node.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nanovisor_tests::{runsc, workspace_root};

const PORT: &str = "8080";
const RESTORES: usize = 20;

struct Scratch {
    dir: PathBuf,
    root: PathBuf,
    ids: std::sync::Mutex<Vec<String>>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch::new_tagged("counter")
    }

    fn new_tagged(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nv-ckpt-node-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch {
            root: dir.join("root"),
            dir,
            ids: Default::default(),
        }
    }

    fn bundle(&self) -> PathBuf {
        let bundle = self.dir.join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle");
        let script = workspace_root().join("tests/node/counter_server.js");
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                        "args": ["node", script, PORT],
                        "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
            "root": {"path": "/", "readonly": true},
            "linux": {"resources": {"memory": {"limit": 512 << 20}}},
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
        bundle
    }

    /// Run runsc with stdout to `out`; its exit code, stdout (if not sent to a file)
    /// and stderr (through a file: a sandbox process keeps create's).
    fn runsc(&self, args: &[&str], out: Option<&Path>) -> (i32, String, String) {
        self.runsc_with(args, out, &[])
    }

    fn runsc_with(
        &self,
        args: &[&str],
        out: Option<&Path>,
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let tag = format!("{}-{}", args[0], args.last().unwrap_or(&"")).replace('/', "_");
        let err_path = self.dir.join(format!("stderr-{tag}"));
        let out_path = out
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.join(format!("stdout-{tag}")));
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let stdout = std::fs::File::create(&out_path).expect("stdout file");
        if matches!(args[0], "create" | "restore") && args.len() > 1 {
            self.ids
                .lock()
                .expect("ids")
                .push(args.last().expect("id").to_string());
        }
        let status = Command::new(runsc())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(err)
            .status()
            .expect("running runsc");
        (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default(),
        )
    }

    /// As [`Scratch::runsc`] with stdout to a file of its own, and extra environment
    /// variables.
    fn runsc_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        self.runsc_with(args, None, env)
    }

    /// GET / from inside container `id`: the status line and body.
    fn get(&self, id: &str) -> String {
        let client = workspace_root().join("tests/node/http_get.js");
        let client = client.to_str().expect("utf-8");
        let (code, out, err) = self.runsc(&["exec", id, "node", client, PORT], None);
        assert_eq!(code, 0, "GET in {id}: {err}");
        out.trim().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let ids = self.ids.lock().map(|v| v.clone()).unwrap_or_default();
        for id in ids {
            let _ = self.runsc(&["delete", "--force", &id], None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {} after 60 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_restored_node_server_keeps_its_state_and_each_copy_counts_on_its_own() {
    let s = Scratch::new();
    let bundle = s.bundle();
    let bundle = bundle.to_str().expect("utf-8");
    let out = s.dir.join("server.out");
    let (code, _, err) = s.runsc(&["create", "--bundle", bundle, "node-a"], Some(&out));
    assert_eq!(code, 0, "create: {err}");
    let (code, _, err) = s.runsc(&["start", "node-a"], None);
    assert_eq!(code, 0, "start: {err}");
    wait_for(&out, "ready");
    for n in 1..=3 {
        assert_eq!(s.get("node-a"), format!("200 {n}"));
    }
    let image = s.dir.join("image");
    let image = image.to_str().expect("utf-8");
    let (code, _, err) = s.runsc(&["checkpoint", "--image-path", image, "node-a"], None);
    assert_eq!(code, 0, "checkpoint: {err}");

    // One restore: the counter is where it was.
    let (code, _, err) = s.runsc(
        &[
            "restore",
            "--image-path",
            image,
            "--bundle",
            bundle,
            "--detach",
            "node-b",
        ],
        None,
    );
    assert_eq!(code, 0, "restore: {err}");
    assert_eq!(
        s.get("node-b"),
        "200 4",
        "the first request after the restore"
    );
    assert_eq!(s.get("node-b"), "200 5");

    // Twenty at once from the same image: each answers, each from 4 on its own.
    let ids: Vec<String> = (0..RESTORES).map(|i| format!("node-r{i}")).collect();
    std::thread::scope(|scope| {
        for id in &ids {
            let s = &s;
            scope.spawn(move || {
                let (code, _, err) = s.runsc(
                    &[
                        "restore",
                        "--image-path",
                        image,
                        "--bundle",
                        bundle,
                        "--detach",
                        id,
                    ],
                    None,
                );
                assert_eq!(code, 0, "restore {id}: {err}");
            });
        }
    });
    for (i, id) in ids.iter().enumerate() {
        // A different number of requests to each, so their counts part ways.
        for n in 0..=(i % 3) {
            assert_eq!(s.get(id), format!("200 {}", 4 + n), "restored copy {id}");
        }
    }
    // The first restored copy is unaffected by the others.
    assert_eq!(s.get("node-b"), "200 6");
}

/// GET `path` from inside container `id`, through `s`.
fn get_path(s: &Scratch, id: &str, path: &str) -> String {
    let client = s.dir.join("get_path.js");
    std::fs::write(
        &client,
        format!(
            "require('http').get('http://127.0.0.1:{PORT}{path}', (r) => {{ let b = ''; \
             r.on('data', (d) => (b += d)); r.on('end', () => process.stdout.write(b)); }})\
             .on('error', (e) => {{ console.error(e.message); process.exit(1); }});"
        ),
    )
    .expect("client script");
    let (code, out, err) = s.runsc(&["exec", id, "node", client.to_str().expect("utf-8")], None);
    assert_eq!(code, 0, "GET {path} in {id}: {err}");
    out.trim().to_string()
}

/// `runsc image build -o DIR/images READY… --timeout 120 -- node SCRIPT PORT`: the image's
/// path and the build's stderr (its progress).
fn build_image(s: &Scratch, ready: &[&str], script: &Path) -> (String, String) {
    let images = s.dir.join("images");
    let out = s.dir.join("build.out");
    let mut args = vec!["image", "build", "-o", images.to_str().expect("utf-8")];
    args.extend_from_slice(ready);
    args.extend_from_slice(&["--timeout", "120", "--", "node"]);
    args.extend_from_slice(&[script.to_str().expect("utf-8"), PORT]);
    let (code, _, err) = s.runsc(&args, Some(&out));
    assert_eq!(code, 0, "image build: {err}");
    let image = std::fs::read_to_string(&out).expect("build output");
    (image.trim().to_string(), err)
}

#[test]
fn a_busy_thread_pool_resumes_and_an_idle_connection_is_reset() {
    let s = Scratch::new_tagged("pool");
    let script = workspace_root().join("tests/node/pool_server.js");
    // Built with the image builder: boot, wait for the marker, checkpoint.
    let (image, _) = build_image(&s, &["--ready-marker", "ready"], &script);
    let image = image.as_str();
    assert!(
        Path::new(image)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sha256-")),
        "the image is stored content-addressed: {image}"
    );
    let bundle = s.bundle();
    let bundle = bundle.to_str().expect("utf-8");
    let (code, _, err) = s.runsc(
        &[
            "restore",
            "--image-path",
            image,
            "--bundle",
            bundle,
            "--detach",
            "pool-a",
        ],
        None,
    );
    assert_eq!(code, 0, "restore: {err}");
    // The pool's threads were waiting in futex_wait: they take work again.
    assert_eq!(
        get_path(&s, "pool-a", "/work"),
        "work 2a6a4f0832d046838f4a22cbadc94dff"
    );
    // The connection the server had open to itself came back reset.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let idle = get_path(&s, "pool-a", "/idle");
        if idle == "idle error ECONNRESET" {
            break;
        }
        assert!(
            Instant::now() < deadline && idle == "idle open",
            "the idle connection after the restore: {idle}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        get_path(&s, "pool-a", "/work"),
        "work 2a6a4f0832d046838f4a22cbadc94dff"
    );
}

/// `runsc image build --ready-port` sends warm-up requests before it checkpoints (over the
/// veth of the namespace it makes for a `-- CMD` app): the counter server restored from
/// the image has served them, so its next answer is one more than their number. The last
/// three were served by a restore of a first checkpoint, recording the image's working
/// set: a restore prefaults those pages (and only with `--working-set prefault`).
#[test]
fn warm_up_requests_are_served_before_the_checkpoint() {
    let s = Scratch::new_tagged("warm");
    let script = workspace_root().join("tests/node/counter_server.js");
    let (image, err) = build_image(&s, &["--ready-port", PORT, "--warm-up", "7"], &script);
    assert!(
        err.contains("warmed up: 4 requests, 4 answered 2xx")
            && err.contains("working set recorded: 3 requests, 3 answered 2xx"),
        "the build's progress does not report the warm-up and the recording: {err}"
    );
    let bundle = s.bundle();
    let restore = |id: &str, working_set: &str| {
        let (code, _, err) = s.runsc_env(
            &[
                "restore",
                "--image-path",
                &image,
                "--working-set",
                working_set,
                "--bundle",
                bundle.to_str().expect("utf-8"),
                "--detach",
                id,
            ],
            &[("RUST_LOG", "sentry::platform::kvm::working_set=debug")],
        );
        assert_eq!(code, 0, "restore: {err}");
        assert_eq!(get_path(&s, id, "/"), "8");
        prefaulted_pages(&s, id)
    };
    // A Node server's first request touches a thousand pages or two; a record that is
    // every present page would be ten thousand.
    let pages = restore("warm-a", "prefault");
    assert!(
        pages.is_some_and(|n| (100..6000).contains(&n)),
        "prefaulted pages of the recorded working set: {pages:?}"
    );
    assert_eq!(restore("warm-b", "ignore"), None);
}

/// The pages sandbox `id` prefaulted, from its log: None if it reported none (it reports
/// once the thread doing it is done, well within the first request).
fn prefaulted_pages(s: &Scratch, id: &str) -> Option<u64> {
    let log = s.root.join(id).join("boot.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("working set prefaulted"))?;
    let pages = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pages="))?;
    pages.parse().ok()
}

//! `runsc image push` and `runsc image pull` against a real registry: Debian's
//! `docker-registry` on a free loopback port (plain HTTP, as every loopback registry gets).
//!
//! 1. An image written with `checkpoints::ImageWriter` (64 MiB of guest memory, a few data
//!    pages) goes up and comes back byte for byte, memory.img sparse again; the registry holds
//!    it in the documented layout; a second push of it uploads nothing and names the same
//!    manifest; a pull by digest works; a pull into a non-empty directory or of a missing tag
//!    is refused.
//! 2. An artifact whose memory layer does not match its manifest.json (pushed with the
//!    library, since `runsc image push` refuses such an image) is refused on pull, naming
//!    memory.img, and leaves nothing behind.
//! 3. A real checkpoint (needs root and KVM) pushed and pulled into an empty directory
//!    restores, and its process carries on.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use checkpoints::registry::{self, Access, Artifact, Registry as Client, Transport};
use checkpoints::{Image, ImageWriter, PAGE_SIZE};
use nanovisor_tests::oci::{runsc_at, wait_ticks};
use nanovisor_tests::registry::Registry;
use nanovisor_tests::{guest_bin, runsc, strip_ansi};

/// The sentry version runsc writes and reads images for (the workspace version).
const SENTRY: &str = env!("CARGO_PKG_VERSION");
const GUEST: u64 = 64 << 20;

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nv-imgreg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_registry(s: &Scratch) -> Registry {
    assert!(
        Registry::available(),
        "this test needs Debian's docker-registry (apt-get install docker-registry)"
    );
    Registry::start(&s.path("registry"))
}

/// `runsc image ARGS…`: exit code, stdout, stderr.
fn image(args: &[&str]) -> (i32, String, String) {
    image_logged(args, "warn")
}

/// `runsc image ARGS…` logging at `level` on stderr.
fn image_logged(args: &[&str], level: &str) -> (i32, String, String) {
    let out = Command::new(runsc())
        .env("RUST_LOG", level)
        .arg("image")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running runsc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Guest memory with data in a few pages (first, middle, last) and zeros elsewhere.
fn sample_memory() -> Vec<u8> {
    let mut mem = vec![0u8; GUEST as usize];
    for (n, page) in [0u64, 1, 4097, 9000, GUEST / PAGE_SIZE - 1]
        .into_iter()
        .enumerate()
    {
        let at = (page * PAGE_SIZE) as usize;
        for (i, b) in mem[at..at + PAGE_SIZE as usize].iter_mut().enumerate() {
            *b = (i * 31 + n) as u8 | 1;
        }
    }
    mem
}

fn sample_kernel_state() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn write_image(dir: &Path) -> checkpoints::WrittenImage {
    let mut w = ImageWriter::create(dir, SENTRY, GUEST).expect("image writer");
    w.set_source("command", "image_registry test");
    w.write_memory(&sample_memory()).expect("memory");
    w.write_kernel_state(&sample_kernel_state())
        .expect("kernel state");
    w.finish().expect("finish")
}

/// The raw manifest the registry serves for `repo:tag`, asked for as an OCI manifest.
fn registry_manifest(addr: &str, repo: &str, tag: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).expect("connect to the registry");
    write!(
        stream,
        "GET /v2/{repo}/manifests/{tag} HTTP/1.0\r\nHost: {addr}\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).expect("manifest JSON")
}

/// Names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_image_goes_up_and_comes_back_the_same() {
    let scratch = Scratch::new("roundtrip");
    let reg = start_registry(&scratch);
    let original = scratch.path("original");
    let written = write_image(&original);
    let reference = format!("{}/apps/hello:v1", reg.addr);

    let t = Instant::now();
    let (code, out, err) = image_logged(&["push", s(&original), &reference], "info");
    let push_time = t.elapsed();
    assert_eq!(code, 0, "push: {err}\n{}", reg.log_tail(20));
    assert!(err.contains("uploaded=3"), "first push: {err}");
    let pinned_prefix = format!("{reference}@sha256:");
    assert!(out.starts_with(&pinned_prefix), "push printed {out:?}");
    let pinned = out.clone();

    // The registry holds the documented layout.
    let m = registry_manifest(&reg.addr, "apps/hello", "v1");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], "application/vnd.nanovisor.checkpoint.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.nanovisor.checkpoint.manifest.v1+json"
    );
    assert_eq!(m["config"]["digest"], written.digest.to_string());
    let layers = m["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "{m}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.nanovisor.checkpoint.memory.v1+zstd"
    );
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.nanovisor.checkpoint.kernel-state.v1+zstd"
    );
    assert_eq!(
        m["annotations"]["dev.nanovisor.checkpoint.digest"],
        written.digest.to_string()
    );
    assert!(m["annotations"]["org.opencontainers.image.created"].is_string());
    // 64 MiB of mostly holes compress to almost nothing.
    let memory_layer = layers[0]["size"].as_u64().expect("size");
    assert!(
        memory_layer < 256 << 10,
        "memory layer of {memory_layer} bytes"
    );

    // Pushing the same image again names the same manifest, and uploads nothing: the
    // registry has every blob (HEAD).
    let (code, again, err) = image_logged(&["push", s(&original), &reference], "info");
    assert_eq!(code, 0, "second push: {err}");
    assert_eq!(again, pinned);
    assert!(err.contains("uploaded=0"), "second push: {err}");

    // Pull into a directory that does not exist yet.
    let pulled = scratch.path("pulled");
    let t = Instant::now();
    let (code, out, err) = image(&["pull", &reference, s(&pulled)]);
    let pull_time = t.elapsed();
    assert_eq!(code, 0, "pull: {err}\n{}", reg.log_tail(20));
    assert_eq!(out, pinned, "pull prints the manifest it pulled");
    eprintln!(
        "64 MiB guest image: push {push_time:?}, pull {pull_time:?}, memory layer {memory_layer} bytes"
    );

    let image_opened = Image::open(&pulled, SENTRY).expect("the pulled image opens");
    assert_eq!(image_opened.digest(), &written.digest);
    for f in ["manifest.json", "kernel.state", "memory.img"] {
        let a = std::fs::read(original.join(f)).expect("original file");
        let b = std::fs::read(pulled.join(f)).expect("pulled file");
        assert!(a == b, "{f} differs after the round trip");
    }
    let meta = std::fs::metadata(pulled.join("memory.img")).expect("memory.img");
    assert_eq!(meta.len(), GUEST);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= 1 << 20,
        "memory.img is not sparse: {allocated} bytes allocated for 5 data pages"
    );
    // Only the image and the stamp of its own verification; no temporary directory.
    assert_eq!(
        entries(&pulled),
        [
            "kernel.state",
            "manifest.json",
            "memory.img",
            "memory.img.verified"
        ]
    );
    assert_eq!(entries(&scratch.0), ["original", "pulled", "registry"]);

    // By digest, into an existing empty directory.
    let by_digest = scratch.path("by-digest");
    std::fs::create_dir(&by_digest).expect("mkdir");
    let digest_ref = format!(
        "{}/apps/hello@{}",
        reg.addr,
        pinned.rsplit('@').next().expect("a digest")
    );
    let (code, _, err) = image(&["pull", &digest_ref, s(&by_digest)]);
    assert_eq!(code, 0, "pull by digest: {err}");
    Image::open(&by_digest, SENTRY).expect("opens");

    // A non-empty destination is refused before anything is fetched.
    let (code, _, err) = image(&["pull", &reference, s(&pulled)]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists and is not empty"), "{err}");

    // A missing tag is an error naming the reference.
    let missing = format!("{}/apps/hello:nope", reg.addr);
    let nowhere = scratch.path("nowhere");
    let (code, _, err) = image(&["pull", &missing, s(&nowhere)]);
    assert_ne!(code, 0);
    assert!(
        err.contains("apps/hello:nope") && err.contains("404"),
        "{err}"
    );
    assert!(!nowhere.exists());

    // A reference with a digest is no place to push to.
    let (code, _, err) = image(&["push", s(&original), &digest_ref]);
    assert_ne!(code, 0);
    assert!(err.contains("not a digest"), "{err}");
}

#[test]
fn a_tampered_artifact_is_refused_and_leaves_nothing() {
    let scratch = Scratch::new("tampered");
    let reg = start_registry(&scratch);
    let original = scratch.path("original");
    write_image(&original);
    let manifest = std::fs::read(original.join("manifest.json")).expect("manifest.json");
    let mut memory = sample_memory();
    memory[9000 * PAGE_SIZE as usize + 17] ^= 0x40;
    let reference = format!("{}/apps/tampered:v1", reg.addr);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let artifact = Artifact::from_parts(
            manifest,
            memory.as_slice(),
            sample_kernel_state().as_slice(),
        )
        .expect("artifact");
        let client = Client::connect(&reference, Transport::Auto, Access::Push)
            .await
            .expect("connect");
        registry::push(&client, &artifact).await.expect("push");
    });

    let dest = scratch.path("dest");
    let (code, _, err) = image(&["pull", &reference, s(&dest)]);
    assert_ne!(code, 0, "a tampered artifact must be refused");
    assert!(
        err.contains("does not match its manifest.json") && err.contains("memory.img"),
        "the refusal must say what does not match: {err}"
    );
    assert!(!dest.exists(), "a refused pull leaves no directory");
    assert_eq!(
        entries(&scratch.0),
        ["original", "registry"],
        "no temporary directory is left"
    );
}

/// Deletes the test's containers whatever happens.
struct Containers<'a> {
    root: &'a Path,
    dir: &'a Path,
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        for id in ["imgreg-a", "imgreg-b"] {
            let _ = runsc_at(self.root, self.dir, &["delete", "--force", id], None);
        }
    }
}

#[test]
fn a_pulled_checkpoint_restores() {
    let scratch = Scratch::new("restore");
    let reg = start_registry(&scratch);
    let root = scratch.path("root");
    let _containers = Containers {
        root: &root,
        dir: &scratch.0,
    };
    let ticker = guest_bin("ticker");
    let bundle = scratch.path("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                    "args": [s(&ticker)], "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
        "root": {"path": "/", "readonly": true},
        "linux": {"resources": {"memory": {"limit": 256 << 20}}},
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");

    let before = scratch.path("before.out");
    let run = |args: &[&str], out: Option<&Path>| runsc_at(&root, &scratch.0, args, out);
    let (code, err) = run(
        &["create", "--bundle", s(&bundle), "imgreg-a"],
        Some(&before),
    );
    assert_eq!(code, 0, "create: {err}");
    let (code, err) = run(&["start", "imgreg-a"], None);
    assert_eq!(code, 0, "start: {err}");
    wait_ticks(&before, 3);
    let checkpoint = scratch.path("checkpoint");
    let (code, err) = run(
        &["checkpoint", "--image-path", s(&checkpoint), "imgreg-a"],
        None,
    );
    assert_eq!(code, 0, "checkpoint: {err}");
    let (code, err) = run(&["delete", "--force", "imgreg-a"], None);
    assert_eq!(code, 0, "delete: {err}");
    let last = *wait_ticks(&before, 3).last().expect("ticks");

    let reference = format!("{}/apps/ticker:v1", reg.addr);
    let t = Instant::now();
    let (code, _, err) = image(&["push", s(&checkpoint), &reference]);
    assert_eq!(code, 0, "push: {err}");
    let push_time = t.elapsed();
    let pulled = scratch.path("pulled");
    let t = Instant::now();
    let (code, _, err) = image(&["pull", &reference, s(&pulled)]);
    assert_eq!(code, 0, "pull: {err}");
    let pull_time = t.elapsed();
    let size = std::fs::metadata(pulled.join("memory.img"))
        .expect("memory.img")
        .len();
    eprintln!("checkpoint of {size} bytes of guest memory: push {push_time:?}, pull {pull_time:?}");

    let after = scratch.path("after.out");
    let (code, err) = run(
        &[
            "restore",
            "--image-path",
            s(&pulled),
            "--bundle",
            s(&bundle),
            "--detach",
            "imgreg-b",
        ],
        Some(&after),
    );
    assert_eq!(code, 0, "restore from the pulled image: {err}");
    let ticks = wait_ticks(&after, 3);
    assert_eq!(
        ticks[..3],
        [last + 1, last + 2, last + 3],
        "the restored ticker must go on from {last}"
    );
    let (code, err) = run(&["kill", "imgreg-b", "KILL"], None);
    assert_eq!(code, 0, "kill: {err}");
}

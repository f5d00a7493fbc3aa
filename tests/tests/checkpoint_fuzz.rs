//! A tampered checkpoint image is refused, never a crash, a hang or a half-restored sandbox.
//!
//! Images are not signed: whoever can write an image directory can write a `kernel.state`
//! and a manifest whose digests match it. So this test checkpoints one real sandbox (a
//! process tree with threads, pipes, a file, a mapping and a timer: `tests/guest/ckpt_state.c`),
//! then restores a few hundred deterministic mutations of its `kernel.state` with the
//! manifest rewritten to match, so every mutation gets past the integrity checks to the
//! decoder and the rebuild. Each restore must either fail with an error and no panic, leaving
//! no container and no sandbox process behind, or succeed (a harmless mutation) and then be
//! deleted. A restore that takes longer than [`RESTORE_TIMEOUT`] is killed and fails the test.
//!
//! A restored sandbox is given 100 ms to run, and its log must show no panic either: a
//! damaged frame number that the rebuild lets through shows only once the guest runs.
//!
//! The mutations are seeded (`NV_CKPT_FUZZ_SEED`, `NV_CKPT_FUZZ_COUNT` override the defaults;
//! `NV_CKPT_FUZZ_VERBOSE` prints each refusal) so a failure names a case that can be
//! replayed. The default 600 take ~55 s on a 2-core machine (~90 ms a case). Needs root and
//! KVM.
//!
//! Known, not a tampering problem: the restored guest's init dies of SIGALRM soon after the
//! restore, because `execve` gives the task a new signal-action table and leaves the thread
//! group's (which the checkpoint saves) behind, so handlers installed after `execve` are lost.
//! This test does not depend on the guest living on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checkpoints::{Digest, FileEntry, Manifest};
use nanovisor_tests::oci::runsc_at;
use nanovisor_tests::{guest_bin, runsc};

/// How long one restore may take before it counts as a hang.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(20);
/// Mutations per run by default: sized to keep the binary under ~60 s on 2 cores.
const DEFAULT_COUNT: u64 = 600;
const DEFAULT_SEED: u64 = 0x6e76_636b_7074_0001;

/// xorshift64*: deterministic, good enough to pick offsets and bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The ways a state is damaged; each mutation applies one.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    /// Flip 1..=8 random bits.
    FlipBits,
    /// Overwrite 1..=4 random bytes with random values.
    RandomBytes,
    /// Overwrite a run of 1..=10 bytes with 0xff: a varint that never ends or decodes huge.
    FfRun,
    /// Set a byte to a small value (0..=4): lengths and enum tags that still decode.
    SmallByte,
    /// Cut the state at a random length.
    Truncate,
    /// Repeat a random span of 1..=64 bytes in place.
    DuplicateSpan,
    /// Delete a random span of 1..=64 bytes.
    DeleteSpan,
    /// Replace a varint (postcard's encoding of every integer, length and id) by one copied
    /// from elsewhere in the state: ids, frames and sizes swapped for other plausible ones.
    SpliceVarint,
    /// Replace a varint by a small value or a page-aligned one below 4 MiB: a frame, id or
    /// length that is in range but wrong.
    PlausibleVarint,
}

const MUTATIONS: [Mutation; 9] = [
    Mutation::FlipBits,
    Mutation::RandomBytes,
    Mutation::FfRun,
    Mutation::SmallByte,
    Mutation::Truncate,
    Mutation::DuplicateSpan,
    Mutation::DeleteSpan,
    Mutation::SpliceVarint,
    Mutation::PlausibleVarint,
];

/// The end of the varint that starts at `i`: just past its first byte below 0x80.
fn varint_end(s: &[u8], i: usize) -> usize {
    let mut e = i;
    while e < s.len() && e - i < 10 && s[e] & 0x80 != 0 {
        e += 1;
    }
    (e + 1).min(s.len())
}

/// A random offset (not the version's) that starts a varint as far as one can tell: the
/// byte before it ends one.
fn varint_start(s: &[u8], rng: &mut Rng) -> usize {
    loop {
        let i = 1 + rng.below(s.len() - 1);
        if s[i - 1] & 0x80 == 0 {
            return i;
        }
    }
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// `state` damaged by `m`; the description says where, for the failure message.
fn mutate(state: &[u8], m: Mutation, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut s = state.to_vec();
    let len = s.len();
    // Skip the leading version byte most of the time: a wrong version is one known refusal.
    let at = |rng: &mut Rng| 1 + rng.below(len - 1);
    let what = match m {
        Mutation::FlipBits => {
            let n = 1 + rng.below(8);
            let mut where_ = Vec::new();
            for _ in 0..n {
                let i = at(rng);
                let bit = rng.below(8);
                s[i] ^= 1 << bit;
                where_.push(format!("{i}.{bit}"));
            }
            format!("bits flipped at {}", where_.join(","))
        }
        Mutation::RandomBytes => {
            let n = 1 + rng.below(4);
            let mut where_ = Vec::new();
            for _ in 0..n {
                let i = at(rng);
                s[i] = rng.next() as u8;
                where_.push(format!("{i}={:#04x}", s[i]));
            }
            format!("bytes set {}", where_.join(","))
        }
        Mutation::FfRun => {
            let i = at(rng);
            let n = (1 + rng.below(10)).min(len - i);
            s[i..i + n].fill(0xff);
            format!("{n} bytes of 0xff at {i}")
        }
        Mutation::SmallByte => {
            let i = at(rng);
            s[i] = rng.below(5) as u8;
            format!("byte {i} set to {}", s[i])
        }
        Mutation::Truncate => {
            let n = rng.below(len);
            s.truncate(n);
            format!("cut to {n} of {len} bytes")
        }
        Mutation::DuplicateSpan => {
            let i = at(rng);
            let n = (1 + rng.below(64)).min(len - i);
            let span = s[i..i + n].to_vec();
            s.splice(i..i, span);
            format!("{n} bytes at {i} repeated")
        }
        Mutation::SpliceVarint => {
            let i = varint_start(&s, rng);
            let j = varint_start(&s, rng);
            let from = s[j..varint_end(&s, j)].to_vec();
            let end = varint_end(&s, i);
            s.splice(i..end, from.iter().copied());
            format!("varint at {i} replaced by the one at {j} ({from:02x?})")
        }
        Mutation::PlausibleVarint => {
            let i = varint_start(&s, rng);
            let v = if rng.below(2) == 0 {
                rng.below(9) as u64
            } else {
                rng.below(1024) as u64 * 4096
            };
            let end = varint_end(&s, i);
            s.splice(i..end, leb128(v));
            format!("varint at {i} set to {v:#x}")
        }
        Mutation::DeleteSpan => {
            let i = at(rng);
            let n = (1 + rng.below(64)).min(len - i);
            s.drain(i..i + n);
            format!("{n} bytes at {i} deleted")
        }
    };
    (s, format!("{m:?}: {what}"))
}

struct Scratch {
    dir: PathBuf,
    root: PathBuf,
    /// Container ids this test may have left; deleted on drop.
    ids: std::cell::RefCell<Vec<String>>,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("nv-ckpt-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch {
            root: dir.join("root"),
            dir,
            ids: Default::default(),
        }
    }

    fn bundle(&self, args: &[&str]) -> PathBuf {
        let bundle = self.dir.join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle");
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                        "args": args, "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
            "root": {"path": "/", "readonly": true},
            "linux": {"resources": {"memory": {"limit": 128 << 20}}},
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
        bundle
    }

    fn runsc(&self, args: &[&str], out: Option<&Path>) -> (i32, String) {
        runsc_at(&self.root, &self.dir, args, out)
    }

    fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_owned());
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.runsc(&["delete", "--force", id], None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wait for `line` in the file at `path` (10 s at most).
fn wait_line(path: &Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|l| l == line)
    {
        assert!(
            Instant::now() < deadline,
            "no {line:?} after 10 s in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of host processes whose command line mentions `id`.
fn processes_naming(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == id.as_bytes()) {
            found.push(name);
        }
    }
    found
}

/// Write `state` as the image's kernel.state and make the manifest vouch for it.
fn install_state(image: &Path, manifest: &Manifest, state: &[u8]) {
    let mut m = manifest.clone();
    m.files.kernel_state = FileEntry {
        size: state.len() as u64,
        sha256: Digest::of(state),
    };
    std::fs::write(image.join("kernel.state"), state).expect("kernel.state");
    std::fs::write(image.join("manifest.json"), m.encode().expect("manifest")).expect("manifest");
}

/// How one restore went.
enum Outcome {
    Refused(String),
    Restored,
}

/// `runsc restore --detach` of `image` as `id`, killed after [`RESTORE_TIMEOUT`].
fn restore(s: &Scratch, image: &Path, bundle: &str, id: &str, case: &str) -> Outcome {
    let log = s.dir.join("restore.log");
    let _ = std::fs::remove_file(&log);
    let err_path = s.dir.join("restore.err");
    s.track(id);
    let mut child = Command::new(runsc())
        .arg("--root")
        .arg(&s.root)
        .arg("--log")
        .arg(&log)
        .args(["restore", "--image-path"])
        .arg(image)
        .args(["--bundle", bundle, "--detach", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A file, not a pipe: a restored sandbox keeps runsc's stderr as its container's,
        // so a pipe would not reach its end while the guest runs.
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("running runsc restore");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for runsc") {
            break status;
        }
        if started.elapsed() > RESTORE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let _ = s.runsc(&["delete", "--force", id], None);
            panic!("{case}: restore still running after {RESTORE_TIMEOUT:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let boot_log = std::fs::read_to_string(s.root.join(id).join("boot.log")).unwrap_or_default();
    for (what, text) in [
        ("stderr", &err),
        ("--log", &log_text),
        ("boot.log", &boot_log),
    ] {
        assert!(
            !text.contains("panicked"),
            "{case}: a panic in runsc restore's {what}:\n{text}\nstderr:\n{err}"
        );
    }
    if status.success() {
        return Outcome::Restored;
    }
    assert!(
        !err.trim().is_empty(),
        "{case}: restore failed ({status}) without an error on stderr"
    );
    Outcome::Refused(err)
}

#[test]
fn a_tampered_kernel_state_is_refused_never_a_crash_or_a_hang() {
    let seed = std::env::var("NV_CKPT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let count = std::env::var("NV_CKPT_FUZZ_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_COUNT);
    let s = Scratch::new();
    let guest = guest_bin("ckpt_state");
    let bundle = s.bundle(&[guest.to_str().expect("utf-8")]);
    let bundle = bundle.to_str().expect("utf-8");

    // One real image of a process tree with something of each kind open.
    let out = s.dir.join("source.out");
    s.track("fz-source");
    let (code, err) = s.runsc(&["create", "--bundle", bundle, "fz-source"], Some(&out));
    assert_eq!(code, 0, "create: {err}");
    let (code, err) = s.runsc(&["start", "fz-source"], None);
    assert_eq!(code, 0, "start: {err}");
    wait_line(&out, "tick 3");
    let pristine = s.dir.join("pristine");
    let (code, err) = s.runsc(
        &[
            "checkpoint",
            "--image-path",
            pristine.to_str().expect("utf-8"),
            "fz-source",
        ],
        None,
    );
    assert_eq!(code, 0, "checkpoint: {err}");
    let _ = s.runsc(&["delete", "--force", "fz-source"], None);

    // One working copy, rewritten in place: memory.img never changes, so its verification
    // stamp stays valid and only the first restore hashes it.
    let image = s.dir.join("image");
    std::fs::create_dir_all(&image).expect("image dir");
    for f in ["manifest.json", "memory.img", "kernel.state"] {
        let status = Command::new("cp")
            .arg("--sparse=always")
            .arg(pristine.join(f))
            .arg(image.join(f))
            .status()
            .expect("cp");
        assert!(status.success(), "copying {f}");
    }
    let manifest = Manifest::decode(&std::fs::read(image.join("manifest.json")).expect("manifest"))
        .expect("the image's manifest");
    let state = std::fs::read(image.join("kernel.state")).expect("kernel.state");
    assert!(state.len() > 64, "a kernel state of {} bytes", state.len());

    // The unmutated state restores: the harness itself works.
    let pid = std::process::id();
    let id = format!("fz-{pid}-base");
    match restore(&s, &image, bundle, &id, "unmutated") {
        Outcome::Restored => {}
        Outcome::Refused(err) => panic!("the unmutated image is refused: {err}"),
    }
    // And runs on: its SIGALRM handler came back with it (a restored process once lost
    // the handlers it had set, and its next timer killed it).
    std::thread::sleep(Duration::from_millis(600));
    let status = Command::new(nanovisor_tests::runsc())
        .arg("--root")
        .arg(s.dir.join("root"))
        .args(["state", &id])
        .output()
        .expect("runsc state");
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("\"running\""),
        "the restored guest is not running 600 ms on: {status}"
    );
    let (code, err) = s.runsc(&["delete", "--force", &id], None);
    assert_eq!(code, 0, "delete --force of the unmutated restore: {err}");

    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let (mut refused, mut restored) = (0u64, 0u64);
    for i in 0..count {
        let m = MUTATIONS[rng.below(MUTATIONS.len())];
        let (mutated, what) = mutate(&state, m, &mut rng);
        if mutated == state {
            continue;
        }
        let case = format!("seed {seed:#x} case {i} ({what})");
        install_state(&image, &manifest, &mutated);
        let id = format!("fz-{pid}-{i}");
        match restore(&s, &image, bundle, &id, &case) {
            Outcome::Refused(err) => {
                refused += 1;
                if std::env::var_os("NV_CKPT_FUZZ_VERBOSE").is_some() {
                    eprintln!("{case}: {}", err.trim().replace('\n', " | "));
                }
                assert!(
                    !s.root.join(&id).exists(),
                    "{case}: a refused restore left its container behind"
                );
            }
            Outcome::Restored => {
                restored += 1;
                // Let the restored sandbox run a little: a damaged value the rebuild let
                // through must not crash the sentry once its threads go.
                std::thread::sleep(Duration::from_millis(100));
                let log = std::fs::read_to_string(s.dir.join("restore.log")).unwrap_or_default();
                assert!(
                    !log.contains("panicked"),
                    "{case}: the restored sandbox panicked:\n{log}"
                );
                let (code, err) = s.runsc(&["delete", "--force", &id], None);
                assert_eq!(code, 0, "{case}: delete --force after restore: {err}");
            }
        }
        // Nothing of the sandbox is left running either way.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_naming(&id);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{case}: processes {left:?} still run for container {id}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "{count} mutations of a {}-byte kernel.state in {:.1?}: {refused} refused, {restored} restored",
        state.len(),
        started.elapsed()
    );
}

//! Test harness for guest-level conformance tests: finds `runsc`, builds guest C programs with
//! `gcc -static`, runs them natively and under `runsc do`, and compares what they print.
//!
//! The oracle is Linux itself: a guest program must print the same bytes and exit with the
//! same status in the sandbox as it does natively (gVisor's syscall tests work the same way).

pub mod cni;
pub mod dns_server;
pub mod oci;
pub mod registry;

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The fixed environment every program (native or sandboxed) runs with.
pub const CLEAN_ENV: [(&str, &str); 3] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("LANG", "C"),
];

/// How long one program may run before the harness kills it and fails the test.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Our `runsc` binary: `$NANOVISOR_RUNSC`, else `target/debug/runsc`, else `target/release/runsc`.
///
/// Never gVisor's `/usr/bin/runsc`, which has the same name.
pub fn runsc() -> PathBuf {
    if let Some(path) = std::env::var_os("NANOVISOR_RUNSC") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NANOVISOR_RUNSC={} does not exist",
            path.display()
        );
        return path;
    }
    for profile in ["debug", "release"] {
        let path = target_dir().join(profile).join("runsc");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "no runsc binary found under {}/{{debug,release}}: run `cargo build -p runsc` first \
         (or set NANOVISOR_RUNSC=/path/to/runsc)",
        target_dir().display()
    );
}

/// Our containerd shim, `containerd-shim-nanovisor-v1`, from the same build as [`runsc`].
pub fn shim_binary() -> PathBuf {
    let runsc = runsc();
    let shim = runsc.with_file_name("containerd-shim-nanovisor-v1");
    assert!(
        shim.is_file(),
        "no {} next to {}: run `cargo build -p shim` first",
        shim.display(),
        runsc.display()
    );
    shim
}

/// nanovisor-cri, the CRI server, from the same build as [`runsc`].
pub fn cri_binary() -> PathBuf {
    let runsc = runsc();
    let cri = runsc.with_file_name("nanovisor-cri");
    assert!(
        cri.is_file(),
        "no {} next to {}: run `cargo build -p nanovisor-cri` first",
        cri.display(),
        runsc.display()
    );
    cri
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serializes builds of guest programs and fixtures inside one test binary.
fn build_lock() -> &'static Mutex<()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
}

/// Builds `tests/guest/NAME.c` with `gcc -static -O1` into `target/guest-bin/NAME` (cached;
/// rebuilt when the source or a header in `tests/guest/` is newer) and returns the binary.
pub fn guest_bin(name: &str) -> PathBuf {
    build_guest(name, name, &["-static"], &[])
}

/// Build `tests/guest/NAME.c` into `target/guest-bin/OUT` with gcc `-O1 -Wall` plus
/// `flags`, linking `libs`, unless the binary is newer than the source and headers.
fn build_guest(name: &str, out_name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    let guest_dir = workspace_root().join("tests/guest");
    let src = guest_dir.join(format!("{name}.c"));
    assert!(src.is_file(), "no guest program {}", src.display());
    let out_dir = target_dir().join("guest-bin");
    let out = out_dir.join(out_name);

    let _guard = build_lock().lock().unwrap_or_else(|e| e.into_inner());
    let newest_input = std::fs::read_dir(&guest_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p == &src || p.extension().is_some_and(|e| e == "h"))
        .filter_map(|p| mtime(&p))
        .max();
    if let (Some(built), Some(input)) = (mtime(&out), newest_input) {
        if built >= input {
            return out;
        }
    }
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("mkdir {}: {e}", out_dir.display()));
    // Build beside the final name and rename, so a concurrent reader never sees half a file.
    let tmp = out_dir.join(format!(".{out_name}.{}.tmp", std::process::id()));
    let result = Command::new("gcc")
        .args(flags)
        .args(["-O1", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(libs)
        .output()
        .unwrap_or_else(|e| panic!("running gcc: {e} (is gcc installed?)"));
    assert!(
        result.status.success(),
        "gcc {} -O1 {} failed:\n{}",
        flags.join(" "),
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap_or_else(|e| panic!("rename to {}: {e}", out.display()));
    out
}

/// What a finished program left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit status as a shell reports it: the exit code, or 128+N for a fatal signal N.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text, without the ANSI colour sequences `tracing` adds to log lines.
    pub fn stderr_str(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.stderr))
    }
}

/// Removes ANSI escape sequences (`ESC [ … letter`) from `text`.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `cmd` with a clean environment, no stdin, and a time limit.
pub fn run(mut cmd: Command) -> Outcome {
    cmd.env_clear()
        .envs(CLEAN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Logging knobs are the only thing passed through (they only change stderr).
    for key in ["RUST_LOG", "RUST_BACKTRACE"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {shown}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} did not finish within {TIMEOUT:?}; killed");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    Outcome {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `prog ARGS` natively.
pub fn run_native(prog: &Path, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    run(cmd)
}

/// Runs `runsc do --rootfs ROOTFS [--env K=V]… -- PROG ARGS`, with the same environment the
/// native run gets.
pub fn run_sandboxed(rootfs: &Path, prog: &Path, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(runsc());
    cmd.arg("do").arg("--rootfs").arg(rootfs);
    for (k, v) in CLEAN_ENV {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg("--").arg(prog).args(args);
    run(cmd)
}

/// A line diff of `expected` (native) against `actual` (sandbox): `-` lines only natively,
/// `+` lines only in the sandbox, two lines of context around each change.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table; outputs are small (a few hundred lines at most).
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k != ' ')
        .map(|(n, _)| n)
        .collect();
    let mut text = String::from("--- native\n+++ sandbox\n");
    let mut last_shown: Option<usize> = None;
    for (n, (kind, line)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(n) <= CONTEXT);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != n) || (last_shown.is_none() && n > 0) {
            text.push_str("@@\n");
        }
        text.push(*kind);
        text.push_str(line);
        text.push('\n');
        last_shown = Some(n);
    }
    text
}

fn tail(bytes: &[u8], max_lines: usize) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(bytes));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// Asserts that two runs printed the same stdout and exited with the same status; on a
/// mismatch the panic shows a diff and the tail of the sandbox's stderr.
#[track_caller]
pub fn assert_same_outcome(what: &str, native: &Outcome, sandboxed: &Outcome) {
    if native.stdout == sandboxed.stdout && native.status == sandboxed.status {
        return;
    }
    let mut msg = format!("{what}: sandbox differs from native\n");
    if native.status != sandboxed.status {
        msg += &format!(
            "exit status: native {} vs sandbox {}\n",
            native.status, sandboxed.status
        );
    }
    if native.stdout != sandboxed.stdout {
        msg += &diff(&native.stdout_str(), &sandboxed.stdout_str());
    }
    msg += &format!(
        "--- sandbox stderr (last 30 lines) ---\n{}\n",
        tail(&sandboxed.stderr, 30)
    );
    panic!("{msg}");
}

/// Builds guest program NAME, runs it natively (it must exit with `expected_status` there:
/// the program has to pass on Linux first) and under `runsc do --rootfs /`, and asserts both
/// print the same and exit alike. Returns the sandboxed run for further checks.
#[track_caller]
pub fn check_guest(name: &str, args: &[&str], expected_status: i32) -> Outcome {
    let prog = guest_bin(name);
    let native = run_native(&prog, args);
    assert_eq!(
        native.status,
        expected_status,
        "{name} natively exited with {} (expected {expected_status}); stdout:\n{}\nstderr:\n{}",
        native.status,
        native.stdout_str(),
        native.stderr_str()
    );
    let sandboxed = run_sandboxed(Path::new("/"), &prog, args);
    let what = [name]
        .iter()
        .chain(args)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    assert_same_outcome(&what, &native, &sandboxed);
    sandboxed
}

/// A minimal busybox root file system under `target/nv-rootfs`, made by
/// `scripts/make-rootfs.sh` on first use.
pub fn busybox_rootfs() -> PathBuf {
    let dir = target_dir().join("nv-rootfs");
    let _guard = build_lock().lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("bin/busybox").is_file() && dir.join("etc/hostname").is_file() {
        return dir;
    }
    let script = workspace_root().join("scripts/make-rootfs.sh");
    let tmp = target_dir().join(format!(".nv-rootfs.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = Command::new("bash")
        .arg(&script)
        .arg(&tmp)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        result.status.success(),
        "{} failed (is busybox-static installed? `apt-get install -y busybox-static`):\n{}",
        script.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("rename to {}: {e}", dir.display()));
    dir
}

/// Builds `tests/guest/NAME.c` as a dynamically linked program (glibc's ld.so and shared
/// libraries from the host, no `-static`) into `target/guest-bin/NAME.dyn` (cached like
/// [`guest_bin`]) and returns the binary. `libs` are extra linker arguments (`-ldl`).
pub fn guest_bin_dynamic(name: &str, libs: &[&str]) -> PathBuf {
    build_guest(name, &format!("{name}.dyn"), &[], libs)
}

/// Runs the program at `prog` (any binary: a built guest program or one of the host's,
/// such as `/bin/echo`) natively, where it must exit with `expected_status`, and under
/// `runsc do --rootfs /`, and asserts both print the same and exit alike. Returns the
/// sandboxed run.
#[track_caller]
pub fn check_program(prog: &Path, args: &[&str], expected_status: i32) -> Outcome {
    let native = run_native(prog, args);
    assert_eq!(
        native.status,
        expected_status,
        "{} natively exited with {} (expected {expected_status}); stdout:\n{}\nstderr:\n{}",
        prog.display(),
        native.status,
        native.stdout_str(),
        native.stderr_str()
    );
    let sandboxed = run_sandboxed(Path::new("/"), prog, args);
    let what = std::iter::once(prog.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    assert_same_outcome(&what, &native, &sandboxed);
    sandboxed
}

/// The host's Node.js, run natively and as the sandboxed program by the Node suite.
pub const NODE: &str = "/usr/bin/node";

/// The absolute path of the Node script `tests/node/NAME`.
pub fn node_script(name: &str) -> PathBuf {
    let path = workspace_root().join("tests/node").join(name);
    assert!(path.is_file(), "no Node script {}", path.display());
    path
}

/// Runs `node tests/node/SCRIPT NATIVE_ARGS` natively (it must exit with `expected_status`
/// there) and `node tests/node/SCRIPT SANDBOX_ARGS` under `runsc do --rootfs /`, and asserts
/// both print the same stdout and exit alike (stderr is not compared: it may hold stacks).
/// The two argument lists differ only where a script needs a per-run name (a /tmp directory)
/// that it never prints. Returns `(native, sandboxed)`, or `None` when the host has no Node.
#[track_caller]
pub fn check_node_with_args(
    script: &str,
    native_args: &[&str],
    sandbox_args: &[&str],
    expected_status: i32,
) -> Option<(Outcome, Outcome)> {
    let node = Path::new(NODE);
    if !node.is_file() {
        eprintln!("skipped: no {NODE} on this host");
        return None;
    }
    let path = node_script(script);
    let path = path.to_str().expect("workspace path is UTF-8");
    let args = |extra: &[&str]| -> Vec<String> {
        std::iter::once(path)
            .chain(extra.iter().copied())
            .map(str::to_owned)
            .collect()
    };
    let native_args = args(native_args);
    let native_args: Vec<&str> = native_args.iter().map(String::as_str).collect();
    let native = run_native(node, &native_args);
    assert_eq!(
        native.status,
        expected_status,
        "node {script} natively exited with {} (expected {expected_status}); stdout:\n{}\nstderr:\n{}",
        native.status,
        native.stdout_str(),
        native.stderr_str()
    );
    let sandbox_args = args(sandbox_args);
    let sandbox_args: Vec<&str> = sandbox_args.iter().map(String::as_str).collect();
    let sandboxed = run_sandboxed(Path::new("/"), node, &sandbox_args);
    assert_same_outcome(&format!("node {script}"), &native, &sandboxed);
    Some((native, sandboxed))
}

/// [`check_node_with_args`] with the same arguments natively and in the sandbox.
#[track_caller]
pub fn check_node(script: &str, args: &[&str], expected_status: i32) -> Option<(Outcome, Outcome)> {
    check_node_with_args(script, args, args, expected_status)
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn diff_marks_changed_lines() {
        let d = diff("a\nb\nc\n", "a\nx\nc\n");
        assert!(d.contains("-b\n"), "{d}");
        assert!(d.contains("+x\n"), "{d}");
        assert!(d.contains(" a\n"), "{d}");
    }

    #[test]
    fn strip_ansi_removes_colours() {
        assert_eq!(
            super::strip_ansi("\u{1b}[3mnr\u{1b}[0m\u{1b}[2m=\u{1b}[0m1000"),
            "nr=1000"
        );
    }

    #[test]
    fn diff_of_equal_text_has_no_changes() {
        let d = diff("a\nb\n", "a\nb\n");
        assert_eq!(d, "--- native\n+++ sandbox\n");
    }
}

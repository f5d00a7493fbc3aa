//! `runsc` command-line behaviour that has no native counterpart: refusing bad ELF files,
//! the syscall table, and logging of unimplemented syscalls.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nanovisor_tests::{guest_bin, run, run_sandboxed, runsc};

/// A file in the host's /tmp (the sandbox sees it through `--rootfs /`), removed on drop.
struct TempExe(PathBuf);

impl TempExe {
    fn new(tag: &str, bytes: &[u8]) -> Self {
        let path = PathBuf::from(format!("/tmp/nv-malformed-{}-{tag}", std::process::id()));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        TempExe(path)
    }
}

impl Drop for TempExe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn expect_elf_refusal(what: &str, bytes: &[u8]) {
    let exe = TempExe::new(what, bytes);
    let out = run_sandboxed(Path::new("/"), &exe.0, &[]);
    assert_ne!(
        out.status,
        0,
        "{what}: runsc do succeeded on a malformed ELF; stderr:\n{}",
        out.stderr_str()
    );
    assert!(
        out.stderr_str().to_lowercase().contains("elf"),
        "{what}: exit status {} but stderr does not mention ELF:\n{}",
        out.status,
        out.stderr_str()
    );
}

#[test]
fn malformed_elf() {
    let real = std::fs::read(guest_bin("segv")).expect("reading a guest binary");
    assert_eq!(&real[..4], b"\x7fELF");

    // Not an ELF at all.
    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    expect_elf_refusal("garbage", &garbage);

    // A valid ELF header whose program headers are cut off.
    expect_elf_refusal("truncated", &real[..100]);

    // Only the magic.
    expect_elf_refusal("magic-only", b"\x7fELF");

    // A whole x86-64 binary relabelled as AArch64 (e_machine = 183).
    let mut foreign = real.clone();
    foreign[18..20].copy_from_slice(&183u16.to_le_bytes());
    expect_elf_refusal("aarch64", &foreign);

    // A 32-bit ELF class.
    let mut class32 = real;
    class32[4] = 1;
    expect_elf_refusal("elfclass32", &class32);
}

fn syscall_table() -> Vec<serde_json::Value> {
    let mut cmd = Command::new(runsc());
    cmd.args(["help", "syscalls", "--format", "json"]);
    let out = run(cmd);
    assert_eq!(
        out.status,
        0,
        "runsc help syscalls failed:\n{}",
        out.stderr_str()
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout_str()));
    value.as_array().expect("a JSON array").clone()
}

#[test]
fn help_syscalls_json() {
    let table = syscall_table();
    assert!(!table.is_empty(), "empty syscall table");
    let mut numbers = HashSet::new();
    let mut names = std::collections::HashMap::new();
    for entry in &table {
        let nr = entry["nr"]
            .as_u64()
            .unwrap_or_else(|| panic!("entry without a numeric nr: {entry}"));
        let name = entry["name"]
            .as_str()
            .unwrap_or_else(|| panic!("entry without a name: {entry}"));
        let support = entry["support"]
            .as_str()
            .unwrap_or_else(|| panic!("entry without support: {entry}"));
        assert!(
            ["full", "partial", "unsupported"].contains(&support),
            "{name}: support level {support:?} is not full/partial/unsupported"
        );
        assert!(
            entry["note"].is_string(),
            "{name}: note is not a string: {entry}"
        );
        assert!(numbers.insert(nr), "syscall number {nr} listed twice");
        names.insert(name.to_string(), nr);
    }
    // Names and x86-64 numbers from Linux's arch/x86/entry/syscalls/syscall_64.tbl.
    for (name, nr) in [
        ("read", 0),
        ("write", 1),
        ("mmap", 9),
        ("exit_group", 231),
        ("openat", 257),
    ] {
        assert_eq!(
            names.get(name),
            Some(&nr),
            "{name} missing or with the wrong number"
        );
    }
}

#[test]
fn help_syscalls_md() {
    let mut cmd = Command::new(runsc());
    cmd.args(["help", "syscalls", "--format", "md"]);
    let out = run(cmd);
    assert_eq!(
        out.status,
        0,
        "runsc help syscalls --format md failed:\n{}",
        out.stderr_str()
    );
    let text = out.stdout_str();
    assert!(
        text.lines()
            .any(|l| l.starts_with('|') && l.contains("openat")),
        "no openat row:\n{text}"
    );
}

/// The errors program calls syscall 1000 three times: the sentry answers ENOSYS each time
/// (checked by the conformance test) and logs the number once.
#[test]
fn enosys_logged_once() {
    let out = run_sandboxed(Path::new("/"), &guest_bin("errors"), &[]);
    assert_eq!(
        out.status,
        0,
        "errors failed in the sandbox:\n{}",
        out.stderr_str()
    );
    let stderr = out.stderr_str();
    let mentions = stderr
        .lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == "1000")
        })
        .count();
    assert_eq!(
        mentions, 1,
        "expected one log line about syscall 1000 on stderr, got {mentions}:\n{stderr}"
    );
}

/// A sandbox whose stderr's reader has gone (`runsc do … 2>&1 | head`) still ends: its
/// log lines are lost, and no thread dies of the failed write. A guest thread once
/// panicked writing its ENOSYS warning and vanished without leaving its process, and the
/// sandbox waited for it forever.
#[test]
fn a_sandbox_whose_stderr_is_gone_still_ends() {
    let mut child = Command::new(runsc())
        .args(["do", "--"])
        .arg(guest_bin("errors"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning runsc");
    drop(child.stderr.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runsc do did not end within 30 s of its stderr's reader going");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The program's own status (errors exits 0), not a panic's 101.
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// sethostname changes the sandbox's name (uname, /proc/sys/kernel/hostname), never the
/// host's; not compared with a native run, which would rename this machine.
#[test]
fn sethostname_names_the_sandbox_only() {
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let out = run_sandboxed(
        Path::new("/"),
        Path::new("/bin/busybox"),
        &[
            "sh",
            "-c",
            "hostname nv-renamed && hostname && cat /proc/sys/kernel/hostname",
        ],
    );
    assert_eq!(
        out.stdout_str(),
        "nv-renamed\nnv-renamed\n",
        "{}",
        out.stderr_str()
    );
    let after = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(before, after, "the host's name changed");
}

/// `runsc do` passes SIGTERM and SIGINT on to the sandbox's program (as `runsc run` and
/// `docker run` do), so it can end cleanly; one without a handler dies of the signal.
#[test]
fn do_forwards_signals_to_its_program() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    for (sig, script, expected) in [
        (
            "TERM",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
            Some(7),
        ),
        ("INT", "echo ready; while :; do sleep 0.05; done", Some(130)),
    ] {
        let mut child = Command::new(runsc())
            .args(["do", "--", "/bin/busybox", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning runsc");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready");
        assert_eq!(line, "ready\n");
        let sent = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).expect("rest");
        let status = child.wait().expect("wait");
        assert_eq!(
            status.code(),
            expected,
            "signal {sig}: {status:?}, output {rest:?}"
        );
        if sig == "TERM" {
            assert_eq!(rest, "got TERM\n");
        }
    }
}

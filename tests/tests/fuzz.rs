//! A hostile guest cannot crash the sentry: the `fuzz` guest program makes hundreds of
//! thousands of raw syscalls with random numbers and wild arguments from short-lived
//! children, and the sandbox must come through with the guest's own exit status, the
//! guest's last line printed, and no sign of a sentry failure on stderr.
//!
//! Not a conformance test (nothing is compared with Linux): the children's fates differ
//! natively and in the sandbox, and the program is only ever run sandboxed (natively its
//! children would make random syscalls as root on the host).

use std::path::Path;
use std::time::Instant;

use nanovisor_tests::{guest_bin, run_sandboxed};

/// Children per seed, and calls per child (threaded children make that many per thread).
/// Sized so that one seed takes about ten seconds on a 2-core machine.
const CHILDREN: u32 = 150;
const CALLS: u32 = 600;

/// What the sentry or runsc prints when something went wrong on their side: a Rust panic,
/// a contained panic, a vCPU that stopped (`kernel::run::spawn_thread`), a platform error,
/// and any error-level log line.
const SENTRY_FAILURE_MARKERS: [&str; 6] = [
    "panicked",
    "sentry bug",
    "thread stopped",
    "the vCPU stopped unexpectedly",
    "the ring-0 stub faulted",
    "ERROR",
];

#[track_caller]
fn fuzz(seed: u64) {
    let prog = guest_bin("fuzz");
    let (seed, children, calls) = (seed.to_string(), CHILDREN.to_string(), CALLS.to_string());
    let started = Instant::now();
    let out = run_sandboxed(Path::new("/"), &prog, &[&seed, &children, &calls]);
    let elapsed = started.elapsed();
    let stdout = out.stdout_str();
    let stderr = out.stderr_str();
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("fuzz: "))
        .filter(|line| SENTRY_FAILURE_MARKERS.iter().any(|m| line.contains(m)))
        .collect();
    let context = format!(
        "fuzz seed {seed} ({elapsed:?}): status {}\n--- stdout ---\n{stdout}\n--- stderr (sentry failures) ---\n{}\n--- stderr (last 20 lines) ---\n{}",
        out.status,
        failures.join("\n"),
        stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
    );
    assert!(
        failures.is_empty(),
        "the sentry reported a failure: {context}"
    );
    assert_eq!(
        out.status, 0,
        "the fuzzer's parent did not exit 0: {context}"
    );
    assert!(
        stdout.contains(&format!("fuzz: {CHILDREN} children done\n")),
        "the fuzzer's parent did not finish: {context}"
    );
    assert!(
        stdout.contains("fuzz: the sandbox still works\n"),
        "after the fuzzing, pipes, fork or wait were broken: {context}"
    );
    eprintln!("fuzz seed {seed}: {elapsed:?}");
}

#[test]
fn seed_1() {
    fuzz(1);
}

#[test]
fn seed_2() {
    fuzz(2);
}

#[test]
fn seed_3() {
    fuzz(3);
}

#[test]
fn seed_4() {
    fuzz(4);
}

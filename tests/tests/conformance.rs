//! Guest conformance programs (`tests/guest/*.c`): each runs natively and under
//! `runsc do --rootfs /`, and must print the same bytes and exit with the same status.

use nanovisor_tests::check_guest;

/// A suffix for the /tmp paths `files` and `memory` create, so that two test runs on one
/// machine do not trip over each other; both runs of a program get the same one.
fn tmp_tag() -> String {
    format!("-{}", std::process::id())
}

#[test]
fn files() {
    check_guest("files", &[&tmp_tag()], 0);
}

#[test]
fn shared_file_mappings() {
    check_guest("shared_files", &[&tmp_tag()], 0);
}

#[test]
fn file_locks_between_processes() {
    check_guest("locks", &[&tmp_tag()], 0);
}

#[test]
fn named_pipes() {
    check_guest("fifo", &[&tmp_tag()], 0);
}

#[test]
fn posix_timers() {
    check_guest("posix_timers", &[], 0);
}

#[test]
fn memory() {
    check_guest("memory", &[&tmp_tag()], 0);
}

#[test]
fn time() {
    check_guest("time", &[], 0);
}

#[test]
fn fault() {
    check_guest("fault", &[], 0);
}

#[test]
fn errors() {
    check_guest("errors", &[], 0);
}

/// A NULL dereference with no handler: killed by SIGSEGV (status 139) in both worlds, and
/// the sentry says so on stderr rather than crashing.
#[test]
fn segv() {
    let sandboxed = check_guest("segv", &[], 139);
    assert!(
        !sandboxed.stderr.is_empty(),
        "the sentry printed nothing about the guest's SIGSEGV on stderr"
    );
}

/// Optional: SIGTRAP from `int3` (si_code SI_KERNEL, RIP after the breakpoint).
#[test]
fn fault_int3() {
    check_guest("fault", &["int3"], 0);
}

/// eventfd, epoll (level/edge/one-shot, nesting, errors), timerfd, poll/ppoll,
/// select/pselect6 and signalfd creation.
#[test]
fn events() {
    check_guest("events", &[], 0);
}

/// nanosleep/clock_nanosleep interrupted by a handled signal, and not by an ignored one.
#[test]
fn sleep_signal() {
    check_guest("sleep_signal", &[], 0);
}

/// setitimer(ITIMER_REAL)/getitimer/alarm and SIGALRM.
#[test]
fn itimer() {
    check_guest("itimer", &[], 0);
}

/// Terminal modes (`terminal.c`) on a host pty: the program runs under `script(1)`, natively
/// and as `runsc do`, and both print the same (script copies the pty's output).
#[test]
fn terminal_modes() {
    use nanovisor_tests::{guest_bin, run, runsc};
    use std::process::Command;
    let prog = guest_bin("terminal");
    let under_script = |line: String| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run(cmd)
    };
    let native = under_script(prog.display().to_string());
    let sandboxed = under_script(format!(
        "{} do --rootfs / -- {}",
        runsc().display(),
        prog.display()
    ));
    assert_eq!(native.status, 0, "natively: {}", native.stdout_str());
    assert!(
        native.stdout_str().contains("raw (TCSANOW): OK"),
        "natively: {}",
        native.stdout_str()
    );
    nanovisor_tests::assert_same_outcome("terminal (under script)", &native, &sandboxed);
}

/// inotify: events of creating, writing, renaming, chmod, truncation and removal, as one
/// instance watching directories and a file reads them, in Linux's order; IN_ONESHOT,
/// rm_watch and the errors (tests/guest/inotify.c).
#[test]
fn inotify() {
    let dir = format!("/tmp/nv-inotify{}", tmp_tag());
    let _ = std::fs::remove_dir_all(&dir);
    check_guest("inotify", &[&dir], 0);
}

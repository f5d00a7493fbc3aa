//! Processes: the `process` guest program natively and sandboxed, and fork and thread
//! bombs that the sandbox stops with EAGAIN (sandbox only: natively they would load
//! the host).

use nanovisor_tests::{check_guest, guest_bin, run_sandboxed};

#[test]
fn fork_exec_wait_signals() {
    check_guest("process", &[], 0);
}

#[test]
fn fork_bomb_gets_eagain() {
    let out = run_sandboxed(std::path::Path::new("/"), &guest_bin("bomb"), &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fork refused with EAGAIN after at least 100: yes\n",
        "{out:?}"
    );
}

#[test]
fn thread_bomb_gets_eagain() {
    let out = run_sandboxed(std::path::Path::new("/"), &guest_bin("bomb"), &["threads"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "thread refused with EAGAIN after at least 100: yes\n",
        "{out:?}"
    );
}

#[test]
fn credentials_change_as_on_linux() {
    check_guest("creds", &[], 0);
}

#[test]
fn sigwait_and_sigpending_as_container_inits_use_them() {
    check_guest("sigwait", &[], 0);
}

#[test]
fn orphans_go_to_the_subreaper() {
    check_guest("orphans", &[], 0);
}

#[test]
fn proc_shows_other_processes() {
    check_guest("proc_others", &[], 0);
}

#[test]
fn process_groups_sessions_and_signals_between_processes() {
    check_guest("jobs", &[], 0);
}

#[test]
fn locking_scheduling_allocation_and_attribute_calls() {
    check_guest("misc_calls", &[], 0);
}

#[test]
fn siginfo_reaches_handlers_sigwaitinfo_and_signalfd() {
    check_guest("siginfo", &[], 0);
}

#[test]
fn vfork_and_clone_vm_share_memory_and_posix_spawn_reports_errors() {
    check_guest("vfork", &[], 0);
}

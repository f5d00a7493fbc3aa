//! Threads: the `threads` guest program natively and sandboxed, and a thread bomb that
//! the sandbox stops with EAGAIN.

use nanovisor_tests::check_guest;

#[test]
fn threads() {
    check_guest("threads", &[], 0);
}

#[test]
fn exit_group_from_a_thread_ends_the_process() {
    check_guest("threads", &["exit"], 7);
}

#[test]
fn execve_from_a_threaded_process() {
    check_guest("exec_threads", &[], 0);
}

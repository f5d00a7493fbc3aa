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

/// SIGKILL ends a process whose threads all sleep in the sentry, every time: the threads
/// that wake without the signal (one thread takes it) must see the group's end rather
/// than go back to sleep (kill_node.rs catches that race reliably; this covers the
/// wait kinds). Also: sigsuspend returns for a signal that was pending while blocked.
#[test]
fn sigkill_ends_every_sleeping_thread() {
    check_guest("kill_threads", &[], 0);
}

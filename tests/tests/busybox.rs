//! Debian's static busybox in a minimal rootfs (`scripts/make-rootfs.sh`): the same applets
//! natively (run straight from the rootfs directory) and under `runsc do --rootfs R`.

use std::path::Path;

use nanovisor_tests::{assert_same_outcome, busybox_rootfs, run_native, run_sandboxed};

/// Runs `R/bin/busybox NATIVE_ARGS` natively and `/bin/busybox SANDBOX_ARGS` in the sandbox.
fn compare(native_args: &[&str], sandbox_args: &[&str]) {
    let rootfs = busybox_rootfs();
    let native = run_native(&rootfs.join("bin/busybox"), native_args);
    assert_eq!(
        native.status,
        0,
        "native busybox {native_args:?} failed:\n{}",
        native.stderr_str()
    );
    let sandboxed = run_sandboxed(&rootfs, Path::new("/bin/busybox"), sandbox_args);
    assert_same_outcome(
        &format!("busybox {}", sandbox_args.join(" ")),
        &native,
        &sandboxed,
    );
}

#[test]
fn busybox_echo() {
    let rootfs = busybox_rootfs();
    let out = run_sandboxed(&rootfs, Path::new("/bin/busybox"), &["echo", "hello"]);
    assert_eq!(
        (out.status, out.stdout_str().as_str()),
        (0, "hello\n"),
        "stderr:\n{}",
        out.stderr_str()
    );
}

#[test]
fn busybox_ls_root() {
    let rootfs = busybox_rootfs();
    let r = rootfs.to_str().expect("utf-8 path");
    compare(&["ls", r], &["ls", "/"]);
}

#[test]
fn busybox_cat_hostname() {
    let rootfs = busybox_rootfs();
    let hostname = rootfs.join("etc/hostname");
    compare(
        &["cat", hostname.to_str().expect("utf-8 path")],
        &["cat", "/etc/hostname"],
    );
}

#[test]
fn busybox_sh_builtins() {
    let script = "echo a; echo b > /tmp/x; cat /tmp/x";
    compare(&["sh", "-c", script], &["sh", "-c", script]);
}

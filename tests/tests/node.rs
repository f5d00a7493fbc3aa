//! The Node.js suite: each script in `tests/node/` runs with the host's `/usr/bin/node`
//! natively and under `runsc do --rootfs /`, with the same clean environment, and must print
//! the same stdout and exit with the same status (issue 3's acceptance). The scripts print
//! only deterministic facts: hashes of fixed inputs, lengths, booleans, orderings that Node
//! guarantees.

use nanovisor_tests::{check_node, check_node_with_args};

/// fs in /tmp (a per-run directory) and the rootfs: sync, callback, fs.promises, streams.
#[test]
fn node_fs() {
    let pid = std::process::id();
    let native_tag = format!("{pid}-native");
    let sandbox_tag = format!("{pid}-sandbox");
    check_node_with_args("fs.js", &[&native_tag], &[&sandbox_tag], 0);
}

/// setTimeout/setImmediate/nextTick/microtask ordering, async/await, a self-clearing interval.
#[test]
fn node_timers() {
    check_node("timers.js", &[], 0);
}

/// worker_threads: two workers, a postMessage round trip, SharedArrayBuffer + Atomics.wait/notify.
#[test]
fn node_workers() {
    check_node("workers.js", &[], 0);
}

/// crypto: digests, HMAC, randomBytes, pbkdf2 (sync and on the thread pool), randomUUID.
#[test]
fn node_crypto() {
    check_node("crypto.js", &[], 0);
}

/// zlib: gzip/gunzip of 1 MB, deflate/inflate, brotli, streams.
#[test]
fn node_zlib() {
    check_node("zlib.js", &[], 0);
}

/// child_process: execFileSync('/bin/echo'), spawn('/bin/cat') with pipes, exit codes,
/// a child killed by a signal, fork() with IPC. Needs fork/exec/wait in the sandbox.
#[test]
fn node_child_process() {
    check_node("child.js", &[], 0);
}

/// process.on('SIGUSR2'/'SIGUSR1'/'SIGHUP'/'SIGTERM') with process.kill(process.pid, …).
#[test]
fn node_signals() {
    check_node("signals.js", &[], 0);
}

/// CPU-heavy JSON: a 200k-entry object through JSON.stringify/parse several times.
#[test]
fn node_json() {
    check_node("json.js", &[], 0);
}

/// An uncaught exception: exit status 1 and the stack on stderr (stdout and status compared).
#[test]
fn node_uncaught_exception() {
    let Some((native, sandboxed)) = check_node("uncaught.js", &[], 1) else {
        return;
    };
    for (name, out) in [("native", &native), ("sandbox", &sandboxed)] {
        let stderr = out.stderr_str();
        assert!(
            stderr.contains("Error: deliberate uncaught error") && stderr.contains("at deep ("),
            "{name} stderr lacks the stack:\n{stderr}"
        );
    }
}

/// The os module: os.cpus() (libuv reads /proc/stat and /proc/cpuinfo), loadavg, memory,
/// uptime, identity, userInfo, network interfaces, process.cpuUsage.
#[test]
fn node_os() {
    check_node("os.js", &[], 0);
}

/// fs.watch on a directory and a file (inotify): the events of creating, writing,
/// renaming, chmod and removing, in order.
#[test]
fn node_fs_watch() {
    let tag = std::process::id().to_string();
    check_node("watch.js", &[&tag], 0);
}

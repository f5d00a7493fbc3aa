//! Confinement of the sandbox process (`runsc boot`): what it may still do once it has
//! built the sandbox, applied before any guest code runs.
//!
//! The boot code calls these in this order; each step needs something the next one
//! takes away:
//!
//! 1. [`namespaces::unshare`] — first thing in `boot`, **while the process has one
//!    thread**: mount, IPC and UTS namespaces (and network, by `setns`) belong to a
//!    thread, so threads started earlier would stay outside. It refuses a second thread.
//! 2. Build the sandbox: `/dev/kvm` and the VM, guest memory, the network stack and its
//!    packet socket, the rootfs directory fd, the control socket, the audit log.
//! 3. [`cgroup::Cgroup::create`] and [`cgroup::Cgroup::add_self`] (or, better, `runsc
//!    create` does this for the child's pid) — needs `/sys/fs/cgroup`, so before 4.
//! 4. [`namespaces::pivot_to_empty`] — the file tree becomes an empty read-only tmpfs.
//!    Needs `CAP_SYS_ADMIN`, so before 5.
//! 5. [`caps::drop_all_but`] — on **every** thread (capabilities are per thread), and
//!    `no_new_privs`.
//! 6. [`seccomp::install`] — the syscall allowlist on every thread (TSYNC). Last,
//!    because steps 1–5 make syscalls the allowlist forbids.
//!
//! Between 4 and 6 the process keeps one fd of the host's `/proc/<pid>/task` (opened by
//! step 4), so that step 5 can find every thread without `/proc`; step 5 (or, failing
//! that, step 6) closes it.
//!
//! After step 4 no host path resolves: whatever the sandbox reads later by path must be
//! opened (or snapshotted) before — the guest's `/proc/cpuinfo` (copied from the
//! host's when the kernel is made), `acl audit` reading `audit.log` by path, a
//! second container's rootfs (pass it as an fd). `std::thread::available_parallelism`
//! falls back from the cgroup quota to the affinity mask.

pub mod caps;
pub mod cgroup;
pub mod namespaces;
pub mod seccomp;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The host's `/proc/<pid>/task` directory, kept open from `pivot_to_empty` until the
/// capabilities of every thread are dropped.
static TASK_DIR: Mutex<Option<OwnedFd>> = Mutex::new(None);

#[allow(dead_code)] // Not wired yet: boot cannot pivot until pod containers' roots arrive as fds.
/// Open `/proc/self/task` (to list threads after `/proc` is gone) unless already open.
fn keep_task_dir() -> io::Result<()> {
    let mut slot = TASK_DIR.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(open_task_dir()?);
    }
    Ok(())
}

/// Close the kept task directory: nothing after confinement may reach the host's `/proc`.
fn forget_task_dir() {
    TASK_DIR.lock().unwrap_or_else(|e| e.into_inner()).take();
}

fn open_task_dir() -> io::Result<OwnedFd> {
    let path = c"/proc/self/task";
    // SAFETY: a NUL-terminated path and flags; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::other(format!(
            "opening /proc/self/task: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The thread ids of this process, from the kept task directory, else `/proc/self/task`.
fn thread_ids() -> io::Result<Vec<libc::pid_t>> {
    let slot = TASK_DIR.lock().unwrap_or_else(|e| e.into_inner());
    let fresh;
    let dir = match slot.as_ref() {
        Some(fd) => fd,
        None => {
            fresh = open_task_dir()?;
            &fresh
        }
    };
    list_dir_numbers(dir)
}

/// The numeric names in a directory (read through a duplicate of `dir`, from the start).
fn list_dir_numbers(dir: &OwnedFd) -> io::Result<Vec<libc::pid_t>> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd; the result is checked.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh directory fd; on success fdopendir owns it (closedir
    // below closes it), on failure we close it ourselves.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: `dup` is ours and fdopendir did not take it.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: `stream` is a valid DIR*; the duplicate shares its offset with `dir`, so
    // start from the beginning.
    unsafe { libc::rewinddir(stream) };
    let mut out = Vec::new();
    loop {
        // SAFETY: `stream` is a valid DIR* used by this thread only.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: readdir64 returned a valid entry whose d_name is NUL-terminated; it
        // stays valid until the next readdir64/closedir on `stream`.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if let Some(n) = name.to_str().ok().and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    // SAFETY: `stream` is valid and not used after this.
    unsafe { libc::closedir(stream) };
    Ok(out)
}

/// How many threads this process has now.
fn thread_count() -> io::Result<usize> {
    Ok(thread_ids()?.len())
}

/// The calling thread's id.
fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Names the child function a re-executed test binary runs (`seccomp::tests::run_child`).
    pub(crate) const CHILD_ENV: &str = "NANOVISOR_CONFINE_TEST_CHILD";

    /// Does nothing in a normal test run. In a child started by `run_child`, runs the
    /// named confinement step, which changes the whole process for good, then exits.
    #[test]
    fn child_entry() {
        let Ok(name) = std::env::var(CHILD_ENV) else {
            return;
        };
        match name.as_str() {
            "seccomp" => seccomp::tests::child_filtered(),
            "caps_drop" => caps::tests::child_drop_on_all_threads(),
            "cgroup_add_self" => cgroup::tests::child_add_self(),
            other => panic!("unknown child {other:?}"),
        }
        std::process::exit(0);
    }

    #[test]
    fn lists_this_thread() {
        let me = gettid();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(gettid()).expect("send");
            let _ = done_rx.recv();
        });
        let other = rx.recv().expect("tid");
        let ids = thread_ids().expect("thread ids");
        assert!(ids.contains(&me), "{ids:?} lacks {me}");
        assert!(ids.contains(&other), "{ids:?} lacks {other}");
        assert!(thread_count().expect("count") >= 2);
        drop(done_tx);
        t.join().expect("join");
    }
}

//! Dropping the sandbox process's capabilities, on every thread, and `no_new_privs`.
//!
//! Capabilities belong to threads (capset(2) changes only the caller), and by the time
//! the sandbox confines itself it runs many (netstack, control socket, vDSO clock, …).
//! So [`drop_all_but`] drops them on the calling thread, then has every other thread drop
//! its own: it sends each one [`drop_signal`], whose handler does the same few raw
//! syscalls and acknowledges, one thread at a time, and lists the threads again until no
//! new one shows up. The list comes from the task directory `pivot_to_empty` kept open
//! (or from `/proc/self/task` if there was no pivot); this module closes it when done.
//!
//! What the sentry still needs afterwards: nothing for KVM, guest memory or its sockets
//! (all opened before). Reading the container's files through the rootfs directory fd is
//! done as host root, so without `CAP_DAC_READ_SEARCH` a file or directory the image
//! made unreadable to root's uid by its mode (a `0700` home of uid 1000, say) becomes
//! unreadable to the sentry too; keep `Capability::DacReadSearch` if the guest must see
//! those (writes go to the in-memory overlay and need nothing).
// The whole capability set is named, for reviewers of what is kept; boot keeps one.
#![allow(dead_code)]

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A Linux capability (`capability.h`), as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Capability {
    Chown = 0,
    DacOverride = 1,
    DacReadSearch = 2,
    Fowner = 3,
    Fsetid = 4,
    Kill = 5,
    Setgid = 6,
    Setuid = 7,
    Setpcap = 8,
    LinuxImmutable = 9,
    NetBindService = 10,
    NetBroadcast = 11,
    NetAdmin = 12,
    NetRaw = 13,
    IpcLock = 14,
    IpcOwner = 15,
    SysModule = 16,
    SysRawio = 17,
    SysChroot = 18,
    SysPtrace = 19,
    SysPacct = 20,
    SysAdmin = 21,
    SysBoot = 22,
    SysNice = 23,
    SysResource = 24,
    SysTime = 25,
    SysTtyConfig = 26,
    Mknod = 27,
    Lease = 28,
    AuditWrite = 29,
    AuditControl = 30,
    Setfcap = 31,
    MacOverride = 32,
    MacAdmin = 33,
    Syslog = 34,
    WakeAlarm = 35,
    BlockSuspend = 36,
    AuditRead = 37,
    Perfmon = 38,
    Bpf = 39,
    CheckpointRestore = 40,
}

impl Capability {
    /// Every capability, in number order.
    pub const ALL: [Capability; 41] = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::DacReadSearch,
        Capability::Fowner,
        Capability::Fsetid,
        Capability::Kill,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setpcap,
        Capability::LinuxImmutable,
        Capability::NetBindService,
        Capability::NetBroadcast,
        Capability::NetAdmin,
        Capability::NetRaw,
        Capability::IpcLock,
        Capability::IpcOwner,
        Capability::SysModule,
        Capability::SysRawio,
        Capability::SysChroot,
        Capability::SysPtrace,
        Capability::SysPacct,
        Capability::SysAdmin,
        Capability::SysBoot,
        Capability::SysNice,
        Capability::SysResource,
        Capability::SysTime,
        Capability::SysTtyConfig,
        Capability::Mknod,
        Capability::Lease,
        Capability::AuditWrite,
        Capability::AuditControl,
        Capability::Setfcap,
        Capability::MacOverride,
        Capability::MacAdmin,
        Capability::Syslog,
        Capability::WakeAlarm,
        Capability::BlockSuspend,
        Capability::AuditRead,
        Capability::Perfmon,
        Capability::Bpf,
        Capability::CheckpointRestore,
    ];

    fn bit(self) -> u64 {
        1 << (self as u8)
    }
}

/// The real-time signal that asks a thread to drop its capabilities (the kick signal is
/// `SIGRTMIN + 3`). Its handler is installed only while [`drop_all_but`] runs.
pub fn drop_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

/// How long one thread may take to answer [`drop_signal`].
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The capabilities the signalled threads keep (read by the handler).
static KEEP_MASK: AtomicU64 = AtomicU64::new(0);
/// The thread id of the last thread that finished dropping (written by the handler).
static ACK_TID: AtomicI32 = AtomicI32::new(0);
/// Its result: 0, or the errno of the step that failed (step * 1000 + errno).
static ACK_ERR: AtomicI32 = AtomicI32::new(0);

/// Drop every capability but `keep` from the bounding, ambient, inheritable, permitted
/// and effective sets of every thread of the process, and set `no_new_privs` on each.
/// A kept capability the thread does not hold stays absent. Call after `pivot_to_empty`
/// (which needs `CAP_SYS_ADMIN`) and before `seccomp::install`; no thread may block
/// [`drop_signal`].
pub fn drop_all_but(keep: &[Capability]) -> anyhow::Result<()> {
    let mask = keep.iter().fold(0u64, |m, c| m | c.bit());
    let result = drop_everywhere(mask);
    // The host's /proc must not outlive confinement, whatever happened.
    super::forget_task_dir();
    result
}

fn drop_everywhere(mask: u64) -> anyhow::Result<()> {
    drop_on_this_thread(mask).map_err(|code| describe(code, super::gettid()))?;
    KEEP_MASK.store(mask, Ordering::SeqCst);
    let old = install_handler()?;
    let result = signal_other_threads();
    restore_handler(&old);
    result
}

fn signal_other_threads() -> anyhow::Result<()> {
    let me = super::gettid();
    let pid = std::process::id() as libc::pid_t;
    let mut done = std::collections::HashSet::from([me]);
    loop {
        let ids = super::thread_ids().context("listing this process's threads")?;
        let fresh: Vec<_> = ids.into_iter().filter(|t| !done.contains(t)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for tid in fresh {
            done.insert(tid);
            ACK_TID.store(0, Ordering::SeqCst);
            // SAFETY: tgkill with our own pid, a thread id of ours and a valid signal.
            if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, drop_signal()) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    continue; // the thread ended meanwhile
                }
                return Err(e).with_context(|| format!("signalling thread {tid}"));
            }
            wait_for_ack(tid)?;
        }
    }
}

fn wait_for_ack(tid: libc::pid_t) -> anyhow::Result<()> {
    let deadline = Instant::now() + ACK_TIMEOUT;
    loop {
        if ACK_TID.load(Ordering::SeqCst) == tid {
            return match ACK_ERR.load(Ordering::SeqCst) {
                0 => Ok(()),
                code => Err(describe(code, tid)),
            };
        }
        if Instant::now() > deadline {
            let alive = super::thread_ids()
                .map(|ids| ids.contains(&tid))
                .unwrap_or(true);
            if !alive {
                return Ok(());
            }
            bail!(
                "thread {tid} did not drop its capabilities within {ACK_TIMEOUT:?} \
                 (does it block signal {}?)",
                drop_signal()
            );
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// A failure code of [`drop_on_this_thread`] as an error.
fn describe(code: i32, tid: libc::pid_t) -> anyhow::Error {
    let step = match code / 1000 {
        1 => "dropping from the bounding set (PR_CAPBSET_DROP)",
        2 => "clearing the ambient set",
        3 => "reading the capability sets (capget)",
        4 => "setting the capability sets (capset)",
        _ => "setting no_new_privs",
    };
    anyhow::anyhow!(
        "thread {tid}: {step}: {}",
        std::io::Error::from_raw_os_error(code % 1000)
    )
}

extern "C" fn on_drop_signal(_: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot; we restore it on exit
    // so the interrupted code does not see our errors.
    let saved = unsafe { *libc::__errno_location() };
    let result = drop_on_this_thread(KEEP_MASK.load(Ordering::SeqCst));
    ACK_ERR.store(result.err().unwrap_or(0), Ordering::SeqCst);
    ACK_TID.store(super::gettid(), Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

struct OldHandler(libc::sigaction);

fn install_handler() -> anyhow::Result<OldHandler> {
    // SAFETY: all-zero is a valid sigaction (SIG_DFL, empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_drop_signal as extern "C" fn(libc::c_int) as usize;
    // SA_RESTART: threads blocked in a restartable syscall carry on after the handler.
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: as above, for the old action we read back.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid signal number and pointers to initialised sigaction structs; the
    // handler is async-signal-safe (raw syscalls and atomics only).
    if unsafe { libc::sigaction(drop_signal(), &sa, &mut old) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("installing the capability-drop signal handler");
    }
    Ok(OldHandler(old))
}

fn restore_handler(old: &OldHandler) {
    // SAFETY: restores the action sigaction gave us back for the same signal.
    unsafe { libc::sigaction(drop_signal(), &old.0, std::ptr::null_mut()) };
}

/// `capget`/`capset` header, `_LINUX_CAPABILITY_VERSION_3`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One of the two 32-bit halves of the capability sets.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Drop everything outside `keep` on the calling thread. Async-signal-safe: raw
/// syscalls only, no allocation. Errors are `step * 1000 + errno`.
fn drop_on_this_thread(keep: u64) -> Result<(), i32> {
    let errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // Bounding set: until PR_CAPBSET_READ says the number is past the last capability.
    for cap in 0..64u64 {
        // SAFETY: PR_CAPBSET_READ only reads; an unknown capability is EINVAL.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if present < 0 {
            break;
        }
        if present == 1 && keep & (1 << cap) == 0 {
            // SAFETY: PR_CAPBSET_DROP of a valid capability affects this thread only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
                return Err(1000 + errno());
            }
        }
    }
    // SAFETY: clears this thread's ambient set; EINVAL on kernels without one (< 4.3).
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 && errno() != libc::EINVAL {
        return Err(2000 + errno());
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and room for its two data structs.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(3000 + errno());
    }
    for (i, d) in data.iter_mut().enumerate() {
        let keep_half = (keep >> (32 * i)) as u32;
        d.permitted &= keep_half;
        d.effective = d.permitted;
        d.inheritable = 0;
    }
    // SAFETY: as for capget; the kernel only reads `data`.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(4000 + errno());
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS with 1 and zero padding arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(5000 + errno());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The capability sets of the calling thread, from `/proc/thread-self/status`.
    pub(crate) fn thread_caps() -> std::collections::HashMap<String, u64> {
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        status
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let v = v.trim();
                match k {
                    "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                        Some((k.to_owned(), u64::from_str_radix(v, 16).ok()?))
                    }
                    "NoNewPrivs" => Some((k.to_owned(), v.parse().ok()?)),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn bits_are_capability_numbers() {
        for (i, c) in Capability::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
        assert_eq!(Capability::Chown.bit(), 1);
        assert_eq!(Capability::SysAdmin.bit(), 1 << 21);
        assert_eq!(Capability::CheckpointRestore.bit(), 1 << 40);
    }

    /// In a child (`confine_child`): threads started before the drop all end with only
    /// what was kept, and `no_new_privs`.
    pub(crate) fn child_drop_on_all_threads() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut checks = Vec::new();
        let mut gos = Vec::new();
        for _ in 0..4 {
            let ready = ready_tx.clone();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            gos.push(go_tx);
            checks.push(std::thread::spawn(move || {
                ready.send(()).expect("ready");
                // Blocked in a syscall when the signal comes.
                go_rx.recv().expect("go");
                thread_caps()
            }));
        }
        for _ in 0..4 {
            ready_rx.recv().expect("ready");
        }
        drop_all_but(&[Capability::DacReadSearch]).expect("drop_all_but");
        for go in gos {
            go.send(()).expect("go");
        }
        let keep = Capability::DacReadSearch.bit();
        let mut all = vec![thread_caps()];
        all.extend(checks.into_iter().map(|t| t.join().expect("thread")));
        for caps in all {
            assert_eq!(caps["CapEff"], keep, "{caps:?}");
            assert_eq!(caps["CapPrm"], keep, "{caps:?}");
            assert_eq!(caps["CapBnd"], keep, "{caps:?}");
            assert_eq!(caps["CapInh"], 0, "{caps:?}");
            assert_eq!(caps["CapAmb"], 0, "{caps:?}");
            assert_eq!(caps["NoNewPrivs"], 1, "{caps:?}");
        }
        // And a thread started afterwards inherits the reduced sets.
        let later = std::thread::spawn(thread_caps).join().expect("thread");
        assert_eq!(later["CapEff"], keep);
        assert_eq!(later["CapBnd"], keep);
    }

    #[test]
    fn drops_on_every_thread() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let out = crate::confine::seccomp::tests::run_child("caps_drop");
        assert!(out.status.success(), "child failed: {out:?}");
    }
}

//! Pending signals with what they carry (siginfo_t): a thread's (tgkill) and a process's
//! (kill). A standard signal is pending at most once, and a second one sent while it is
//! pending is lost; real-time signals (32..=64) queue, each with its own information, up
//! to a limit, as on Linux. The set of pending numbers is kept beside the queue so the
//! run loop can look without taking the lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::signal::sigbit;
use super::thread_group::ThreadGroup;
use crate::waiter::WaitQueue;

/// The first real-time signal (SIGRTMIN in the kernel's numbering).
pub const SIGRTMIN: u8 = 32;
/// Queued signals one queue holds at most (Linux: RLIMIT_SIGPENDING, per user).
pub const MAX_QUEUED: usize = 1024;
/// sizeof(siginfo_t).
pub const SIGINFO_SIZE: usize = 128;

/// si_code values of the senders the sentry has.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_QUEUE: i32 = -1;
pub const SI_TIMER: i32 = -2;
pub const SI_TKILL: i32 = -6;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;

/// One signal's siginfo_t, as the guest reads it (handler, sigwaitinfo, signalfd).
#[derive(Clone, PartialEq, Eq)]
pub struct SigInfo(pub [u8; SIGINFO_SIZE]);

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigInfo(signo {}, code {})", self.signo(), self.code())
    }
}

impl SigInfo {
    fn with(signo: u8, code: i32) -> SigInfo {
        let mut b = [0u8; SIGINFO_SIZE];
        b[..4].copy_from_slice(&i32::from(signo).to_le_bytes());
        b[8..12].copy_from_slice(&code.to_le_bytes());
        SigInfo(b)
    }

    fn put(&mut self, off: usize, v: &[u8]) {
        self.0[off..off + v.len()].copy_from_slice(v);
    }

    fn i32_at(&self, off: usize) -> i32 {
        i32::from_le_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }

    fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[off..off + 8]);
        u64::from_le_bytes(b)
    }

    /// kill (SI_USER), tkill/tgkill (SI_TKILL): the sender's pid and real uid.
    pub fn user(signo: u8, code: i32, pid: i32, uid: u32) -> SigInfo {
        let mut i = SigInfo::with(signo, code);
        i.put(16, &pid.to_le_bytes());
        i.put(20, &uid.to_le_bytes());
        i
    }

    /// Sent by the kernel itself (SIGALRM of ITIMER_REAL, for one).
    pub fn kernel(signo: u8) -> SigInfo {
        SigInfo::with(signo, SI_KERNEL)
    }

    /// SIGCHLD: the child's pid and uid, how it ended (`code`) and its exit code or
    /// signal; user and system times in clock ticks.
    pub fn child(code: i32, pid: i32, uid: u32, status: i32) -> SigInfo {
        let mut i = SigInfo::with(super::signal::SIGCHLD, code);
        i.put(16, &pid.to_le_bytes());
        i.put(20, &uid.to_le_bytes());
        i.put(24, &status.to_le_bytes());
        i
    }

    /// A POSIX timer's expiry: timer id, overrun count and the sigev_value.
    pub fn timer(signo: u8, id: i32, overrun: i32, value: u64) -> SigInfo {
        let mut i = SigInfo::with(signo, SI_TIMER);
        i.put(16, &id.to_le_bytes());
        i.put(20, &overrun.to_le_bytes());
        i.put(24, &value.to_le_bytes());
        i
    }

    /// rt_sigqueueinfo: the sender's own siginfo, with the signal number set.
    pub fn raw(signo: u8, mut bytes: [u8; SIGINFO_SIZE]) -> SigInfo {
        bytes[..4].copy_from_slice(&i32::from(signo).to_le_bytes());
        SigInfo(bytes)
    }

    pub fn signo(&self) -> u8 {
        self.i32_at(0) as u8
    }

    pub fn code(&self) -> i32 {
        self.i32_at(8)
    }

    /// struct signalfd_siginfo (128 bytes), as Linux's signalfd_copyinfo fills it from
    /// the siginfo's layout for its code.
    pub fn to_signalfd(&self) -> [u8; SIGINFO_SIZE] {
        let mut b = [0u8; SIGINFO_SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &u32::from(self.signo()).to_le_bytes());
        put(4, &self.i32_at(4).to_le_bytes());
        put(8, &self.code().to_le_bytes());
        let code = self.code();
        if code == SI_TIMER {
            put(24, &self.i32_at(16).to_le_bytes()); // ssi_tid
            put(32, &self.i32_at(20).to_le_bytes()); // ssi_overrun
            put(44, &self.i32_at(24).to_le_bytes()); // ssi_int
            put(48, &self.u64_at(24).to_le_bytes()); // ssi_ptr
        } else if self.signo() == super::signal::SIGCHLD && code > 0 {
            put(12, &self.i32_at(16).to_le_bytes()); // ssi_pid
            put(16, &self.i32_at(20).to_le_bytes()); // ssi_uid
            put(40, &self.i32_at(24).to_le_bytes()); // ssi_status
            put(56, &self.u64_at(32).to_le_bytes()); // ssi_utime
            put(64, &self.u64_at(40).to_le_bytes()); // ssi_stime
        } else if code <= 0 {
            // Sent by a process: kill, tgkill, sigqueue.
            put(12, &self.i32_at(16).to_le_bytes());
            put(16, &self.i32_at(20).to_le_bytes());
            put(44, &self.i32_at(24).to_le_bytes());
            put(48, &self.u64_at(24).to_le_bytes());
        }
        b
    }
}

/// The wait queues of every open signalfd: woken whenever a signal is sent, since a
/// signalfd reads the signals of whichever thread reads it (Linux wakes the sender's
/// sighand queue; the sentry, not knowing who will read, wakes them all: readers look
/// again and sleep if nothing of theirs is pending).
static SIGNALFDS: Mutex<Vec<Weak<WaitQueue>>> = Mutex::new(Vec::new());

/// Have `queue` woken when signals are sent (a new signalfd).
pub fn watch_signals(queue: &Arc<WaitQueue>) {
    let mut list = SIGNALFDS.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(queue));
}

/// Wake every signalfd's readers and pollers.
pub fn notify_signalfds() {
    let list = SIGNALFDS.lock().unwrap_or_else(|e| e.into_inner());
    for q in list.iter().filter_map(Weak::upgrade) {
        q.notify_all();
    }
}

thread_local! {
    /// The pending signals of the guest thread this host thread runs, and of its
    /// process: what a signalfd read or poll looks at (Linux: `current`'s).
    static CURRENT: std::cell::RefCell<Option<(Arc<PendingSignals>, Weak<ThreadGroup>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Record the guest thread this host thread runs (at its start).
pub fn set_current(own: &Arc<PendingSignals>, group: &Arc<ThreadGroup>) {
    CURRENT.with(|c| *c.borrow_mut() = Some((own.clone(), Arc::downgrade(group))));
}

/// Take one of the calling guest thread's pending signals in `set` (its own first).
pub fn take_current(set: u64) -> Option<SigInfo> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let (own, group) = c.as_ref()?;
        let group = group.upgrade()?;
        super::run::take_from(own, &group.pending, set)
    })
}

/// The calling guest thread's pending signals (its own and its process's), as a set.
pub fn current_bits() -> u64 {
    CURRENT.with(|c| {
        c.borrow().as_ref().map_or(0, |(own, group)| {
            own.bits() | group.upgrade().map_or(0, |g| g.pending.bits())
        })
    })
}

/// A thread's or a process's pending signals.
#[derive(Default)]
pub struct PendingSignals {
    /// Bit n-1 for each signal n with at least one queued.
    bits: AtomicU64,
    queue: Mutex<Vec<SigInfo>>,
}

/// What became of a signal sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Now pending.
    Yes,
    /// A standard signal already pending: this one merges into it.
    Merged,
    /// A real-time signal past the queue's limit (sigqueue: EAGAIN).
    Full,
}

impl PendingSignals {
    fn lock(&self) -> MutexGuard<'_, Vec<SigInfo>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signals pending, as a set (bit n-1 for signal n).
    pub fn bits(&self) -> u64 {
        self.bits.load(Ordering::SeqCst)
    }

    pub fn send(&self, info: SigInfo) -> Queued {
        let signo = info.signo();
        let bit = sigbit(signo);
        let mut q = self.lock();
        if signo < SIGRTMIN && self.bits() & bit != 0 {
            return Queued::Merged;
        }
        // Past the limit only real-time signals are refused: a standard one is always
        // delivered (Linux then drops its information; here it is kept).
        if q.len() >= MAX_QUEUED && signo >= SIGRTMIN {
            return Queued::Full;
        }
        q.push(info);
        self.bits.fetch_or(bit, Ordering::SeqCst);
        Queued::Yes
    }

    /// Take the lowest-numbered pending signal in `set`: the first queued of that number.
    pub fn take(&self, set: u64) -> Option<SigInfo> {
        if self.bits() & set == 0 {
            return None;
        }
        let mut q = self.lock();
        let avail = self.bits() & set;
        if avail == 0 {
            return None;
        }
        let signo = avail.trailing_zeros() as u8 + 1;
        let at = q.iter().position(|i| i.signo() == signo)?;
        let info = q.remove(at);
        if !q.iter().any(|i| i.signo() == signo) {
            self.bits.fetch_and(!sigbit(signo), Ordering::SeqCst);
        }
        Some(info)
    }

    /// A POSIX timer's expiry signal `signo` for timer `id` still queued: add `count`
    /// to its overrun (saturating) and return the new overrun; None if none is queued.
    pub fn bump_timer(&self, signo: u8, id: i32, count: u64) -> Option<i32> {
        let mut q = self.lock();
        let info = q
            .iter_mut()
            .find(|i| i.signo() == signo && i.code() == SI_TIMER && i.i32_at(16) == id)?;
        let add = i32::try_from(count).unwrap_or(i32::MAX);
        let overrun = info.i32_at(20).saturating_add(add);
        info.put(20, &overrun.to_le_bytes());
        Some(overrun)
    }

    /// Forget timer `id`'s expiry signal `signo` if it is queued (the timer was set
    /// again: Linux drops a signal of the timer's earlier setting).
    pub fn remove_timer(&self, signo: u8, id: i32) {
        let mut q = self.lock();
        let Some(at) = q
            .iter()
            .position(|i| i.signo() == signo && i.code() == SI_TIMER && i.i32_at(16) == id)
        else {
            return;
        };
        q.remove(at);
        if !q.iter().any(|i| i.signo() == signo) {
            self.bits.fetch_and(!sigbit(signo), Ordering::SeqCst);
        }
    }

    /// Every queued signal, in order (a checkpoint).
    pub fn queued(&self) -> Vec<SigInfo> {
        self.lock().clone()
    }

    /// Replace the queue (a restore); returns false if it breaks the rules (a standard
    /// signal twice, past the limit, a number out of range).
    pub fn restore(&self, infos: Vec<SigInfo>) -> bool {
        let mut bits = 0u64;
        for i in &infos {
            let signo = i.signo();
            if signo == 0 || usize::from(signo) > super::signal::NSIG {
                return false;
            }
            if signo < SIGRTMIN && bits & sigbit(signo) != 0 {
                return false;
            }
            bits |= sigbit(signo);
        }
        if infos.len() > MAX_QUEUED + usize::from(SIGRTMIN) {
            return false;
        }
        let mut q = self.lock();
        *q = infos;
        self.bits.store(bits, Ordering::SeqCst);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signals_merge_and_real_time_ones_queue() {
        let p = PendingSignals::default();
        assert_eq!(p.send(SigInfo::user(10, SI_USER, 5, 0)), Queued::Yes);
        assert_eq!(p.send(SigInfo::user(10, SI_USER, 6, 0)), Queued::Merged);
        assert_eq!(p.send(SigInfo::user(40, SI_QUEUE, 7, 0)), Queued::Yes);
        assert_eq!(p.send(SigInfo::user(40, SI_QUEUE, 8, 0)), Queued::Yes);
        assert_eq!(p.send(SigInfo::user(2, SI_USER, 9, 0)), Queued::Yes);
        assert_eq!(p.bits(), sigbit(2) | sigbit(10) | sigbit(40));
        // Lowest number first; the first sender's information is kept.
        let order: Vec<(u8, i32)> = std::iter::from_fn(|| p.take(u64::MAX))
            .map(|i| (i.signo(), i.i32_at(16)))
            .collect();
        assert_eq!(order, [(2, 9), (10, 5), (40, 7), (40, 8)]);
        assert_eq!(p.bits(), 0);
    }

    #[test]
    fn take_honours_the_set_and_the_queue_limit_holds() {
        let p = PendingSignals::default();
        for n in 0..MAX_QUEUED {
            assert_eq!(
                p.send(SigInfo::user(33, SI_QUEUE, n as i32, 0)),
                Queued::Yes
            );
        }
        assert_eq!(p.send(SigInfo::user(33, SI_QUEUE, 0, 0)), Queued::Full);
        assert_eq!(p.send(SigInfo::user(15, SI_USER, 0, 0)), Queued::Yes);
        assert!(p.take(sigbit(14)).is_none());
        assert_eq!(p.take(sigbit(15) | sigbit(33)).map(|i| i.signo()), Some(15));
    }

    #[test]
    fn a_restored_queue_is_checked() {
        let p = PendingSignals::default();
        let twice = vec![SigInfo::kernel(14), SigInfo::kernel(14)];
        assert!(!p.restore(twice));
        assert!(!p.restore(vec![SigInfo::kernel(0)]));
        assert!(!p.restore(vec![SigInfo::kernel(65)]));
        assert!(p.restore(vec![SigInfo::kernel(14), SigInfo::timer(34, 1, 0, 9)]));
        assert_eq!(p.bits(), sigbit(14) | sigbit(34));
    }

    #[test]
    fn signalfd_layout_follows_the_code() {
        let t = SigInfo::timer(34, 3, 2, 0xabcd).to_signalfd();
        assert_eq!(u32::from_le_bytes([t[0], t[1], t[2], t[3]]), 34);
        assert_eq!(t[24], 3);
        assert_eq!(t[32], 2);
        assert_eq!(&t[48..50], &[0xcd, 0xab]);
        let c = SigInfo::child(CLD_EXITED, 42, 1000, 7).to_signalfd();
        assert_eq!(c[12], 42);
        assert_eq!(u32::from_le_bytes([c[16], c[17], c[18], c[19]]), 1000);
        assert_eq!(c[40], 7);
    }
}

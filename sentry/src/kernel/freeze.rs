//! Stopping every guest thread: pausing a sandbox (`runsc pause`) and checkpointing it.
//!
//! Each guest thread passes the gate before every entry into the guest. Pausing closes
//! the gate and kicks every thread out of guest mode; threads busy in the sentry (a
//! blocking read, a futex wait) finish what they do and stop at the gate on their way
//! back. Nothing the guest can observe changes but time.
//!
//! A checkpoint closes the gate too, and also interrupts threads blocked in the sentry:
//! their syscalls end as if a signal had come, and with no signal to deliver each is
//! rewound to run again (`syscalls::dispatch`) (as Linux restarts a syscall of a stopped process). At the gate,
//! each thread deposits a [`ThreadSnapshot`] once per checkpoint and waits; the
//! checkpoint has every thread's final registers once every live thread has deposited.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::signal::AltStack;
use super::task::{Credentials, ProcessInfo, Rlimits};
use super::thread_group::ThreadGroup;
use crate::arch::UserRegs;
use crate::mm::MemoryManager;
use crate::vfs::{FdTable, Vfs};

/// A thread as a checkpoint sees it at the gate: its registers and FPU state, and
/// handles to the objects it uses (saved once each, however many threads share them).
pub struct ThreadSnapshot {
    pub tid: i32,
    pub regs: UserRegs,
    /// The XSAVE image (None if the vCPU would not give it: the checkpoint fails).
    pub fpu: Option<Vec<u8>>,
    pub mm: Arc<MemoryManager>,
    pub files: Arc<FdTable>,
    pub vfs: Arc<Vfs>,
    pub cwd: Vec<u8>,
    pub umask: u32,
    pub process: ProcessInfo,
    pub creds: Credentials,
    pub rlimits: Rlimits,
    pub mask: u64,
    pub altstack: AltStack,
    pub saved_mask: Option<u64>,
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    pub group: Arc<ThreadGroup>,
    /// Signals sent to this thread and not delivered yet.
    pub pending: Vec<super::sigqueue::SigInfo>,
}

#[derive(Default)]
struct Gate {
    /// `runsc pause`.
    paused: bool,
    /// A checkpoint in progress: the threads that deposited, and their snapshots.
    collecting: Option<(HashSet<i32>, Vec<ThreadSnapshot>)>,
}

#[derive(Default)]
pub struct Freezer {
    /// Fast path: read on every guest entry. Paused or collecting.
    closed: AtomicBool,
    gate: Mutex<Gate>,
    /// Notified when the gate opens or a checkpoint starts collecting.
    opened: Condvar,
    /// Notified when a thread deposits its snapshot.
    arrived: Condvar,
}

impl Freezer {
    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_closed(&self, g: &Gate) {
        self.closed
            .store(g.paused || g.collecting.is_some(), Ordering::SeqCst);
    }

    /// Close the gate (the caller then kicks the threads).
    pub fn pause(&self) {
        let mut g = self.gate();
        g.paused = true;
        self.set_closed(&g);
    }

    /// Open the gate (unless a checkpoint holds it) and let every waiting thread go.
    pub fn resume(&self) {
        let mut g = self.gate();
        g.paused = false;
        self.set_closed(&g);
        self.opened.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.gate().paused
    }

    /// Block while the gate is closed. During a checkpoint, deposit `snapshot()` of
    /// thread `tid` once, then wait.
    pub fn pass(&self, tid: i32, snapshot: &mut dyn FnMut() -> ThreadSnapshot) {
        if !self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut g = self.gate();
        while self.closed.load(Ordering::SeqCst) {
            if let Some((done, snaps)) = &mut g.collecting {
                if done.insert(tid) {
                    snaps.push(snapshot());
                    self.arrived.notify_all();
                }
            }
            g = self.opened.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Start a checkpoint: close the gate and have every thread that reaches it
    /// deposit its snapshot (threads parked by a pause are woken to do so). The caller
    /// then interrupts every thread.
    pub fn begin_checkpoint(&self) {
        let mut g = self.gate();
        g.collecting = Some((HashSet::new(), Vec::new()));
        self.set_closed(&g);
        self.opened.notify_all();
    }

    /// Wait until as many threads as `live()` says exist have deposited, or `timeout`;
    /// the snapshots, or the tids that did deposit. The gate stays closed either way.
    pub fn collect(
        &self,
        live: &dyn Fn() -> usize,
        timeout: Duration,
    ) -> Result<Vec<ThreadSnapshot>, Vec<i32>> {
        let deadline = Instant::now() + timeout;
        let mut g = self.gate();
        loop {
            let Some((done, snaps)) = &mut g.collecting else {
                return Err(Vec::new());
            };
            if snaps.len() >= live() {
                return Ok(std::mem::take(snaps));
            }
            let now = Instant::now();
            if now >= deadline {
                let mut tids: Vec<i32> = done.iter().copied().collect();
                tids.sort_unstable();
                return Err(tids);
            }
            // Threads also leave without depositing (they exit): poll as well.
            let wait = (deadline - now).min(Duration::from_millis(10));
            g = self
                .arrived
                .wait_timeout(g, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// End a checkpoint: the gate opens unless the sandbox is paused.
    pub fn end_checkpoint(&self) {
        let mut g = self.gate();
        g.collecting = None;
        self.set_closed(&g);
        self.opened.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_holds_threads_until_resume() {
        let f = Arc::new(Freezer::default());
        let mut never = || -> ThreadSnapshot { unreachable!("no checkpoint") };
        f.pass(1, &mut never);
        f.pause();
        let f2 = f.clone();
        let t = std::thread::spawn(move || {
            let mut never = || -> ThreadSnapshot { unreachable!("no checkpoint") };
            f2.pass(1, &mut never)
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "a paused thread must wait");
        f.resume();
        t.join().expect("joined");
    }

    #[test]
    fn a_checkpoint_that_misses_a_thread_times_out_naming_who_came() {
        let f = Freezer::default();
        f.begin_checkpoint();
        assert!(f.closed.load(Ordering::SeqCst));
        let err = f
            .collect(&|| 1, Duration::from_millis(30))
            .err()
            .expect("nobody deposited");
        assert!(err.is_empty());
        f.end_checkpoint();
        assert!(!f.closed.load(Ordering::SeqCst));
    }
}

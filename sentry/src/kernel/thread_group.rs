//! A thread group (a process): its members, its shared signal dispositions, and how it
//! ends. Each member runs on its own host thread with its own vCPU.
//!
//! Lock order: `members` before any waiter's lock (kicks notify waiters while holding it).
//! `children_cpu` is taken alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use super::cputime::{CpuTimes, GroupClocks, ThreadClock};
use super::exit::ExitStatus;
use super::signal::{SigAction, NSIG, SIGKILL};
use super::sigqueue::{PendingSignals, Queued, SigInfo};
use crate::platform::kick::Kicker;
use crate::waiter::{WaitQueue, Waiter};

/// What the group knows of one member thread.
pub struct Member {
    pub tid: i32,
    pub waiter: Arc<Waiter>,
    /// Signals sent to this thread (tgkill), not yet delivered.
    pub pending: Arc<PendingSignals>,
    /// Set once the member's host thread runs.
    pub kicker: Option<Kicker>,
    /// The member's signal mask as last published by its thread: a signal it blocks
    /// stays pending without interrupting it.
    pub blocked: Arc<AtomicU64>,
    /// Its mask from before a sigtimedwait that unblocked the signals it waits for
    /// (Linux's real_blocked): those still count as blocked when an ignored signal is
    /// sent. 0 outside such a wait.
    pub real_blocked: AtomicU64,
}

struct Members {
    list: Vec<Member>,
    /// The group's end, once decided (exit_group or a fatal signal).
    exit: Option<ExitStatus>,
    /// The leader's own `exit` code, which becomes the group's if nothing else decides.
    leader_code: Option<u8>,
    /// The members' CPU clocks and what ended members used: under this lock, so a
    /// member's time moves from its live clock to the dead threads' atomically, and its
    /// clock is read only while its host thread lives.
    clocks: GroupClocks,
}

/// What a parent knows of a child process.
pub struct ChildRecord {
    pub pid: i32,
    pub group: Arc<ThreadGroup>,
    /// Set once the child has ended (a zombie until reaped).
    pub status: Option<ExitStatus>,
}

/// One process's threads.
pub struct ThreadGroup {
    pub tgid: i32,
    /// The parent process, if it is in the sandbox.
    pub parent: Mutex<Weak<ThreadGroup>>,
    /// Child processes, running or ended and not yet reaped.
    pub children: Mutex<Vec<ChildRecord>>,
    /// Woken when a child ends (wait4/waitid wait here).
    pub child_events: WaitQueue,
    /// The process group, for wait(0) and kill(0); setpgid may change a child's.
    pub pgid: std::sync::atomic::AtomicI32,
    /// The session; setsid makes the process lead a new one.
    pub sid: std::sync::atomic::AtomicI32,
    /// Set by a successful execve: the parent may no longer move it to another group.
    pub execed: std::sync::atomic::AtomicBool,
    /// The thread running execve while it waits for the others to go (0: none).
    exec_by: std::sync::atomic::AtomicI32,
    members: Mutex<Members>,
    all_gone: Condvar,
    /// Dispositions, shared by every thread (CLONE_SIGHAND).
    pub actions: Arc<Mutex<[SigAction; NSIG]>>,
    /// Signals sent to the process (kill), claimed by whichever thread takes them first.
    pub pending: PendingSignals,
    /// The container (of the sandbox's pod) the process belongs to; children inherit it.
    pub container: Mutex<Arc<str>>,
    /// timer_create's timers and ITIMER_REAL (setitimer, alarm).
    pub posix_timers: super::posix_timer::PosixTimers,
    /// PR_SET_CHILD_SUBREAPER: orphans among its descendants become its children.
    pub subreaper: std::sync::atomic::AtomicBool,
    /// What other processes' /proc shows of this one (`process::publish_view`).
    pub view: Mutex<ProcessView>,
    /// Set while this is a vfork child: its parent waits for it to execve or end.
    vfork: Mutex<Option<Arc<VforkDone>>>,
    /// When the process was made (/proc/PID/stat's starttime).
    pub started: std::time::Instant,
    /// CPU time of ended children and their own reaped descendants (RUSAGE_CHILDREN).
    children_cpu: Mutex<CpuTimes>,
}

/// A vfork parent's wait for its child to give the shared memory back.
#[derive(Default)]
pub struct VforkDone {
    done: Mutex<bool>,
    cv: Condvar,
}

impl VforkDone {
    /// Wait until the child has run execve or ended, or `give_up` says to stop (the
    /// parent's own process is ending: Linux's wait is killable).
    pub fn wait(&self, give_up: &dyn Fn() -> bool) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done && !give_up() {
            done = self
                .cv
                .wait_timeout(done, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A process as another process's /proc sees it: published by its main thread at
/// execve, fork, a restore, PR_SET_NAME and credential changes.
#[derive(Clone, Default)]
pub struct ProcessView {
    pub comm: Vec<u8>,
    /// argv joined with NULs, each terminated.
    pub cmdline: Vec<u8>,
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    /// Real, effective and saved ids.
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    pub mm: Weak<crate::mm::MemoryManager>,
}

impl ThreadGroup {
    pub fn new(tgid: i32) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            tgid,
            parent: Mutex::new(Weak::new()),
            children: Mutex::new(Vec::new()),
            child_events: WaitQueue::new(),
            pgid: std::sync::atomic::AtomicI32::new(tgid),
            sid: std::sync::atomic::AtomicI32::new(tgid),
            execed: Default::default(),
            exec_by: std::sync::atomic::AtomicI32::new(0),
            members: Mutex::new(Members {
                list: Vec::new(),
                exit: None,
                leader_code: None,
                clocks: GroupClocks::default(),
            }),
            all_gone: Condvar::new(),
            actions: Arc::new(Mutex::new([SigAction::default(); NSIG])),
            container: Mutex::new(Arc::from("")),
            posix_timers: Default::default(),
            pending: PendingSignals::default(),
            subreaper: Default::default(),
            view: Mutex::default(),
            vfork: Mutex::default(),
            started: std::time::Instant::now(),
            children_cpu: Mutex::default(),
        })
    }

    /// Make this (new) process a vfork child; returns what its parent waits on.
    pub fn start_vfork(&self) -> Arc<VforkDone> {
        let done = Arc::new(VforkDone::default());
        *self.vfork.lock().unwrap_or_else(|e| e.into_inner()) = Some(done.clone());
        done
    }

    /// This process has run execve or ended: its vfork parent, if any, goes on.
    pub fn vfork_done(&self) {
        let taken = self.vfork.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(v) = taken {
            *v.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
            v.cv.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a member; fails with the group's end if it is already ending, or if the
    /// group has `limit` threads.
    pub fn join(&self, member: Member, limit: usize) -> Result<(), Option<ExitStatus>> {
        let mut m = self.lock();
        if m.exit.is_some() {
            return Err(m.exit);
        }
        if m.list.len() >= limit {
            return Err(None);
        }
        m.list.push(member);
        Ok(())
    }

    /// Record the calling member's host thread so it can be kicked.
    pub fn set_kicker(&self, tid: i32, kicker: Kicker) {
        let mut m = self.lock();
        if let Some(x) = m.list.iter_mut().find(|x| x.tid == tid) {
            x.kicker = Some(kicker);
        }
    }

    /// Record that member `tid` runs on the calling host thread, whose CPU clock is then
    /// its CPU time. Called by that thread when it starts.
    pub fn set_cpu_clock(&self, tid: i32) {
        let Some(clock) = ThreadClock::current() else {
            return;
        };
        let mut m = self.lock();
        // A member that has already left must not leave a clock behind: its host
        // thread's id could later name another thread.
        if m.list.iter().any(|x| x.tid == tid) {
            m.clocks.start(tid, clock);
        }
    }

    /// Whether every thread sleeps in the sentry (/proc's S state; R otherwise).
    pub fn asleep(&self) -> bool {
        let m = self.lock();
        !m.list.is_empty() && m.list.iter().all(|x| x.waiter.is_parked())
    }

    /// The process's CPU time: its ended threads' and its live threads' so far.
    pub fn cpu_times(&self) -> CpuTimes {
        self.lock().clocks.total()
    }

    /// Live member `tid`'s CPU time, if it runs.
    pub fn thread_cpu_times(&self, tid: i32) -> Option<CpuTimes> {
        self.lock().clocks.thread(tid)
    }

    /// CPU time of the children that have ended, with their own descendants'.
    pub fn children_cpu_times(&self) -> CpuTimes {
        *self.children_cpu.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A child has ended having used `times` (its own and its descendants').
    pub fn add_child_cpu_times(&self, times: CpuTimes) {
        let mut c = self.children_cpu.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.plus(times);
    }

    /// What /proc/PID/stat shows of the process's CPU time and start, for a sandbox
    /// that booted at `boot`.
    pub fn proc_cpu(&self, boot: std::time::Instant) -> crate::vfs::proc::ProcCpu {
        let (own, children) = (self.cpu_times(), self.children_cpu_times());
        crate::vfs::proc::ProcCpu {
            utime: own.user,
            stime: own.system,
            cutime: children.user,
            cstime: children.system,
            start: self.started.saturating_duration_since(boot),
        }
    }

    /// For a checkpoint: how the group ends if decided, the leader's own exit code, and
    /// the thread running execve (0: none).
    pub fn checkpoint_end(&self) -> (Option<ExitStatus>, Option<u8>, i32) {
        let m = self.lock();
        (
            m.exit,
            m.leader_code,
            self.exec_by.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    /// A restored group's end, as it was decided before the checkpoint.
    pub fn restore_end(&self, exit: Option<ExitStatus>, leader_code: Option<u8>) {
        let mut m = self.lock();
        m.exit = exit;
        m.leader_code = leader_code;
    }

    /// How many threads are alive.
    pub fn count(&self) -> usize {
        self.lock().list.len()
    }

    /// The group's end, if decided.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.lock().exit
    }

    /// End the whole group with `status` (the first decision wins) and stop every other
    /// member.
    pub fn exit_group(&self, status: ExitStatus, caller: i32) {
        let mut m = self.lock();
        if m.exit.is_none() {
            m.exit = Some(status);
        }
        for x in m.list.iter().filter(|x| x.tid != caller) {
            x.waiter.interrupt();
            if let Some(k) = x.kicker {
                k.kick();
            }
        }
    }

    /// A member's thread is done. Returns the group's status if it was the last.
    pub fn leave(&self, tid: i32, own_code: Option<u8>) -> Option<ExitStatus> {
        let mut m = self.lock();
        // Before the member goes: the group's time never misses or counts it twice.
        m.clocks.retire(tid);
        m.list.retain(|x| x.tid != tid);
        if tid == self.tgid {
            m.leader_code = own_code.or(m.leader_code);
        }
        if !m.list.is_empty() {
            return None;
        }
        let status = m
            .exit
            .unwrap_or(ExitStatus::Exited(m.leader_code.or(own_code).unwrap_or(0)));
        m.exit = Some(status);
        self.all_gone.notify_all();
        Some(status)
    }

    /// Wait until every member has left; returns the group's status.
    pub fn wait_all_gone(&self) -> ExitStatus {
        let mut m = self.lock();
        while !m.list.is_empty() {
            m = self.all_gone.wait(m).unwrap_or_else(|e| e.into_inner());
        }
        m.exit.unwrap_or(ExitStatus::Exited(0))
    }

    /// Send a signal to thread `tid`: queue it and kick the thread. None if no such
    /// member. SIGKILL to one thread kills its whole process, as on Linux.
    pub fn signal_thread(&self, tid: i32, info: SigInfo) -> Option<Queued> {
        let sig = info.signo();
        let bit = super::signal::sigbit(sig);
        // The dispositions' lock is taken alone, not under the members'.
        let ignored = self.ignores(sig);
        let m = self.lock();
        let x = m.list.iter().find(|x| x.tid == tid)?;
        if ignored && !Self::holds_back(x, bit) {
            return Some(Queued::Merged);
        }
        let queued = x.pending.send(info);
        if sig == SIGKILL {
            drop(m);
            self.exit_group(ExitStatus::Signaled(SIGKILL), 0);
        } else if queued == Queued::Yes && Self::wants(x, bit) {
            Self::kick_member(x);
        }
        super::sigqueue::notify_signalfds();
        Some(queued)
    }

    /// `f` on member `tid`'s pending signals; None if there is no such member.
    pub fn with_member_pending<R>(
        &self,
        tid: i32,
        f: impl FnOnce(&PendingSignals) -> R,
    ) -> Option<R> {
        let m = self.lock();
        m.list.iter().find(|x| x.tid == tid).map(|x| f(&x.pending))
    }

    /// Linux's sig_ignored: a signal whose disposition ignores it (SIG_IGN, or the
    /// default of SIGCHLD, SIGURG, SIGWINCH, SIGCONT) and that no thread holds back is
    /// dropped when sent: it neither stays pending nor interrupts a blocking call (which
    /// would restart it, a relative timeout from the start).
    fn ignores(&self, sig: u8) -> bool {
        use super::signal::{ignored_by_default, SIG_DFL, SIG_IGN};
        if sig == SIGKILL || sig == super::signal::SIGSTOP {
            return false;
        }
        let action = self
            .actions
            .lock()
            .map(|a| a[usize::from(sig - 1)])
            .unwrap_or_default();
        action.handler == SIG_IGN || (action.handler == SIG_DFL && ignored_by_default(sig))
    }

    /// Whether `x` blocks `bit`, or waits for it in sigtimedwait with it blocked before.
    fn holds_back(x: &Member, bit: u64) -> bool {
        (x.blocked.load(Ordering::SeqCst) | x.real_blocked.load(Ordering::SeqCst)) & bit != 0
    }

    /// sigtimedwait: member `tid`'s mask before the wait unblocked what it waits for
    /// (0 when the wait ends).
    pub fn set_real_blocked(&self, tid: i32, mask: u64) {
        if let Some(x) = self.lock().list.iter().find(|x| x.tid == tid) {
            x.real_blocked.store(mask, Ordering::SeqCst);
        }
    }

    /// Whether `x` does not block the signal `bit` (so it must be interrupted for it).
    fn wants(x: &Member, bit: u64) -> bool {
        x.blocked.load(Ordering::SeqCst) & bit == 0 || bit & super::signal::UNBLOCKABLE != 0
    }

    fn kick_member(x: &Member) {
        x.waiter.interrupt();
        if let Some(k) = x.kicker {
            k.kick();
        }
    }

    /// Send `sig` to the process: pending on the group, and every member that does not
    /// block it kicked so one of them takes it.
    ///
    /// SIGKILL decides the group's end here, when it is sent, as Linux does
    /// (complete_signal): every member is stopped whether or not one of them gets round
    /// to taking the signal first.
    pub fn signal_group(&self, info: SigInfo) -> Queued {
        let sig = info.signo();
        let bit = super::signal::sigbit(sig);
        if self.ignores(sig) && !self.lock().list.iter().any(|x| Self::holds_back(x, bit)) {
            // Nobody will take it: Linux drops it at once.
            return Queued::Merged;
        }
        let queued = self.pending.send(info);
        if sig == SIGKILL {
            self.exit_group(ExitStatus::Signaled(SIGKILL), 0);
            return queued;
        }
        if queued == Queued::Yes {
            let m = self.lock();
            for x in m.list.iter().filter(|x| Self::wants(x, bit)) {
                Self::kick_member(x);
            }
        }
        super::sigqueue::notify_signalfds();
        queued
    }

    /// execve from a thread of a multi-threaded process: every other thread exits first
    /// (Linux de_thread). Returns once `caller` is alone, or after `limit` if some thread
    /// cannot be stopped (one blocked in a host call that ignores kicks).
    pub fn exec_alone(&self, caller: i32, limit: std::time::Duration) {
        self.exec_by.store(caller, Ordering::SeqCst);
        {
            let m = self.lock();
            for x in m.list.iter().filter(|x| x.tid != caller) {
                Self::kick_member(x);
            }
        }
        let start = std::time::Instant::now();
        while self.count() > 1 && start.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.exec_by.store(0, Ordering::SeqCst);
    }

    /// Whether thread `tid` must exit because another thread is running execve.
    pub fn must_leave(&self, tid: i32) -> bool {
        let by = self.exec_by.load(Ordering::SeqCst);
        by != 0 && by != tid
    }

    /// Get every member out of guest mode, without interrupting what it does in the
    /// sentry (pause: each stops at its next entry into the guest).
    pub fn kick_all(&self) {
        for x in self.lock().list.iter() {
            if let Some(k) = x.kicker {
                k.kick();
            }
        }
    }

    /// Interrupt every member: out of the guest, and out of any wait in the sentry (a
    /// checkpoint's stop; with no signal pending, their syscalls restart).
    pub fn interrupt_all(&self) {
        for x in self.lock().list.iter() {
            Self::kick_member(x);
        }
    }

    pub fn container(&self) -> Arc<str> {
        self.container
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The parent's pid (0: none in the sandbox), as getppid reports it now.
    pub fn ppid(&self) -> i32 {
        self.parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
            .map_or(0, |p| p.tgid)
    }

    /// The thread ids, for /proc and diagnostics.
    pub fn tids(&self) -> Vec<i32> {
        self.lock().list.iter().map(|x| x.tid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(tid: i32) -> Member {
        Member {
            tid,
            waiter: Waiter::new(),
            pending: Default::default(),
            kicker: None,
            blocked: Arc::new(AtomicU64::new(0)),
            real_blocked: Default::default(),
        }
    }

    #[test]
    fn a_leaving_members_time_stays_with_the_group_and_children_add_up() {
        let g = ThreadGroup::new(1);
        g.join(member(1), 10).ok();
        g.join(member(2), 10).ok();
        // Only a member that is in the group gets a clock.
        g.set_cpu_clock(3);
        assert_eq!(g.thread_cpu_times(3), None);
        g.set_cpu_clock(1);
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(5) {
            std::hint::black_box(0u64);
        }
        assert!(g.thread_cpu_times(1).is_some());
        g.leave(1, Some(0));
        let after = g.cpu_times();
        assert!(after.total() > std::time::Duration::ZERO);
        assert_eq!(g.thread_cpu_times(1), None);
        assert_eq!(g.cpu_times(), after);
        let ms = std::time::Duration::from_millis;
        g.add_child_cpu_times(CpuTimes {
            user: ms(3),
            system: ms(1),
        });
        g.add_child_cpu_times(CpuTimes {
            user: ms(2),
            system: ms(0),
        });
        assert_eq!(
            g.children_cpu_times(),
            CpuTimes {
                user: ms(5),
                system: ms(1)
            }
        );
    }

    #[test]
    fn the_leaders_code_is_the_groups_when_threads_just_exit() {
        let g = ThreadGroup::new(1);
        g.join(member(1), 10).ok();
        g.join(member(2), 10).ok();
        assert_eq!(g.leave(1, Some(3)), None);
        assert_eq!(g.leave(2, Some(0)), Some(ExitStatus::Exited(3)));
    }

    #[test]
    fn exit_group_decides_and_refuses_new_members() {
        let g = ThreadGroup::new(1);
        g.join(member(1), 10).ok();
        g.exit_group(ExitStatus::Signaled(11), 1);
        assert!(g.join(member(2), 10).is_err());
        assert_eq!(g.leave(1, None), Some(ExitStatus::Signaled(11)));
    }

    #[test]
    fn sigkill_ends_the_group_when_sent() {
        let g = ThreadGroup::new(1);
        g.join(member(1), 10).ok();
        g.join(member(2), 10).ok();
        g.signal_group(SigInfo::kernel(SIGKILL));
        assert_eq!(g.exit_status(), Some(ExitStatus::Signaled(SIGKILL)));
        // A later exit_group does not change how it ended.
        g.exit_group(ExitStatus::Exited(0), 2);
        assert_eq!(g.leave(1, Some(0)), None);
        assert_eq!(g.leave(2, Some(0)), Some(ExitStatus::Signaled(SIGKILL)));
    }

    #[test]
    fn sigkill_to_one_thread_ends_its_process() {
        let g = ThreadGroup::new(1);
        g.join(member(1), 10).ok();
        g.join(member(2), 10).ok();
        assert!(g.signal_thread(2, SigInfo::kernel(SIGKILL)).is_some());
        assert_eq!(g.exit_status(), Some(ExitStatus::Signaled(SIGKILL)));
        assert!(g.signal_thread(3, SigInfo::kernel(SIGKILL)).is_none());
    }

    #[test]
    fn the_thread_limit_is_enforced() {
        let g = ThreadGroup::new(1);
        assert!(g.join(member(1), 1).is_ok());
        assert_eq!(g.join(member(2), 1), Err(None));
    }
}

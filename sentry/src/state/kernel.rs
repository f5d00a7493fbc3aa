//! Processes and threads across a checkpoint: each thread group (a process: its
//! signal dispositions, pending signals, children and zombies, its timer) and each
//! thread (registers, FPU image, credentials, limits, signal mask, and the ids of the
//! address space, fd table and file system it uses).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::vfs::FsContextState;
use super::{RestoreContext, SaveContext, StateError};
use crate::arch::UserRegs;
use crate::kernel::exit::ExitStatus;
use crate::kernel::freeze::ThreadSnapshot;
use crate::kernel::posix_timer::{Notify, Timer, ITIMER_REAL_ID, MAX_TIMERS};
use crate::kernel::signal::{AltStack, SigAction, SignalState, NSIG};
use crate::kernel::sigqueue::{PendingSignals, SigInfo, SIGINFO_SIZE};
use crate::kernel::task::{Credentials, Kernel, ProcessInfo, Rlimits, Task, MAX_THREADS};
use crate::kernel::thread_group::{ChildRecord, Member, ThreadGroup};
use crate::platform::Context;
use crate::waiter::Waiter;

/// The kernel's processes and threads.
#[derive(Serialize, Deserialize)]
pub struct KernelState {
    pub hostname: Vec<u8>,
    pub next_tid: i32,
    /// How long the kernel had been up (CLOCK_BOOTTIME and /proc/uptime continue).
    pub uptime_ns: u64,
    pub processes: Vec<ProcessState>,
    pub threads: Vec<ThreadState>,
}

/// A child as its parent knows it.
#[derive(Serialize, Deserialize)]
pub struct ChildState {
    pub pid: i32,
    /// Set once the child ended (a zombie until reaped).
    pub status: Option<ExitStatus>,
}

/// One thread group (process), running or a zombie.
#[derive(Serialize, Deserialize)]
pub struct ProcessState {
    pub tgid: i32,
    /// 0: no parent in the sandbox.
    pub parent: i32,
    pub pgid: i32,
    pub sid: i32,
    /// PR_SET_CHILD_SUBREAPER.
    pub subreaper: bool,
    /// It has run execve (setpgid by its parent is refused).
    pub execed: bool,
    pub children: Vec<ChildState>,
    pub actions: Vec<SigAction>,
    /// Signals sent to the process, each a siginfo_t.
    pub pending: Vec<Vec<u8>>,
    pub container: String,
    pub exit: Option<ExitStatus>,
    pub leader_code: Option<u8>,
    /// timer_create's timers and ITIMER_REAL (id -1): id, timer, time left in ns when
    /// armed.
    pub posix_timers: Vec<(i32, Timer, Option<u64>)>,
}

/// One thread.
#[derive(Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: i32,
    pub tgid: i32,
    pub regs: UserRegs,
    pub fpu: Vec<u8>,
    pub mm: u32,
    pub files: u32,
    pub fs: FsContextState,
    pub process: ProcessInfo,
    pub creds: Credentials,
    pub rlimits: Rlimits,
    pub mask: u64,
    pub altstack: AltStack,
    pub saved_mask: Option<u64>,
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    /// Signals sent to the thread, each a siginfo_t.
    pub pending: Vec<Vec<u8>>,
}

fn save_signals(queue: &[SigInfo]) -> Vec<Vec<u8>> {
    queue.iter().map(|i| i.0.to_vec()).collect()
}

/// Saved siginfos back; each must be exactly one siginfo_t.
fn restore_signals(saved: &[Vec<u8>]) -> Result<Vec<SigInfo>, StateError> {
    saved
        .iter()
        .map(|b| {
            <[u8; SIGINFO_SIZE]>::try_from(b.as_slice())
                .map(SigInfo)
                .map_err(|_| StateError::invalid(format!("a pending signal of {} bytes", b.len())))
        })
        .collect()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl SaveContext {
    /// The kernel's processes and `threads` (every live thread's snapshot).
    pub fn kernel(
        &mut self,
        kernel: &Kernel,
        threads: &[ThreadSnapshot],
    ) -> Result<KernelState, StateError> {
        // Every group: the live ones, and zombies their parents still hold.
        let mut groups: BTreeMap<i32, Arc<ThreadGroup>> = BTreeMap::new();
        let mut todo: Vec<Arc<ThreadGroup>> = kernel.processes.all();
        todo.extend(threads.iter().map(|t| t.group.clone()));
        while let Some(g) = todo.pop() {
            if groups.contains_key(&g.tgid) {
                continue;
            }
            for c in g.children.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                todo.push(c.group.clone());
            }
            groups.insert(g.tgid, g);
        }
        let processes = groups
            .values()
            .map(save_group)
            .collect::<Result<Vec<_>, _>>()?;
        let mut saved = Vec::with_capacity(threads.len());
        for t in threads {
            let fpu = t.fpu.clone().ok_or_else(|| {
                StateError::unsupported(format!("thread {}: its vCPU gave no FPU state", t.tid))
            })?;
            saved.push(ThreadState {
                tid: t.tid,
                tgid: t.group.tgid,
                regs: t.regs,
                fpu,
                mm: self.mm_id(&t.mm)?,
                files: self.fd_table_id(&t.files)?,
                fs: FsContextState {
                    vfs: self.vfs_id(&t.vfs)?,
                    cwd: t.cwd.clone(),
                    umask: t.umask,
                },
                process: t.process.clone(),
                creds: t.creds.clone(),
                rlimits: t.rlimits,
                mask: t.mask,
                altstack: t.altstack,
                saved_mask: t.saved_mask,
                clear_child_tid: t.clear_child_tid,
                robust_list: t.robust_list,
                pending: save_signals(&t.pending),
            });
        }
        saved.sort_by_key(|t| t.tid);
        Ok(KernelState {
            hostname: kernel
                .hostname
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            next_tid: kernel.next_tid(),
            uptime_ns: nanos(kernel.boot.elapsed()),
            processes,
            threads: saved,
        })
    }
}

fn save_group(g: &Arc<ThreadGroup>) -> Result<ProcessState, StateError> {
    let (exit, leader_code, exec_by) = g.checkpoint_end();
    if exec_by != 0 {
        return Err(StateError::unsupported(format!(
            "process {} in the middle of execve",
            g.tgid
        )));
    }
    let children = g
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|c| ChildState {
            pid: c.pid,
            status: c.status,
        })
        .collect();
    Ok(ProcessState {
        tgid: g.tgid,
        parent: g
            .parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
            .map_or(0, |p| p.tgid),
        pgid: g.pgid.load(std::sync::atomic::Ordering::SeqCst),
        sid: g.sid.load(std::sync::atomic::Ordering::SeqCst),
        subreaper: g.subreaper.load(std::sync::atomic::Ordering::SeqCst),
        execed: g.execed.load(std::sync::atomic::Ordering::SeqCst),
        children,
        actions: g.actions.lock().unwrap_or_else(|e| e.into_inner()).to_vec(),
        pending: save_signals(&g.pending.queued()),
        container: g.container().to_string(),
        exit,
        leader_code,
        posix_timers: g
            .posix_timers
            .saved()
            .into_iter()
            .map(|(id, timer, left)| (id, timer, left.map(nanos)))
            .collect(),
    })
}

/// A restored kernel's threads, built but not started, and its processes by pid.
pub struct RestoredThreads {
    pub threads: Vec<(Task, Box<dyn Context>)>,
    pub groups: HashMap<i32, Arc<ThreadGroup>>,
    /// Timers (timer_create's and ITIMER_REAL) to put back once the threads run.
    pub posix_timers: Vec<(Arc<ThreadGroup>, i32, Timer, Option<Duration>)>,
}

impl RestoreContext {
    /// Rebuild the processes and threads of `state` into `self.kernel`. The threads are
    /// returned ready to start (each with a vCPU holding its FPU state).
    pub fn threads(&mut self, state: KernelState) -> Result<RestoredThreads, StateError> {
        let kernel = self.kernel.clone();
        let mut groups: HashMap<i32, Arc<ThreadGroup>> = HashMap::new();
        let mut posix_timers = Vec::new();
        for p in &state.processes {
            if p.tgid <= 0 || groups.contains_key(&p.tgid) {
                return Err(StateError::invalid(format!("process id {}", p.tgid)));
            }
            if p.actions.len() != NSIG {
                return Err(StateError::invalid(format!(
                    "process {}: {} signal actions",
                    p.tgid,
                    p.actions.len()
                )));
            }
            let g = ThreadGroup::new(p.tgid);
            g.pgid.store(p.pgid, std::sync::atomic::Ordering::SeqCst);
            g.sid.store(p.sid, std::sync::atomic::Ordering::SeqCst);
            g.subreaper
                .store(p.subreaper, std::sync::atomic::Ordering::SeqCst);
            g.execed
                .store(p.execed, std::sync::atomic::Ordering::SeqCst);
            {
                let mut actions = g.actions.lock().unwrap_or_else(|e| e.into_inner());
                actions.copy_from_slice(&p.actions);
            }
            if !g.pending.restore(restore_signals(&p.pending)?) {
                return Err(StateError::invalid(format!(
                    "process {}: pending signals",
                    p.tgid
                )));
            }
            *g.container.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(&*p.container);
            g.restore_end(p.exit, p.leader_code);
            let mut ids = std::collections::HashSet::new();
            if p.posix_timers.len() > MAX_TIMERS + 1 {
                return Err(StateError::invalid(format!(
                    "process {}: {} timers",
                    p.tgid,
                    p.posix_timers.len()
                )));
            }
            for (id, timer, left) in &p.posix_timers {
                let signo = match timer.notify {
                    Notify::None | Notify::Alarm => None,
                    Notify::Process { signo } | Notify::Thread { signo, .. } => Some(signo),
                };
                // ITIMER_REAL has its id and kind; timer_create's have theirs.
                let alarm = timer.notify == Notify::Alarm;
                if (*id < 0 && !(*id == ITIMER_REAL_ID && alarm))
                    || (*id >= 0 && alarm)
                    || !ids.insert(*id)
                    || signo.is_some_and(|s| s == 0 || usize::from(s) > NSIG)
                {
                    return Err(StateError::invalid(format!(
                        "process {}: timer {id}",
                        p.tgid
                    )));
                }
                posix_timers.push((
                    g.clone(),
                    *id,
                    timer.clone(),
                    left.map(Duration::from_nanos),
                ));
            }
            groups.insert(p.tgid, g);
        }
        let find = |pid: i32, what: &str| {
            groups
                .get(&pid)
                .cloned()
                .ok_or_else(|| StateError::invalid(format!("{what}: no process {pid}")))
        };
        for p in &state.processes {
            let g = find(p.tgid, "process")?;
            if p.parent != 0 {
                *g.parent.lock().unwrap_or_else(|e| e.into_inner()) =
                    Arc::downgrade(&find(p.parent, "parent")?);
            }
            let mut children = g.children.lock().unwrap_or_else(|e| e.into_inner());
            for c in &p.children {
                children.push(ChildRecord {
                    pid: c.pid,
                    group: find(c.pid, "child")?,
                    status: c.status,
                });
            }
        }
        if state.threads.len() > MAX_THREADS {
            return Err(StateError::invalid(format!(
                "{} threads",
                state.threads.len()
            )));
        }
        let mut threads = Vec::with_capacity(state.threads.len());
        for t in state.threads {
            let group = find(t.tgid, "thread")?;
            let waiter = Waiter::new();
            let pending = Arc::new(PendingSignals::default());
            if !pending.restore(restore_signals(&t.pending)?) {
                return Err(StateError::invalid(format!(
                    "thread {}: pending signals",
                    t.tid
                )));
            }
            let blocked = Arc::new(AtomicU64::new(t.mask));
            let member = Member {
                tid: t.tid,
                waiter: waiter.clone(),
                pending: pending.clone(),
                kicker: None,
                blocked: blocked.clone(),
                real_blocked: Default::default(),
            };
            if t.tid <= 0 || group.join(member, MAX_THREADS).is_err() {
                return Err(StateError::invalid(format!("thread {}", t.tid)));
            }
            kernel
                .reserve_thread()
                .map_err(|errno| StateError::Restore {
                    what: format!("thread {}", t.tid),
                    errno,
                })?;
            let mut ctx = kernel.take_context().map_err(|e| {
                kernel.release_thread();
                StateError::Platform(e.to_string())
            })?;
            if ctx.set_fpu_state(&t.fpu).is_err() {
                kernel.release_thread();
                return Err(StateError::invalid(format!(
                    "thread {}: its FPU state does not load",
                    t.tid
                )));
            }
            let task = Task {
                regs: t.regs,
                mm: self.mm(t.mm)?,
                files: self.fd_table(t.files)?,
                fs: self.fs_context(t.fs)?,
                process: t.process,
                tid: t.tid,
                creds: t.creds,
                rlimits: t.rlimits,
                signals: SignalState {
                    actions: group.actions.clone(),
                    mask: t.mask,
                    altstack: t.altstack,
                    saved_mask: t.saved_mask,
                },
                clear_child_tid: t.clear_child_tid,
                robust_list: t.robust_list,
                kernel: kernel.clone(),
                exit_status: None,
                thread_exit: None,
                group: group.clone(),
                pending,
                blocked,
                restart: None,
                regs_replaced: false,
                fpu_restore: None,
                fpu_layout: (ctx.fpu_size(), ctx.fpu_features()),
                waiter,
            };
            crate::kernel::process::publish_view(&task);
            threads.push((task, ctx));
        }
        // An address space several processes use (CLONE_VM) counts each of them, so the
        // first to end does not take it from the others.
        let mut users: HashMap<*const crate::mm::MemoryManager, std::collections::HashSet<i32>> =
            HashMap::new();
        for (task, _) in &threads {
            users
                .entry(Arc::as_ptr(&task.mm))
                .or_default()
                .insert(task.group.tgid);
        }
        for (task, _) in &threads {
            if let Some(groups) = users.remove(&Arc::as_ptr(&task.mm)) {
                for _ in 1..groups.len() {
                    task.mm.share();
                }
            }
        }
        // Zombies stay out of the process table, as when they ended.
        for g in groups.values().filter(|g| g.count() > 0) {
            kernel.register_process(g);
        }
        Ok(RestoredThreads {
            threads,
            groups,
            posix_timers,
        })
    }
}

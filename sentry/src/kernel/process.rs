//! Processes: fork, the parent/child relation, reaping (wait4/waitid) and SIGCHLD.
//!
//! Lock order: a parent's `children` before a child's anything; while an ending
//! process's orphans move, its `children` before its reaper's (see `reparent_children`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::exit::ExitStatus;
use super::run::spawn_thread;
use super::signal::{SigAction, SignalState, NSIG, SIGCHLD, SIG_IGN};
use super::sigqueue::{SigInfo, CLD_EXITED, CLD_KILLED};
use super::task::{Task, MAX_THREADS};
use super::thread_group::{ChildRecord, Member, ThreadGroup};
use crate::abi::Errno;
use crate::waiter::{Waiter, Wake};

/// SA_NOCLDWAIT: children of this process are reaped automatically.
const SA_NOCLDWAIT: u64 = 0x2;

/// How a new process gets its memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ForkMemory {
    /// A copy of the caller's (fork).
    Copy,
    /// The caller's own, until the child runs execve or ends (CLONE_VM).
    Shared,
    /// Shared, and the caller waits until the child gives it back (vfork, posix_spawn:
    /// the child runs on the caller's stack).
    SharedVfork,
}

/// fork(2): a new process with the caller's address space (copied or shared), a copy
/// of its fd table and signal dispositions, running one thread that returns 0 from the
/// call. `stack` (if non-zero) becomes the child's rsp (clone with a stack, as
/// posix_spawn does).
pub fn fork(
    t: &mut Task,
    memory: ForkMemory,
    stack: u64,
    child_tid_addr: Option<u64>,
    clear_tid: Option<u64>,
    parent_tid_addr: Option<u64>,
) -> Result<i32, Errno> {
    t.kernel.reserve_thread()?;
    let result = fork_reserved(t, memory, stack, child_tid_addr, clear_tid);
    if result.is_err() {
        t.kernel.release_thread();
    }
    let (pid, vfork) = result?;
    // CLONE_PARENT_SETTID: written before a vfork parent waits, as Linux does; a
    // fault here does not undo the child.
    let settid = parent_tid_addr.map(|addr| t.mm.write_u32(addr, pid as u32));
    if let Some(done) = vfork {
        let group = t.group.clone();
        done.wait(&|| group.exit_status().is_some());
    }
    settid.transpose()?;
    Ok(pid)
}

fn fork_reserved(
    t: &mut Task,
    memory: ForkMemory,
    stack: u64,
    child_tid_addr: Option<u64>,
    clear_tid: Option<u64>,
) -> Result<(i32, Option<Arc<super::thread_group::VforkDone>>), Errno> {
    let mm = if memory == ForkMemory::Copy {
        let space = t
            .kernel
            .platform
            .new_address_space()
            .map_err(|_| Errno::ENOMEM)?;
        Arc::new(t.mm.fork(space).map_err(|_| Errno::ENOMEM)?)
    } else {
        t.mm.clone()
    };
    let pid = t.kernel.alloc_tid();
    let group = ThreadGroup::new(pid);
    let vfork = (memory == ForkMemory::SharedVfork).then(|| group.start_vfork());
    *group.parent.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&t.group);
    group
        .pgid
        .store(t.group.pgid.load(Ordering::Relaxed), Ordering::Relaxed);
    group
        .sid
        .store(t.group.sid.load(Ordering::Relaxed), Ordering::Relaxed);
    *group.container.lock().unwrap_or_else(|e| e.into_inner()) = t.group.container();
    // The child gets its own copy of the dispositions.
    let actions = t
        .signals
        .actions
        .lock()
        .map(|a| *a)
        .unwrap_or([SigAction::default(); NSIG]);
    *group.actions.lock().unwrap_or_else(|e| e.into_inner()) = actions;
    let waiter = Waiter::new();
    let pending = Arc::new(super::sigqueue::PendingSignals::default());
    let blocked = Arc::new(AtomicU64::new(t.signals.mask));
    group
        .join(
            Member {
                tid: pid,
                waiter: waiter.clone(),
                pending: pending.clone(),
                kicker: None,
                blocked: blocked.clone(),
                real_blocked: Default::default(),
            },
            MAX_THREADS,
        )
        .map_err(|_| Errno::EAGAIN)?;
    let ctx = t.kernel.take_context().map_err(|_| Errno::EAGAIN)?;

    let mut regs = t.regs;
    regs.rax = 0;
    if stack != 0 {
        regs.rsp = stack;
    }
    let mut process = t.process.clone();
    process.pid = pid;
    let child = Task {
        regs,
        mm,
        files: Arc::new(t.files.fork()),
        fs: t.fs.fork(),
        process,
        tid: pid,
        creds: t.creds.clone(),
        rlimits: t.rlimits,
        signals: SignalState {
            actions: group.actions.clone(),
            mask: t.signals.mask,
            altstack: t.signals.altstack,
            saved_mask: None,
        },
        clear_child_tid: clear_tid.unwrap_or(0),
        robust_list: (0, 0),
        kernel: t.kernel.clone(),
        exit_status: None,
        thread_exit: None,
        group: group.clone(),
        pending,
        blocked,
        restart: None,
        regs_replaced: false,
        fpu_restore: None,
        fpu_layout: t.fpu_layout,
        waiter,
    };
    if let Some(addr) = child_tid_addr {
        // CLONE_CHILD_SETTID writes into the child's memory.
        let _ = child.mm.write_u32(addr, pid as u32);
    }
    t.group
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(ChildRecord {
            pid,
            group: group.clone(),
            status: None,
        });
    t.kernel.register_process(&group);
    publish_view(&child);
    if memory != ForkMemory::Copy {
        t.mm.share();
    }
    if let Err(e) = spawn_thread(child, ctx) {
        if memory != ForkMemory::Copy {
            t.mm.leave();
        }
        t.group
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.pid != pid);
        t.kernel.unregister_process(pid);
        return Err(e);
    }
    Ok((pid, vfork))
}

/// The last thread of `group` has gone: tell the parent (status, SIGCHLD), or reap at
/// once if the parent does not want to wait.
pub fn group_ended(task: &Task, status: ExitStatus) {
    let group = &task.group;
    // Linux's exit_notify: the children go to their new parent before the old parent
    // hears of this one.
    reparent_children(task);
    // The parent and its record of this child. A parent that is ending hands its records
    // to their new parent, and repoints each child, under its `children` lock
    // (`reparent_children`): a record missing from the list of the parent read here was
    // moved meanwhile, and the child's parent pointer already names where to.
    let (parent, action) = loop {
        let Some(parent) = group
            .parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
        else {
            task.kernel.unregister_process(group.tgid);
            return;
        };
        let action = parent
            .actions
            .lock()
            .map(|a| a[(SIGCHLD - 1) as usize])
            .unwrap_or_default();
        let autoreap = action.handler == SIG_IGN || action.flags & SA_NOCLDWAIT != 0;
        let mut children = parent.children.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = children.iter().position(|c| c.pid == group.tgid) {
            if autoreap {
                children.remove(i);
            } else {
                children[i].status = Some(status);
            }
            drop(children);
            if autoreap {
                task.kernel.unregister_process(group.tgid);
            }
            break (parent, action);
        }
        drop(children);
        let moved = group
            .parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
            .is_some_and(|now| !Arc::ptr_eq(&now, &parent));
        if !moved {
            task.kernel.unregister_process(group.tgid);
            return;
        }
    };
    // The status is recorded first, then SIGCHLD is made pending, then waiters wake: a
    // parent sleeping in wait4 finds the child and gets the signal on the way out, as
    // on Linux, instead of the signal interrupting whatever it does next.
    if action.handler != SIG_IGN {
        let (code, value) = match status {
            ExitStatus::Exited(c) => (CLD_EXITED, i32::from(c)),
            ExitStatus::Signaled(s) => (CLD_KILLED, i32::from(s)),
        };
        parent.signal_group(SigInfo::child(code, group.tgid, task.creds.uid, value));
    }
    parent.child_events.notify_all();
}

/// Publish what other processes' /proc shows of `task`'s process (its main thread's
/// identity, command line and memory). Other threads' changes are not the process's.
pub fn publish_view(task: &Task) {
    if task.tid != task.process.pid {
        return;
    }
    let mut cmdline = Vec::new();
    for a in &task.process.argv {
        cmdline.extend_from_slice(a);
        cmdline.push(0);
    }
    let c = &task.creds;
    *task.group.view.lock().unwrap_or_else(|e| e.into_inner()) = super::thread_group::ProcessView {
        comm: task.process.comm.clone(),
        cmdline,
        exe: task.process.exe.clone(),
        cwd: task.fs.cwd.clone(),
        uids: [c.uid, c.euid, c.suid],
        gids: [c.gid, c.egid, c.sgid],
        mm: Arc::downgrade(&task.mm),
    };
}

/// Who adopts the orphans of `group`: the nearest ancestor that made itself a
/// subreaper, else the root of its tree (the container's init). None when `group` is
/// that root.
fn reaper_for(group: &ThreadGroup) -> Option<Arc<ThreadGroup>> {
    let mut top = None;
    let mut cur = group
        .parent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .upgrade();
    while let Some(p) = cur {
        if p.subreaper.load(Ordering::SeqCst) {
            return Some(p);
        }
        cur = p.parent.lock().unwrap_or_else(|e| e.into_inner()).upgrade();
        top = Some(p);
    }
    top
}

/// The process `task` ends: its children, running or zombies, become the reaper's (its
/// getppid says so, its wait finds them; a zombie among them is announced with
/// SIGCHLD). With no reaper they are nobody's: each is forgotten as it ends.
///
/// The whole move happens under this process's `children` lock, the reaper's taken
/// inside it (a descendant's before an ancestor's: nothing takes them the other way
/// round), so a child ending meanwhile finds its record in one list or the other.
fn reparent_children(task: &Task) {
    let group = &task.group;
    let reaper = reaper_for(group);
    let mut orphans = group.children.lock().unwrap_or_else(|e| e.into_inner());
    if orphans.is_empty() {
        return;
    }
    let Some(reaper) = reaper else {
        for c in orphans.drain(..) {
            *c.group.parent.lock().unwrap_or_else(|e| e.into_inner()) = Weak::new();
            if c.status.is_some() {
                task.kernel.unregister_process(c.pid);
            }
        }
        return;
    };
    let action = reaper
        .actions
        .lock()
        .map(|a| a[(SIGCHLD - 1) as usize])
        .unwrap_or_default();
    let autoreap = action.handler == SIG_IGN || action.flags & SA_NOCLDWAIT != 0;
    let mut zombies = false;
    {
        let mut adopted = reaper.children.lock().unwrap_or_else(|e| e.into_inner());
        for c in orphans.drain(..) {
            *c.group.parent.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&reaper);
            if c.status.is_some() {
                if autoreap {
                    task.kernel.unregister_process(c.pid);
                    continue;
                }
                zombies = true;
            }
            adopted.push(c);
        }
    }
    drop(orphans);
    if zombies && action.handler != SIG_IGN {
        reaper.signal_group(SigInfo::kernel(SIGCHLD));
    }
    reaper.child_events.notify_all();
}

/// Which children a wait call is about.
#[derive(Clone, Copy, Debug)]
pub enum WaitFor {
    Any,
    Pid(i32),
    Pgid(i32),
}

/// Wait for a child to end. Returns (pid, status), or None with WNOHANG when no child
/// has ended yet. `reap` false leaves the child waitable (WNOWAIT).
pub fn wait_child(
    task: &Task,
    which: WaitFor,
    nohang: bool,
    reap: bool,
) -> Result<Option<(i32, ExitStatus)>, Errno> {
    let group = &task.group;
    let deadline: Option<Instant> = None;
    let mut interrupted = false;
    loop {
        task.waiter.reset();
        group.child_events.register(&task.waiter);
        let found = {
            let mut children = group.children.lock().unwrap_or_else(|e| e.into_inner());
            let matches = |c: &ChildRecord| match which {
                WaitFor::Any => true,
                WaitFor::Pid(p) => c.pid == p,
                WaitFor::Pgid(g) => c.group.pgid.load(Ordering::Relaxed) == g,
            };
            if !children.iter().any(&matches) {
                group.child_events.unregister(&task.waiter);
                return Err(Errno::ECHILD);
            }
            let pos = children
                .iter()
                .position(|c| matches(c) && c.status.is_some());
            pos.map(|i| {
                let c = &children[i];
                let out = (c.pid, c.status.unwrap_or(ExitStatus::Exited(0)));
                if reap {
                    children.remove(i);
                }
                out
            })
        };
        if let Some((pid, status)) = found {
            group.child_events.unregister(&task.waiter);
            if reap {
                task.kernel.unregister_process(pid);
            }
            return Ok(Some((pid, status)));
        }
        if nohang {
            group.child_events.unregister(&task.waiter);
            return Ok(None);
        }
        if interrupted {
            group.child_events.unregister(&task.waiter);
            return Err(Errno::ERESTARTSYS);
        }
        // On an interruption, look once more: a child that ended together with the
        // signal (its SIGCHLD) is reported, as Linux does.
        interrupted = task.waiter.wait(deadline) == Wake::Interrupted;
    }
}

/// The processes of a sandbox, by pid, for kill(2).
#[derive(Default)]
pub struct ProcessTable {
    groups: std::sync::Mutex<std::collections::HashMap<i32, Weak<ThreadGroup>>>,
}

impl ProcessTable {
    pub fn insert(&self, g: &Arc<ThreadGroup>) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g.tgid, Arc::downgrade(g));
    }
    pub fn remove(&self, pid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }
    pub fn get(&self, pid: i32) -> Option<Arc<ThreadGroup>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pid)
            .and_then(Weak::upgrade)
    }
    pub fn all(&self) -> Vec<Arc<ThreadGroup>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

//! A guest task (thread) and the sandbox-wide kernel state it shares.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::exit::ExitStatus;
use super::signal::SignalState;
use crate::arch::UserRegs;
use crate::mm::MemoryManager;
use crate::vfs::{FdTable, FsContext};

use crate::platform::{AddressSpace, Context, PlatformError};

/// What the kernel needs from the platform: fresh address spaces over guest memory
/// (execve) and execution contexts (new threads).
pub trait AddressSpaceFactory: Send + Sync {
    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError>;
    fn restore_address_space(
        &self,
        root: crate::platform::memory::Gpa,
    ) -> Result<Arc<dyn AddressSpace>, PlatformError>;
    fn memory(&self) -> Arc<crate::platform::memory::GuestMemory>;
    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError>;
}

impl<P: crate::platform::Platform> AddressSpaceFactory for P
where
    P::Context: 'static,
{
    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        crate::platform::Platform::new_address_space(self)
    }
    fn restore_address_space(
        &self,
        root: crate::platform::memory::Gpa,
    ) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        crate::platform::Platform::restore_address_space(self, root)
    }
    fn memory(&self) -> Arc<crate::platform::memory::GuestMemory> {
        crate::platform::Platform::memory(self).clone()
    }
    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        Ok(Box::new(crate::platform::Platform::new_context(self)?))
    }
}

/// Threads a sandbox may have at once (the "pids" limit): a thread bomb gets EAGAIN.
pub const MAX_THREADS: usize = 1024;

/// Sandbox-wide state: identity, clocks, and syscall accounting.
pub struct Kernel {
    pub platform: Arc<dyn AddressSpaceFactory>,
    pub hostname: Mutex<Vec<u8>>,
    pub boot: Instant,
    /// Syscall numbers that returned ENOSYS, each logged once.
    unknown_syscalls: Mutex<HashSet<u64>>,
    /// How many ENOSYS returns there were.
    pub enosys_count: AtomicU64,
    pub futexes: super::futex::FutexTable,
    pub processes: super::process::ProcessTable,
    live_threads: std::sync::atomic::AtomicUsize,
    next_tid: std::sync::atomic::AtomicI32,
    /// vCPUs of threads that exited, for the next thread (KVM cannot destroy one vCPU).
    idle_contexts: Mutex<Vec<Box<dyn crate::platform::Context>>>,
    /// The sandbox's network stack (loopback at least).
    pub net: Arc<netstack::stack::Stack>,
    /// Pause/resume: guest code runs only while this is open.
    pub freezer: super::freeze::Freezer,
    /// The sandbox's abstract AF_UNIX socket names.
    pub unix_names: Arc<crate::net::unix::AbstractNamespace>,
    /// Processes killed for want of guest memory.
    pub oom: super::oom::OomKiller,
    /// The guest's /proc/cpuinfo, captured from the host's when the kernel is made: the
    /// sandbox process gives up the host's file tree before guests read it.
    pub cpuinfo: Arc<[u8]>,
    /// Whether the operator enabled the debug hooks (`syscalls::debug`); never settable
    /// from inside the sandbox.
    debug_hooks: std::sync::atomic::AtomicBool,
    /// Advisory file locks (fcntl record locks, flock).
    pub locks: crate::vfs::locks::Locks,
}

impl Kernel {
    pub fn new(
        platform: Arc<dyn AddressSpaceFactory>,
        hostname: &[u8],
        net: Arc<netstack::stack::Stack>,
    ) -> Arc<Kernel> {
        Arc::new(Kernel::build(platform, hostname, net))
    }

    /// A kernel restored from a checkpoint: it has been up for `uptime` already, and
    /// hands out thread ids from `next_tid`.
    pub fn restored(
        platform: Arc<dyn AddressSpaceFactory>,
        hostname: &[u8],
        net: Arc<netstack::stack::Stack>,
        uptime: std::time::Duration,
        next_tid: i32,
    ) -> Arc<Kernel> {
        let mut k = Kernel::build(platform, hostname, net);
        k.boot = Instant::now().checked_sub(uptime).unwrap_or(k.boot);
        k.next_tid = std::sync::atomic::AtomicI32::new(next_tid.max(2));
        Arc::new(k)
    }

    /// The next thread id to be handed out (for a checkpoint).
    pub fn next_tid(&self) -> i32 {
        self.next_tid.load(Ordering::SeqCst)
    }

    /// Threads alive now (for a checkpoint to know it has them all).
    pub fn live_threads(&self) -> usize {
        self.live_threads.load(Ordering::SeqCst)
    }

    fn build(
        platform: Arc<dyn AddressSpaceFactory>,
        hostname: &[u8],
        net: Arc<netstack::stack::Stack>,
    ) -> Kernel {
        Kernel {
            platform,
            hostname: Mutex::new(hostname.to_vec()),
            boot: Instant::now(),
            unknown_syscalls: Mutex::new(HashSet::new()),
            enosys_count: AtomicU64::new(0),
            futexes: Default::default(),
            processes: Default::default(),
            live_threads: std::sync::atomic::AtomicUsize::new(0),
            next_tid: std::sync::atomic::AtomicI32::new(2),
            idle_contexts: Mutex::new(Vec::new()),
            net,
            freezer: Default::default(),
            unix_names: Default::default(),
            oom: Default::default(),
            cpuinfo: crate::vfs::proc::host_cpuinfo(guest_cpus()).into(),
            debug_hooks: std::sync::atomic::AtomicBool::new(false),
            locks: Default::default(),
        }
    }

    /// Let guests call the debug hooks (`syscalls::debug`). For the operator's tests only.
    pub fn enable_debug_hooks(&self) {
        self.debug_hooks.store(true, Ordering::SeqCst);
    }

    /// Whether the debug hooks answer (else they are ENOSYS like any unknown number).
    pub fn debug_hooks_enabled(&self) -> bool {
        self.debug_hooks.load(Ordering::SeqCst)
    }

    pub fn register_process(&self, g: &Arc<super::thread_group::ThreadGroup>) {
        self.processes.insert(g);
    }
    pub fn unregister_process(&self, pid: i32) {
        self.processes.remove(pid);
    }
    /// Count one more thread in the sandbox, or EAGAIN at the limit (fork and thread
    /// bombs stop here).
    pub fn reserve_thread(&self) -> Result<(), crate::abi::Errno> {
        let n = self.live_threads.fetch_add(1, Ordering::SeqCst);
        if n >= MAX_THREADS {
            self.live_threads.fetch_sub(1, Ordering::SeqCst);
            return Err(crate::abi::Errno::EAGAIN);
        }
        Ok(())
    }

    /// A thread of the sandbox has ended.
    pub fn release_thread(&self) {
        self.live_threads.fetch_sub(1, Ordering::SeqCst);
    }

    /// A fresh thread id.
    pub fn alloc_tid(&self) -> i32 {
        self.next_tid.fetch_add(1, Ordering::Relaxed)
    }

    /// An execution context for a new thread: a retired one if there is one.
    pub fn take_context(
        &self,
    ) -> Result<Box<dyn crate::platform::Context>, crate::platform::PlatformError> {
        let idle = self
            .idle_contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match idle {
            Some(ctx) => Ok(ctx),
            None => self.platform.new_context(),
        }
    }

    /// Give back the context of a thread that exited.
    pub fn retire_context(&self, ctx: Box<dyn crate::platform::Context>) {
        self.idle_contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ctx);
    }

    /// Count an ENOSYS; returns true the first time this number is seen.
    pub fn note_unknown_syscall(&self, nr: u64) -> bool {
        self.enosys_count.fetch_add(1, Ordering::Relaxed);
        self.unknown_syscalls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(nr)
    }
}

/// CPUs the guest is told it has (what sched_getaffinity reports).
pub fn guest_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(64)
}

pub use super::creds::Credentials;

/// What /proc and getpid see of the process a task belongs to.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    pub pid: i32,
    /// The path of the running executable, as the guest named it (absolute).
    pub exe: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    /// The command name (comm), at most 15 bytes.
    pub comm: Vec<u8>,
    pub dumpable: bool,
    /// The nice value (setpriority), recorded only.
    pub nice: i32,
    /// The scheduling policy and its static priority (sched_setscheduler), recorded
    /// only: the host schedules every guest thread as SCHED_OTHER.
    pub sched_policy: u32,
    pub sched_priority: u32,
    /// personality(2)'s persona: recorded and reported only.
    pub personality: u32,
    pub no_new_privs: bool,
    pub pdeathsig: u8,
}

/// Resource limits (soft, hard), RLIM_INFINITY = u64::MAX.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rlimits(pub [(u64, u64); 16]);

impl Default for Rlimits {
    fn default() -> Self {
        const INF: u64 = u64::MAX;
        let mut r = [(INF, INF); 16];
        r[3] = (8 << 20, INF); // RLIMIT_STACK
        r[4] = (0, INF); // RLIMIT_CORE
        r[6] = (4096, 4096); // RLIMIT_NPROC
                             // RLIMIT_NOFILE: Linux's soft default, and the hard limit container runtimes
                             // give (Docker, containerd under systemd: nr_open), which Node raises its soft
                             // limit to at start.
        r[7] = (1024, 1 << 20);
        r[8] = (8 << 20, 8 << 20); // RLIMIT_MEMLOCK
        r[13] = (0, 0); // RLIMIT_NICE
        r[14] = (0, 0); // RLIMIT_RTPRIO
        Rlimits(r)
    }
}

/// One guest thread.
pub struct Task {
    pub regs: UserRegs,
    pub mm: Arc<MemoryManager>,
    pub files: Arc<FdTable>,
    pub fs: FsContext,
    pub process: ProcessInfo,
    pub tid: i32,
    pub creds: Credentials,
    pub rlimits: Rlimits,
    pub signals: SignalState,
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    pub kernel: Arc<Kernel>,
    /// Set when the task's whole thread group ends (exit_group, fatal signal).
    pub exit_status: Option<ExitStatus>,
    /// Set when this thread alone ends (exit), with its code.
    pub thread_exit: Option<u8>,
    /// The thread group (process) this task belongs to.
    pub group: Arc<super::thread_group::ThreadGroup>,
    /// Signals sent to this thread, one bit each.
    pub pending: Arc<super::sigqueue::PendingSignals>,
    /// This thread's signal mask as senders see it (published by the run loop).
    pub blocked: Arc<std::sync::atomic::AtomicU64>,
    /// The syscall a signal interrupted: its number, and whether a handler with
    /// SA_RESTART restarts it (ERESTARTSYS) or only the absence of a handler does
    /// (ERESTARTNOHAND).
    pub restart: Option<(u64, bool)>,
    /// Set by a handler that replaced all registers (rt_sigreturn, execve): the
    /// dispatcher must not store a return value in rax.
    pub regs_replaced: bool,
    /// An FPU image for the run loop to load before the thread runs again (sigreturn).
    pub fpu_restore: Option<Vec<u8>>,
    /// Size and features of this thread's XSAVE image (from its context).
    pub fpu_layout: (usize, u64),
    /// Where this thread parks in blocking syscalls; interrupted by signals and exit.
    pub waiter: Arc<crate::waiter::Waiter>,
}

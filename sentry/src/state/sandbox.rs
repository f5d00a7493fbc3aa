//! Checkpointing a running sandbox, and building one from a checkpoint.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use super::registry::RestoreTable;
use super::vfs::VfsRestore;
use super::{ContainerState, RestoreContext, SandboxState, SaveContext, StateError};
use crate::kernel::exit::ExitStatus;
use crate::kernel::run::spawn_thread;
use crate::kernel::signal;
use crate::kernel::task::Kernel;
use crate::platform::kvm::KvmPlatform;
use crate::platform::memory::GuestMemory;
use crate::sandbox::{Container, HostSource, MountSpec, Sandbox, SandboxError};

/// How long a checkpoint waits for every thread to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a checkpoint produced: the kernel state, and how much guest memory was written.
pub struct Checkpointed {
    pub state: Vec<u8>,
    pub memory_bytes_written: u64,
    pub guest_memory_bytes: u64,
}

/// What a restore needs besides the image: for each container (by id), its root file
/// system and mounts opened anew, and the network stack built for the new sandbox.
pub struct RestoreInput<'a> {
    /// The image's `memory.img`, mapped copy-on-write.
    pub memory_image: File,
    /// The image's `kernel.state`.
    pub state: &'a [u8],
    pub net: Arc<netstack::stack::Stack>,
    pub containers: HashMap<String, (HostSource, Vec<MountSpec>)>,
    /// Each container's stdio now (stdin, stdout, stderr), by container id: what its
    /// processes had as the container's stdio writes here from now on.
    pub stdio: HashMap<String, [std::os::fd::OwnedFd; 3]>,
    /// What to do with the working set the image records (see `platform::kvm::WorkingSet`).
    pub working_set: crate::platform::kvm::WorkingSet,
}

impl Sandbox {
    /// Stop every guest thread and write the sandbox: its guest memory's frames in use
    /// into `memory_out` (a file at least as long as guest memory, written at guest
    /// physical offsets), and the kernel state returned. The sandbox stays stopped
    /// afterwards: [`Sandbox::finish_checkpoint`] lets it go on, or kills it.
    pub fn checkpoint(&self, memory_out: &File) -> Result<Checkpointed, SandboxError> {
        let kernel = &self.kernel;
        kernel.freezer.begin_checkpoint();
        for g in kernel.processes.all() {
            g.interrupt_all();
        }
        let live = || kernel.live_threads();
        let snapshots = kernel
            .freezer
            .collect(&live, STOP_TIMEOUT)
            .map_err(|came| {
                StateError::NotQuiescent(format!(
                    "{} of {} threads stopped within {} s (stopped: {came:?})",
                    came.len(),
                    kernel.live_threads(),
                    STOP_TIMEOUT.as_secs()
                ))
            })?;
        let mut cx = SaveContext::default();
        let kernel_state = cx.kernel(kernel, &snapshots)?;
        let mut containers = Vec::new();
        {
            let list = self.containers();
            let mut ids: Vec<&String> = list.keys().collect();
            ids.sort();
            for id in ids {
                let c = &list[id];
                containers.push(ContainerState {
                    id: id.clone(),
                    vfs: cx.vfs_id(&c.vfs)?,
                    init: c.init.as_ref().map(|g| g.tgid),
                });
            }
        }
        let mut platform = self.platform.state();
        // Frames unmapped but held back from vCPUs' caches are free in a new VM.
        platform.allocator.free.append(&mut cx.deferred_frames);
        platform.allocator.free.sort_unstable();
        platform.allocator.free.dedup();
        let memory = self.platform_memory();
        let state = SandboxState {
            version: super::STATE_VERSION,
            platform,
            kernel: kernel_state,
            vfs: std::mem::take(&mut cx.vfs).finish(),
            files: std::mem::take(&mut cx.files).into_states(),
            fd_tables: std::mem::take(&mut cx.fd_tables).into_states(),
            mms: std::mem::take(&mut cx.mms).into_states(),
            containers,
            vvar_frame: crate::vdso::vvar::frame_of(&memory),
        };
        let written = memory
            .write_frames(&state.platform.allocator, memory_out)
            .map_err(|e| {
                SandboxError::Checkpoint(StateError::Encode(format!("guest memory: {e}")))
            })?;
        Ok(Checkpointed {
            state: super::encode(&state)?,
            memory_bytes_written: written,
            guest_memory_bytes: memory.size(),
        })
    }

    /// After [`Sandbox::checkpoint`] (successful or not): let the guest go on, or end
    /// every process (`runsc checkpoint` without `--leave-running`).
    pub fn finish_checkpoint(&self, leave_running: bool) {
        if !leave_running {
            for g in self.kernel.processes.all() {
                g.exit_group(ExitStatus::Signaled(signal::SIGKILL), 0);
            }
        }
        self.kernel.freezer.end_checkpoint();
    }

    fn platform_memory(&self) -> Arc<GuestMemory> {
        crate::platform::Platform::memory(&*self.platform).clone()
    }

    /// A sandbox rebuilt from a checkpoint, its threads paused at the gate until
    /// [`Sandbox::resume`]. A checkpoint of one container may be restored under
    /// another container id.
    pub fn restore(input: RestoreInput<'_>) -> Result<Arc<Sandbox>, SandboxError> {
        let mut steps = crate::steps::Steps::new("restore");
        let state = super::decode(input.state)?;
        let memory = GuestMemory::restore(
            &input.memory_image,
            state.platform.memory_size,
            &state.platform.allocator,
        )
        .map_err(|e| SandboxError::Checkpoint(StateError::Platform(e.to_string())))?;
        steps.done("kernel state decoded, memory.img mapped");
        let platform = Arc::new(KvmPlatform::restore(
            memory,
            &state.platform,
            input.working_set,
        )?);
        steps.done("VM created");
        let kernel = Kernel::restored(
            platform.clone(),
            &state.kernel.hostname,
            input.net,
            Duration::from_nanos(state.kernel.uptime_ns),
            state.kernel.next_tid,
        );
        // Each container's file system is rebuilt over its sources, given anew. A
        // sandbox of one container may be restored under another id.
        let mut sources = HashMap::new();
        let mut inputs = input.containers;
        let mut state = state;
        let mut renamed: HashMap<String, String> = HashMap::new();
        if let ([saved], [(given, _)]) = (
            &mut state.containers[..],
            &inputs.iter().collect::<Vec<_>>()[..],
        ) {
            renamed.insert((*given).clone(), saved.id.clone());
            saved.id = (*given).clone();
        }
        for c in &state.containers {
            let src = inputs.remove(&c.id).ok_or_else(|| {
                StateError::invalid(format!(
                    "no root file system given for container {:?}",
                    c.id
                ))
            })?;
            sources.insert(c.vfs, src);
        }
        if let Some(extra) = inputs.keys().next() {
            return Err(StateError::invalid(format!(
                "container {extra:?} is not in the checkpoint"
            ))
            .into());
        }
        let mut rx = RestoreContext {
            files: RestoreTable::new("open file", state.files),
            fd_tables: RestoreTable::new("fd table", state.fd_tables),
            mms: RestoreTable::new("address space", state.mms),
            vfs: VfsRestore::new(state.vfs, sources),
            kernel: kernel.clone(),
        };
        rx.vfs.set_memory(kernel.platform.memory().clone());
        for (id, fds) in input.stdio {
            let saved = renamed.get(&id).cloned().unwrap_or_else(|| id.clone());
            rx.vfs.give_stdio(&saved, &id, fds);
        }
        let mut containers = HashMap::new();
        for c in &state.containers {
            containers.insert(
                c.id.clone(),
                Container {
                    vfs: rx.vfs(c.vfs)?,
                    init: None,
                },
            );
        }
        steps.done("file systems and files");
        let restored = rx.threads(state.kernel)?;
        // The vvar page is written from now on: after every address space is restored, so
        // it can be checked not to be one of their page tables (nor a kernel frame).
        if let Some(frame) = state.vvar_frame {
            platform
                .check_restored_data_frame("vvar", frame)
                .map_err(|e| SandboxError::Checkpoint(StateError::Platform(e.to_string())))?;
            let memory = crate::platform::Platform::memory(&*platform).clone();
            crate::vdso::vvar::adopt(&memory, frame)
                .map_err(|e| SandboxError::Checkpoint(StateError::Platform(e.to_string())))?;
        }
        // Every address space is restored: map the pages the guest will want first
        // while the rest of the sandbox is made.
        platform.start_prefault();
        steps.done("processes, threads and vCPUs");
        let sandbox = Arc::new(Sandbox {
            platform,
            kernel,
            containers: std::sync::Mutex::new(containers),
            started: std::sync::Mutex::new(HashMap::new()),
            resolv_conf: std::sync::Mutex::new(crate::sandbox::default_resolv_conf()),
        });
        let mut inits = Vec::new();
        for c in &state.containers {
            let Some(pid) = c.init else { continue };
            let g = restored.groups.get(&pid).cloned().ok_or_else(|| {
                StateError::invalid(format!("container {:?}: no init process {pid}", c.id))
            })?;
            sandbox.started().insert(pid, g.clone());
            if let Some(entry) = sandbox.containers().get_mut(&c.id) {
                entry.init = Some(g.clone());
            }
            inits.push((c.id.clone(), pid, g));
        }
        // Held at the gate until the runtime starts the sandbox (`runsc start`/`restore`).
        sandbox.kernel.freezer.pause();
        for (task, ctx) in restored.threads {
            let tid = task.tid;
            spawn_thread(task, ctx).map_err(|errno| {
                SandboxError::Checkpoint(StateError::Restore {
                    what: format!("thread {tid}"),
                    errno,
                })
            })?;
        }
        for (g, id, timer, left) in restored.posix_timers {
            crate::kernel::posix_timer::PosixTimers::restore(&g, id, timer, left);
        }
        for (id, pid, g) in inits {
            sandbox.watch_init(id, pid, g);
        }
        steps.done("threads started");
        Ok(sandbox)
    }
}

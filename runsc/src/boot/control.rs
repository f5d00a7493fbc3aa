//! The control socket's request handler: each request of `proto/control.proto` mapped
//! onto the sentry's [`Sandbox`]. One thread per connection (proto's `serve`), so a
//! `Wait` blocks only its own caller.
//!
//! A sandbox holds a pod: its own container (created with the sandbox; an empty
//! `container_id` names it) and the containers `CreateContainer` adds, each with its
//! init waiting for `Start`. Requests name their container by `container_id`. Pause and
//! resume act on the whole sandbox, as gVisor's do: every container of the pod stops.
//!
//! Lock order: [`Controller::containers`] before the sandbox's own locks (the sandbox
//! never calls back into us). `Sandbox::spawn` runs without our lock.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nanovisor_proto::control::{
    mount, request, response, AclAddResponse, AuditLine, CheckpointResponse, ContainerStatus,
    CreateContainerRequest, Empty, ErrorCode, ExecResponse, ListeningResponse,
    ProcessEntry as ProtoProcess, ProcessesResponse, Request, Response, SignalRequest,
    StartResponse, StateResponse, StatsResponse, WaitResponse,
};
use nanovisor_proto::{error, Responder};
use netstack::acl::Acl;
use sentry::kernel::exit::ExitStatus;
use sentry::sandbox::{HostSource, ProcessSpec, Sandbox, Stdio};

use crate::acl_convert;
use crate::boot::mounts;
use crate::commands::kill::terminates_by_default;

/// What the status of an init that could not be started is reported as (a shell's
/// "cannot run the command").
const FAILED_START: ExitStatus = ExitStatus::Exited(127);

/// Where a container's init is in its life.
enum Init {
    /// Created: waiting for `Start`.
    Pending(ProcessSpec),
    /// `Start` is spawning it.
    Starting,
    /// Started: its pid in the sandbox (it may have ended since).
    Started(i32),
    /// Never ran: a signal that ends a process came before `Start`, or the sandbox
    /// shut down.
    Killed(u8),
    /// `Start` failed (its `execve` did); waiting for it reports [`FAILED_START`].
    Failed,
}

/// The containers of the sandbox, and whether it is going away.
#[derive(Default)]
struct Containers {
    inits: HashMap<String, Init>,
    /// Set by [`Controller::shut_down`]: no new containers, no more waiting for starts.
    closing: bool,
}

/// Everything the handler needs.
pub struct Controller {
    sandbox: Arc<Sandbox>,
    /// The sandbox's own container (a pod's pause container): an empty id names it.
    sandbox_id: String,
    containers: Mutex<Containers>,
    /// Notified whenever an init changes state (started, killed, failed) and on shutdown.
    changed: Condvar,
    acl: Arc<Acl>,
    /// The audit log, open for reading: the sandbox process cannot open it by path
    /// once it has given up the host's tree. Readers use positioned reads, each at its
    /// own offset. `None`: there is no audit log.
    audit: Option<Arc<std::fs::File>>,
    /// Wait requests being answered: the sandbox process stays until they are.
    pub waiting: std::sync::atomic::AtomicUsize,
    /// A sandbox restored from a checkpoint, held paused until its `Start`.
    restored: std::sync::atomic::AtomicBool,
}

fn ok(kind: response::Kind) -> Response {
    Response { kind: Some(kind) }
}

fn empty() -> Response {
    ok(response::Kind::Empty(Empty {}))
}

/// A sentry process spec from the control message and the fds that came with it.
pub fn process_spec(
    p: &nanovisor_proto::control::ProcessSpec,
    mut fds: Vec<OwnedFd>,
) -> Result<ProcessSpec, Response> {
    let stdio = if p.terminal {
        let Some(tty) = fds.pop() else {
            return Err(error(
                ErrorCode::InvalidArgument,
                "a terminal process needs its pty",
            ));
        };
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| error(ErrorCode::Internal, format!("dup of the pty: {e}")))
        };
        Stdio::Fds([dup(&tty)?, dup(&tty)?, tty])
    } else if fds.len() == 3 {
        let err = fds.pop();
        let out = fds.pop();
        let inp = fds.pop();
        match (inp, out, err) {
            (Some(i), Some(o), Some(e)) => Stdio::Fds([i, o, e]),
            _ => return Err(error(ErrorCode::InvalidArgument, "stdio needs 3 fds")),
        }
    } else if fds.is_empty() {
        Stdio::Inherit
    } else {
        return Err(error(
            ErrorCode::InvalidArgument,
            format!("stdio needs 3 fds, got {}", fds.len()),
        ));
    };
    if p.args.is_empty() {
        return Err(error(ErrorCode::InvalidArgument, "process.args is empty"));
    }
    Ok(ProcessSpec {
        argv: p.args.clone(),
        envp: p.env.clone(),
        cwd: if p.cwd.is_empty() {
            b"/".to_vec()
        } else {
            p.cwd.clone()
        },
        uid: p.uid,
        gid: p.gid,
        additional_gids: p.additional_gids.clone(),
        stdio,
        rlimits: p
            .rlimits
            .iter()
            .map(|r| (r.resource, r.soft, r.hard))
            .collect(),
    })
}

fn wait_response(status: ExitStatus, oom_killed: bool) -> Response {
    use nanovisor_proto::control::wait_response::Status;
    let status = match status {
        ExitStatus::Exited(c) => Status::ExitCode(c as i32),
        ExitStatus::Signaled(s) => Status::Signal(s as i32),
    };
    ok(response::Kind::Wait(WaitResponse {
        status: Some(status),
        oom_killed,
    }))
}

/// The message of an error response (what the client would print).
pub fn error_text(r: &Response) -> String {
    match &r.kind {
        Some(response::Kind::Error(e)) => e.message.clone(),
        _ => format!("{r:?}"),
    }
}

fn not_found(id: &str, sandbox: &str) -> Response {
    error(
        ErrorCode::NotFound,
        format!("no container {id:?} in sandbox {sandbox:?}"),
    )
}

impl Controller {
    /// A controller for a new sandbox whose own container `id` will run `init`.
    pub fn new(
        sandbox: Arc<Sandbox>,
        id: &str,
        init: ProcessSpec,
        acl: Arc<Acl>,
        audit: Option<std::fs::File>,
    ) -> Controller {
        Controller::with_init(sandbox, id, Init::Pending(init), false, acl, audit)
    }

    /// A controller for a sandbox restored from a checkpoint (held paused): container
    /// `id`'s init is `pid` already; `Start` lets the sandbox run.
    pub fn restored(
        sandbox: Arc<Sandbox>,
        id: &str,
        pid: i32,
        acl: Arc<Acl>,
        audit: Option<std::fs::File>,
    ) -> Controller {
        Controller::with_init(sandbox, id, Init::Started(pid), true, acl, audit)
    }

    fn with_init(
        sandbox: Arc<Sandbox>,
        id: &str,
        init: Init,
        restored: bool,
        acl: Arc<Acl>,
        audit: Option<std::fs::File>,
    ) -> Controller {
        let mut containers = Containers::default();
        containers.inits.insert(id.to_string(), init);
        Controller {
            sandbox,
            sandbox_id: id.to_string(),
            containers: Mutex::new(containers),
            changed: Condvar::new(),
            acl,
            audit: audit.map(Arc::new),
            waiting: Default::default(),
            restored: std::sync::atomic::AtomicBool::new(restored),
        }
    }

    fn restore_pending(&self) -> bool {
        self.restored.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn containers(&self) -> MutexGuard<'_, Containers> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container a request names: the sandbox's own for an empty id.
    fn resolve<'a>(&'a self, id: &'a str) -> &'a str {
        if id.is_empty() {
            &self.sandbox_id
        } else {
            id
        }
    }

    /// Fails unless container `id` exists.
    fn check_container(&self, id: &str) -> Result<(), Response> {
        if self.containers().inits.contains_key(id) {
            Ok(())
        } else {
            Err(not_found(id, &self.sandbox_id))
        }
    }

    /// Container `id`'s status and its init's pid (0 if it never ran).
    fn status(&self, id: &str) -> Result<(ContainerStatus, i32), Response> {
        let containers = self.containers();
        let init = containers
            .inits
            .get(id)
            .ok_or_else(|| not_found(id, &self.sandbox_id))?;
        Ok(match init {
            Init::Pending(_) | Init::Starting => (ContainerStatus::Created, 0),
            Init::Killed(_) | Init::Failed => (ContainerStatus::Stopped, 0),
            Init::Started(pid) if self.sandbox.status(*pid).is_some() => {
                (ContainerStatus::Stopped, *pid)
            }
            Init::Started(pid) if self.restore_pending() => (ContainerStatus::Created, *pid),
            Init::Started(pid) if self.sandbox.is_paused() => (ContainerStatus::Paused, *pid),
            Init::Started(pid) => (ContainerStatus::Running, *pid),
        })
    }

    /// Adds a container to the sandbox, its init waiting for `Start`.
    fn create_container(
        &self,
        r: CreateContainerRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Response> {
        if r.container_id.is_empty() {
            return Err(error(ErrorCode::InvalidArgument, "no container id"));
        }
        let p = r
            .process
            .ok_or_else(|| error(ErrorCode::InvalidArgument, "a container without a process"))?;
        // The fds: stdio, the root, one per bind (see control.proto).
        let stdio_fds = if p.terminal { 1 } else { 3 };
        let binds = r
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, Some(mount::Kind::Bind(_))))
            .count();
        if fds.len() != stdio_fds + 1 + binds {
            return Err(error(
                ErrorCode::InvalidArgument,
                format!(
                    "CreateContainer carries {} fds; {stdio_fds} for stdio, 1 for the root \
                     and {binds} for bind mounts were expected",
                    fds.len()
                ),
            ));
        }
        let mut fds = fds;
        let mut rest = fds.split_off(stdio_fds).into_iter();
        let rootfs = rest
            .next()
            .ok_or_else(|| error(ErrorCode::InvalidArgument, "no fd for the root"))
            .and_then(|fd| {
                HostSource::from_fd(fd, PathBuf::from(&r.rootfs_path)).map_err(|e| {
                    error(
                        ErrorCode::InvalidArgument,
                        format!("root file system {}: {e}", r.rootfs_path),
                    )
                })
            })?;
        let mounts = r
            .mounts
            .into_iter()
            .map(|m| mounts::from_message(m, &mut rest))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| error(ErrorCode::InvalidArgument, e))?;
        let spec = process_spec(&p, fds)?;
        let mut containers = self.containers();
        if containers.closing {
            return Err(error(ErrorCode::WrongState, "the sandbox is shutting down"));
        }
        if containers.inits.contains_key(&r.container_id) {
            return Err(error(
                ErrorCode::WrongState,
                format!("container {:?} already exists", r.container_id),
            ));
        }
        self.sandbox
            .add_container(&r.container_id, rootfs, mounts)
            .map_err(|e| {
                error(
                    ErrorCode::InvalidArgument,
                    format!("root file system {}: {e}", r.rootfs_path),
                )
            })?;
        if !r.hostname.is_empty() {
            // The kernel has one hostname: the sandbox's (a pod shares its UTS namespace).
            tracing::debug!(
                container = r.container_id,
                hostname = r.hostname,
                "a container's hostname is the sandbox's"
            );
        }
        containers
            .inits
            .insert(r.container_id.clone(), Init::Pending(spec));
        tracing::info!(container = r.container_id, "container created");
        Ok(())
    }

    /// Checkpoint the sandbox into the two files in `fds` (see control.proto).
    fn checkpoint(
        &self,
        leave_running: bool,
        fds: Vec<OwnedFd>,
    ) -> Result<CheckpointResponse, Response> {
        use std::os::unix::fs::FileExt as _;
        let [memory, state]: [OwnedFd; 2] = fds.try_into().map_err(|fds: Vec<OwnedFd>| {
            error(
                ErrorCode::InvalidArgument,
                format!(
                    "a checkpoint needs 2 fds (memory, state), got {}",
                    fds.len()
                ),
            )
        })?;
        let (memory, state) = (std::fs::File::from(memory), std::fs::File::from(state));
        let taken = self
            .sandbox
            .checkpoint(&memory)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                state
                    .write_all_at(&c.state, 0)
                    .map_err(|e| format!("writing the kernel state: {e}"))
                    .map(|()| c)
            });
        // A failed checkpoint leaves the sandbox running, whatever was asked: nothing
        // was saved.
        self.sandbox
            .finish_checkpoint(leave_running || taken.is_err());
        let c = taken.map_err(|e| error(ErrorCode::Internal, format!("checkpoint: {e}")))?;
        tracing::info!(
            memory = c.memory_bytes_written,
            state = c.state.len(),
            "checkpoint taken"
        );
        Ok(CheckpointResponse {
            guest_memory_bytes: c.guest_memory_bytes,
            memory_bytes_written: c.memory_bytes_written,
            state_bytes: c.state.len() as u64,
        })
    }

    /// Starts container `id`'s init; its pid.
    fn start(&self, id: &str) -> Result<i32, Response> {
        let spec = {
            let mut containers = self.containers();
            let init = containers
                .inits
                .get_mut(id)
                .ok_or_else(|| not_found(id, &self.sandbox_id))?;
            if let Init::Started(pid) = init {
                if self
                    .restored
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    // A restored sandbox: its threads wait at the gate.
                    let pid = *pid;
                    self.sandbox.resume();
                    return Ok(pid);
                }
            }
            match std::mem::replace(init, Init::Starting) {
                Init::Pending(spec) => spec,
                other => {
                    *init = other;
                    return Err(error(
                        ErrorCode::WrongState,
                        "the container has already been started",
                    ));
                }
            }
        };
        let spawned = self.sandbox.spawn(id, spec);
        let mut containers = self.containers();
        let next = match &spawned {
            Ok(pid) => Init::Started(*pid),
            Err(_) => Init::Failed,
        };
        if let Some(init) = containers.inits.get_mut(id) {
            *init = next;
        }
        let late = containers.closing && id != self.sandbox_id;
        self.changed.notify_all();
        drop(containers);
        if late {
            // Started while the sandbox shut down: it goes with the others.
            self.sandbox.signal_container(id, libc::SIGKILL as u8);
        }
        spawned.map_err(|e| error(ErrorCode::Internal, format!("starting: {e}")))
    }

    /// Blocks until container `id`'s init has started and ended (or will never run);
    /// how it ended.
    /// Whether container `id`'s init has been ended by the sandbox's OOM killer.
    pub fn init_oom_killed(&self, id: &str) -> bool {
        self.sandbox
            .init_pid(id)
            .is_some_and(|pid| self.sandbox.oom_killed(pid))
    }

    pub fn wait_init(&self, id: &str) -> Result<ExitStatus, Response> {
        let pid = {
            let mut containers = self.containers();
            loop {
                match containers.inits.get(id) {
                    None => return Err(not_found(id, &self.sandbox_id)),
                    Some(Init::Started(pid)) => break *pid,
                    Some(Init::Killed(sig)) => return Ok(ExitStatus::Signaled(*sig)),
                    Some(Init::Failed) => return Ok(FAILED_START),
                    Some(Init::Pending(_) | Init::Starting) if containers.closing => {
                        return Err(error(ErrorCode::WrongState, "the sandbox is shutting down"))
                    }
                    Some(Init::Pending(_) | Init::Starting) => {}
                }
                containers = self
                    .changed
                    .wait(containers)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        self.sandbox
            .wait(pid)
            .map_err(|e| error(ErrorCode::NotFound, e.to_string()))
    }

    /// `Signal`: to the init, to one process of the container, or to all of them. A
    /// signal that ends a process, sent to an init that has not started, discards it: the
    /// container is stopped without ever running (runc's created init would die of it).
    fn signal(&self, r: &SignalRequest) -> Result<(), Response> {
        let id = self.resolve(&r.container_id);
        let sig = u8::try_from(r.signal)
            .ok()
            .filter(|s| *s != 0)
            .ok_or_else(|| error(ErrorCode::InvalidArgument, "bad signal number"))?;
        let mut containers = self.containers();
        let init = containers
            .inits
            .get_mut(id)
            .ok_or_else(|| not_found(id, &self.sandbox_id))?;
        let init_pid = match init {
            Init::Pending(_) if r.all || r.pid == 0 => {
                if terminates_by_default(i32::from(sig)) {
                    // Dropping the spec closes the stdio it held.
                    *init = Init::Killed(sig);
                    self.changed.notify_all();
                }
                return Ok(());
            }
            Init::Starting if r.all || r.pid == 0 => {
                return Err(error(ErrorCode::WrongState, "the container is starting"))
            }
            Init::Killed(_) | Init::Failed if r.all => return Ok(()),
            Init::Killed(_) | Init::Failed if r.pid == 0 => {
                return Err(error(ErrorCode::NotFound, "the container is not running"))
            }
            Init::Started(pid) => Some(*pid),
            _ => None,
        };
        drop(containers);
        if r.all {
            self.sandbox.signal_container(id, sig);
            return Ok(());
        }
        let pid = match (r.pid, init_pid) {
            (0, Some(pid)) => pid,
            (0, None) => {
                return Err(error(
                    ErrorCode::WrongState,
                    "the container has not started",
                ))
            }
            (p, _) => {
                // Only this container's processes: a pod's containers do not signal
                // each other through the runtime.
                if !self.sandbox.processes(Some(id)).iter().any(|e| e.pid == p) {
                    return Err(error(
                        ErrorCode::NotFound,
                        format!("no process {p} in container {id:?}"),
                    ));
                }
                p
            }
        };
        self.sandbox
            .signal(pid, sig)
            .map_err(|e| error(ErrorCode::NotFound, format!("signal {sig} to {pid}: {e}")))
    }

    /// The sandbox's own container has ended: end the others too (their inits are
    /// killed, inits not yet started never will be), so that their waiters get an answer
    /// before the sandbox process exits.
    pub fn shut_down(&self) {
        let mut containers = self.containers();
        containers.closing = true;
        let mut started = Vec::new();
        for (id, init) in containers.inits.iter_mut() {
            match init {
                Init::Pending(_) => *init = Init::Killed(libc::SIGKILL as u8),
                Init::Started(_) if *id != self.sandbox_id => started.push(id.clone()),
                _ => {}
            }
        }
        self.changed.notify_all();
        drop(containers);
        for id in started {
            tracing::info!(container = id, "the sandbox ends: killing the container");
            self.sandbox.signal_container(&id, libc::SIGKILL as u8);
        }
    }

    /// Handle one request (and stream further responses for a followed audit log).
    pub fn handle(&self, req: Request, fds: Vec<OwnedFd>, out: &mut Responder) {
        tracing::debug!(request = req.name(), "control");
        // The sandbox process stays until a request is answered, though what it waits for
        // or does (a SIGKILL to the init, a checkpoint without --leave-running) ends the
        // container. Not a followed audit log: that stream ends with the process.
        let _answering = (!matches!(req.kind, Some(request::Kind::AclAudit(_))))
            .then(|| WaitGuard::new(&self.waiting));
        let resp = match self.dispatch(req, fds, out) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(r) => r,
        };
        if let Err(e) = out.send(resp) {
            tracing::debug!("control: sending a response: {e}");
        }
    }

    fn dispatch(
        &self,
        req: Request,
        fds: Vec<OwnedFd>,
        out: &mut Responder,
    ) -> Result<Option<Response>, Response> {
        let Some(kind) = req.kind else {
            return Err(error(ErrorCode::InvalidArgument, "empty request"));
        };
        let r = match kind {
            request::Kind::CreateContainer(r) => {
                self.create_container(r, fds)?;
                empty()
            }
            request::Kind::Checkpoint(r) => ok(response::Kind::Checkpoint(
                self.checkpoint(r.leave_running, fds)?,
            )),
            request::Kind::Listening(r) => {
                let port = u16::try_from(r.port)
                    .map_err(|_| error(ErrorCode::InvalidArgument, format!("port {}", r.port)))?;
                let listening = self.sandbox.kernel().net.tcp_listening(port);
                ok(response::Kind::Listening(ListeningResponse { listening }))
            }
            request::Kind::RemoveContainer(r) => {
                if r.container_id.is_empty() || r.container_id == self.sandbox_id {
                    return Err(error(
                        ErrorCode::InvalidArgument,
                        "the sandbox's own container goes with the sandbox",
                    ));
                }
                self.sandbox
                    .remove_container(&r.container_id)
                    .map_err(|e| error(ErrorCode::NotFound, e.to_string()))?;
                self.containers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .inits
                    .remove(&r.container_id);
                self.changed.notify_all();
                empty()
            }
            request::Kind::Start(r) => {
                let pid = self.start(self.resolve(&r.container_id))?;
                ok(response::Kind::Start(StartResponse { pid }))
            }
            request::Kind::Exec(r) => {
                let id = self.resolve(&r.container_id);
                if self.status(id)?.0 != ContainerStatus::Running {
                    return Err(error(ErrorCode::WrongState, "the container is not running"));
                }
                let p = r
                    .process
                    .ok_or_else(|| error(ErrorCode::InvalidArgument, "exec without a process"))?;
                let spec = process_spec(&p, fds)?;
                let pid = self
                    .sandbox
                    .spawn(id, spec)
                    .map_err(|e| error(ErrorCode::InvalidArgument, format!("exec: {e}")))?;
                ok(response::Kind::Exec(ExecResponse { pid }))
            }
            request::Kind::Signal(r) => {
                self.signal(&r)?;
                empty()
            }
            request::Kind::Wait(r) => {
                let id = self.resolve(&r.container_id);
                self.check_container(id)?;
                let status = match r.pid {
                    0 => self.wait_init(id)?,
                    p => self
                        .sandbox
                        .wait(p)
                        .map_err(|e| error(ErrorCode::NotFound, e.to_string()))?,
                };
                // The init's pid is known once it has been waited for (started).
                let pid = match r.pid {
                    0 => self.sandbox.init_pid(id),
                    p => Some(p),
                };
                let oom_killed = pid.is_some_and(|p| self.sandbox.oom_killed(p));
                wait_response(status, oom_killed)
            }
            request::Kind::State(r) => {
                let (status, init_pid) = self.status(self.resolve(&r.container_id))?;
                ok(response::Kind::State(StateResponse {
                    status: status as i32,
                    init_pid,
                }))
            }
            request::Kind::Stats(r) => {
                let id = self.resolve(&r.container_id);
                self.check_container(id)?;
                let s = self.sandbox.stats(Some(id));
                ok(response::Kind::Stats(StatsResponse {
                    memory_bytes: s.memory_bytes,
                    cpu_nanos: cpu_nanos(),
                    pids: s.pids,
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                    oom_kills: s.oom_kills,
                    init_oom_killed: s.init_oom_killed,
                }))
            }
            request::Kind::Pause(r) => {
                // The whole sandbox stops, whichever of its containers is named.
                if self.status(self.resolve(&r.container_id))?.0 != ContainerStatus::Running {
                    return Err(error(ErrorCode::WrongState, "the container is not running"));
                }
                self.sandbox.pause();
                empty()
            }
            request::Kind::Resume(r) => {
                if self.status(self.resolve(&r.container_id))?.0 != ContainerStatus::Paused {
                    return Err(error(ErrorCode::WrongState, "the container is not paused"));
                }
                self.sandbox.resume();
                empty()
            }
            request::Kind::Processes(r) => {
                let id = self.resolve(&r.container_id);
                self.check_container(id)?;
                let processes = self
                    .sandbox
                    .processes(Some(id))
                    .into_iter()
                    .map(|p| ProtoProcess {
                        pid: p.pid,
                        ppid: p.ppid,
                        args: Vec::new(),
                        uid: 0,
                    })
                    .collect();
                ok(response::Kind::Processes(ProcessesResponse { processes }))
            }
            request::Kind::AclGet(_) => ok(response::Kind::AclPolicy(
                acl_convert::policy_to_proto(&self.acl.policy()),
            )),
            request::Kind::AclAdd(r) => {
                let rule = r
                    .rule
                    .ok_or_else(|| error(ErrorCode::InvalidArgument, "no rule"))?;
                let rule = acl_convert::rule_from_proto(&rule)
                    .map_err(|e| error(ErrorCode::InvalidArgument, e.to_string()))?;
                let id = self
                    .acl
                    .add(rule, r.position.map(|p| p as usize))
                    .map_err(|e| error(ErrorCode::InvalidArgument, e.to_string()))?;
                ok(response::Kind::AclAdd(AclAddResponse { id }))
            }
            request::Kind::AclRemove(r) => {
                self.acl
                    .remove(&r.id)
                    .map_err(|e| error(ErrorCode::NotFound, e.to_string()))?;
                empty()
            }
            request::Kind::AclReplace(r) => {
                let p = r
                    .policy
                    .ok_or_else(|| error(ErrorCode::InvalidArgument, "no policy"))?;
                let policy = acl_convert::policy_from_proto(&p)
                    .map_err(|e| error(ErrorCode::InvalidArgument, e.to_string()))?;
                self.acl.replace(policy);
                empty()
            }
            request::Kind::AclAudit(r) => {
                self.stream_audit(r.follow, out);
                return Ok(None);
            }
        };
        Ok(Some(r))
    }

    /// Send the audit log, a line per response; with `follow`, keep sending new lines
    /// until the client goes away.
    fn stream_audit(&self, follow: bool, out: &mut Responder) {
        let Some(file) = self.audit.clone() else {
            let _ = out.send(error(ErrorCode::NotFound, "no audit log"));
            return;
        };
        let mut reader = BufReader::new(PositionedReader { file, offset: 0 });
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) if follow => {
                    // Reading again after end of file picks up what was appended.
                    std::thread::sleep(Duration::from_millis(200));
                    if out.peer_closed() {
                        return;
                    }
                }
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let json = line.trim_end().to_string();
                    if out
                        .send(ok(response::Kind::AuditLine(AuditLine { json })))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = out.send(empty());
    }
}

/// Reads a shared file from an offset of its own (pread), so that concurrent readers of
/// the audit log do not move each other's position.
struct PositionedReader {
    file: Arc<std::fs::File>,
    offset: u64,
}

impl std::io::Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Counts a Wait in progress, until its response is sent.
struct WaitGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> WaitGuard<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        WaitGuard(n)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// CPU time of the sandbox process (all guest and sentry threads).
fn cpu_nanos() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

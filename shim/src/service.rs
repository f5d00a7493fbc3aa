//! containerd's task API (runtime v2, ttrpc) for the containers of one pod, carried out by
//! running `runsc`. runsc holds the pod together (a pod's further containers join the
//! sandbox of its sandbox container); the shim keeps what containerd asks about: each
//! process's pid, state and exit, its stdio, and the events containerd waits for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use containerd_shim::api;
use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::ttrpc::{get_status, Code};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};

use crate::bundle::{self, Record};
use crate::config::Config;
use crate::console::{Console, ConsoleSocket};
use crate::exits::{Exits, Mark};
use crate::process::{timestamp, Process, StdioPaths};
use crate::runsc::{Runsc, Stdio3};
use crate::{metrics, options, stdio};

/// The version Connect reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Container {
    bundle: PathBuf,
    runsc: Arc<Runsc>,
    /// Set for the sandbox container of a pod restored from a checkpoint image: its task is
    /// a holder process (hold.rs), not a sandbox.
    holder: Option<Holder>,
    rootfs_mounted: bool,
    paused: bool,
    init: Process,
    execs: HashMap<String, Process>,
}

impl Container {
    fn process(&self, exec_id: &str) -> TtrpcResult<&Process> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| not_found(format!("exec {exec_id}")))
    }

    fn process_mut(&mut self, exec_id: &str) -> TtrpcResult<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| not_found(format!("exec {exec_id}")))
    }
}

struct Holder {
    /// The container restored from the pod's image, once there is one.
    restored: Option<String>,
}

/// How long a terminal's output may take to drain after its process exits (a reader that
/// does not read holds it up; the exit is reported anyway after this).
const TERMINAL_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a holder has to go after SIGKILL.
const HOLDER_KILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

struct Inner {
    namespace: String,
    exits: Arc<Exits>,
    containers: Mutex<HashMap<String, Container>>,
    /// Signalled whenever a process exits.
    exited: Condvar,
    publisher: Mutex<RemotePublisher>,
    exit_signal: Arc<ExitSignal>,
}

#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

fn get_rpc_status(code: Code, message: impl ToString) -> containerd_shim::protos::ttrpc::Error {
    containerd_shim::protos::ttrpc::Error::RpcStatus(get_status(code, message))
}

fn not_found(what: String) -> containerd_shim::protos::ttrpc::Error {
    get_rpc_status(Code::NOT_FOUND, format!("{what}: not found"))
}

fn precondition(message: String) -> containerd_shim::protos::ttrpc::Error {
    get_rpc_status(Code::FAILED_PRECONDITION, message)
}

fn internal(e: impl std::fmt::Display) -> containerd_shim::protos::ttrpc::Error {
    get_rpc_status(Code::INTERNAL, e.to_string())
}

fn invalid(e: impl std::fmt::Display) -> containerd_shim::protos::ttrpc::Error {
    get_rpc_status(Code::INVALID_ARGUMENT, e.to_string())
}

/// Exec ids become file names in the bundle: letters, digits, `-`, `_` and `.` only.
fn check_exec_id(exec_id: &str) -> TtrpcResult<()> {
    let ok = !exec_id.is_empty()
        && exec_id.len() <= 128
        && !exec_id.starts_with('.')
        && exec_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("exec id {exec_id:?}: want [A-Za-z0-9_.-]")))
    }
}

fn read_pid(path: &Path) -> TtrpcResult<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| internal(format!("reading {}: {e}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|_| internal(format!("{}: not a pid: {text:?}", path.display())))
}

impl Service {
    pub fn new(
        namespace: String,
        exits: Arc<Exits>,
        publisher: RemotePublisher,
        exit_signal: Arc<ExitSignal>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                namespace,
                exits,
                containers: Mutex::new(HashMap::new()),
                exited: Condvar::new(),
                publisher: Mutex::new(publisher),
                exit_signal,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.inner
            .containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, topic: &str, event: impl Event) {
        let publisher = self
            .inner
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = publisher.publish(
            Context::default(),
            topic,
            &self.inner.namespace,
            Box::new(event),
        ) {
            containerd_shim::warn!("publishing {topic}: {e}");
        }
    }

    /// Watches a process's host pid, started after `since`; on its exit records it, wakes
    /// Wait, and tells containerd.
    fn watch(&self, id: String, exec_id: String, pid: u32, since: Mark) {
        let service = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("watch-{pid}"))
            .spawn(move || {
                let Some(exit) = service.inner.exits.wait_after(pid as i32, since, None) else {
                    return;
                };
                // A terminal's output first: containerd's clients take the exit as the
                // moment to read the output to its end.
                let output = service
                    .lock()
                    .get_mut(&id)
                    .and_then(|c| c.process_mut(&exec_id).ok())
                    .and_then(|p| p.console.as_mut())
                    .and_then(|console| {
                        console.hang_up();
                        console.take_output()
                    });
                if let Some(output) = output {
                    if !output.finish(TERMINAL_DRAIN_TIMEOUT) {
                        containerd_shim::warn!(
                            "{id} {exec_id}: the terminal's output did not drain within \
                             {TERMINAL_DRAIN_TIMEOUT:?}"
                        );
                    }
                }
                // Before the exit is known (to Wait as to the events), as runc's shim reports
                // the cgroup's OOM kill before the init's exit: containerd's CRI then gives
                // the container the reason `OOMKilled`, never `Error` first.
                if exec_id.is_empty() && service.oom_killed(&id, exit.status) {
                    service.publish(
                        topics::TASK_OOM_EVENT_TOPIC,
                        TaskOOM {
                            container_id: id.clone(),
                            ..Default::default()
                        },
                    );
                }
                {
                    let mut containers = service.lock();
                    if let Some(p) = containers
                        .get_mut(&id)
                        .and_then(|c| c.process_mut(&exec_id).ok())
                    {
                        p.exit = Some(exit);
                        if let Some(relay) = &p.stdin {
                            relay.close();
                        }
                    }
                    service.inner.exited.notify_all();
                }
                service.publish(
                    topics::TASK_EXIT_EVENT_TOPIC,
                    TaskExit {
                        container_id: id.clone(),
                        id: if exec_id.is_empty() { id } else { exec_id },
                        pid,
                        exit_status: exit.status as u32,
                        exited_at: Some(timestamp(exit.at)).into(),
                        ..Default::default()
                    },
                );
            });
        if let Err(e) = spawned {
            containerd_shim::error!("watching pid {pid}: {e}");
        }
    }

    /// Whether container `id`, whose init ended with `status`, was ended by the sandbox's
    /// OOM killer. Only a SIGKILL can be one, so other exits cost no `runsc state`.
    fn oom_killed(&self, id: &str, status: i32) -> bool {
        if status != 128 + libc::SIGKILL {
            return false;
        }
        let runsc = {
            let containers = self.lock();
            match containers.get(id) {
                // A holder stands for a pod's sandbox container: no guest process of its own.
                Some(c) if c.holder.is_none() => Arc::clone(&c.runsc),
                _ => return false,
            }
        };
        runsc.oom_killed(id).unwrap_or_else(|e| {
            containerd_shim::warn!("{id}: asking about an OOM kill: {e}");
            false
        })
    }

    fn runsc_for(&self, req: &api::CreateTaskRequest) -> TtrpcResult<(Config, Runsc)> {
        let config_path = options::config_path(req.options.as_ref()).map_err(invalid)?;
        let config = Config::load(config_path.as_deref().map(Path::new)).map_err(invalid)?;
        let binary = resolve_runsc(&config.runsc);
        let runsc = Runsc::new(
            binary,
            config.root_for(&self.inner.namespace),
            config.debug,
            Arc::clone(&self.inner.exits),
        );
        Ok((config, runsc))
    }

    fn create_task(&self, req: &api::CreateTaskRequest) -> TtrpcResult<u32> {
        if req.id.is_empty() || req.bundle.is_empty() {
            return Err(invalid("create: id and bundle are required"));
        }
        if !req.checkpoint.is_empty() {
            return Err(get_rpc_status(
                Code::UNIMPLEMENTED,
                "create from a containerd checkpoint: restore images with `runsc restore`",
            ));
        }
        if self.lock().contains_key(&req.id) {
            return Err(get_rpc_status(
                Code::ALREADY_EXISTS,
                format!("container {}", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let (config, runsc) = self.runsc_for(req)?;
        bundle::write_record(
            &bundle,
            &Record {
                runsc: runsc.binary.clone(),
                root: runsc.root.clone(),
            },
        )
        .map_err(internal)?;
        let spec = bundle::read_config(&bundle).map_err(invalid)?;
        let image = bundle::checkpoint_image(&spec, &config.checkpoint_dir).map_err(invalid)?;
        if req.terminal && image.is_some() {
            return Err(get_rpc_status(
                Code::UNIMPLEMENTED,
                "a container restored from a checkpoint image cannot have a terminal: its \
                 stdio is the one it was checkpointed with (set tty: false)",
            ));
        }
        let claimed = match (&image, bundle::container_type(&spec)) {
            (Some(_), Some("sandbox")) => return self.create_holder(req, bundle, runsc, &spec),
            (Some(_), Some(_)) => {
                let pod = bundle::annotation(&spec, bundle::SANDBOX_ID_ANNOTATION)
                    .unwrap_or_default()
                    .to_string();
                self.claim_holder(&pod, &req.id)?;
                bundle::detach_from_pod(&bundle).map_err(internal)?;
                Some(pod)
            }
            _ => None,
        };
        let created = self.create_sandboxed(req, bundle, runsc, &config, image.as_deref());
        if let (Err(_), Some(pod)) = (&created, &claimed) {
            if let Some(h) = self.lock().get_mut(pod).and_then(|c| c.holder.as_mut()) {
                h.restored = None;
            }
        }
        created
    }

    /// A pod's container restored from the pod's checkpoint image takes the pod's holder:
    /// one per pod, since the image holds one sandbox.
    fn claim_holder(&self, pod: &str, id: &str) -> TtrpcResult<()> {
        let mut containers = self.lock();
        let holder = containers
            .get_mut(pod)
            .and_then(|c| c.holder.as_mut())
            .ok_or_else(|| {
                precondition(format!(
                    "container {id} names a checkpoint image, but its pod's sandbox {pod} was \
                     not created from one by this shim"
                ))
            })?;
        if let Some(other) = &holder.restored {
            return Err(precondition(format!(
                "pod {pod} already runs container {other} restored from its checkpoint image; \
                 a restored pod has one container"
            )));
        }
        holder.restored = Some(id.to_string());
        Ok(())
    }

    /// The sandbox container of a pod restored from a checkpoint image: a holder in the
    /// pod's network namespace, until the app container brings the sandbox.
    fn create_holder(
        &self,
        req: &api::CreateTaskRequest,
        bundle: PathBuf,
        runsc: Runsc,
        spec: &serde_json::Value,
    ) -> TtrpcResult<u32> {
        let netns = bundle::network_namespace(spec);
        let since = self.inner.exits.mark();
        let child = crate::hold::spawn(&netns, &bundle)
            .map_err(|e| internal(format!("starting the pod's holder: {e}")))?;
        let pid = child.id();
        let mut init = Process::new(StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        });
        init.pid = pid;
        self.lock().insert(
            req.id.clone(),
            Container {
                bundle,
                runsc: Arc::new(runsc),
                holder: Some(Holder { restored: None }),
                rootfs_mounted: false,
                paused: false,
                init,
                execs: HashMap::new(),
            },
        );
        self.watch(req.id.clone(), String::new(), pid, since);
        Ok(pid)
    }

    /// A container run by runsc: booted, or restored from `image`.
    fn create_sandboxed(
        &self,
        req: &api::CreateTaskRequest,
        bundle: PathBuf,
        runsc: Runsc,
        config: &Config,
        image: Option<&Path>,
    ) -> TtrpcResult<u32> {
        if let Some(acl) = &config.default_acl_file {
            bundle::add_default_acl(&bundle, acl).map_err(invalid)?;
        }
        bundle::size_pod_memory(&bundle).map_err(invalid)?;
        let rootfs_mounted = bundle::mount_rootfs(&bundle, &req.rootfs).map_err(internal)?;
        // Before `runsc create` starts the process the pid file will name.
        let since = self.inner.exits.mark();
        let result = (|| {
            let pid_file = bundle.join("init.pid");
            if req.terminal {
                let socket = ConsoleSocket::new().map_err(internal)?;
                runsc
                    .create(
                        &req.id,
                        &bundle,
                        &pid_file,
                        image,
                        Some(socket.path()),
                        Stdio3::default(),
                    )
                    .map_err(internal)?;
                let console = socket
                    .receive_master()
                    .and_then(|master| Console::start(master, &req.stdin, &req.stdout))
                    .map_err(|e| {
                        let _ = runsc.delete(&req.id);
                        internal(e)
                    })?;
                return Ok((read_pid(&pid_file)?, None, Some(console)));
            }
            let (stdio, relay) =
                stdio::open(&req.stdin, &req.stdout, &req.stderr).map_err(invalid)?;
            runsc
                .create(&req.id, &bundle, &pid_file, image, None, stdio)
                .map_err(internal)?;
            Ok((read_pid(&pid_file)?, relay, None))
        })();
        let (pid, relay, console) = match result {
            Ok(r) => r,
            Err(e) => {
                if rootfs_mounted {
                    bundle::unmount_rootfs(&bundle);
                }
                return Err(e);
            }
        };
        let mut init = Process::new(StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        });
        init.pid = pid as u32;
        init.stdin = relay;
        init.console = console;
        self.lock().insert(
            req.id.clone(),
            Container {
                bundle,
                runsc: Arc::new(runsc),
                holder: None,
                rootfs_mounted,
                paused: false,
                init,
                execs: HashMap::new(),
            },
        );
        self.watch(req.id.clone(), String::new(), pid as u32, since);
        Ok(pid as u32)
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> TtrpcResult<u32> {
        let (runsc, bundle, spec, paths) = {
            let mut containers = self.lock();
            let c = containers
                .get_mut(id)
                .ok_or_else(|| not_found(format!("container {id}")))?;
            let (runsc, bundle) = (Arc::clone(&c.runsc), c.bundle.clone());
            let p = c.process_mut(exec_id)?;
            if p.started {
                return Err(precondition(format!("exec {exec_id} already started")));
            }
            let spec = p.spec.take().unwrap_or_default();
            (runsc, bundle, spec, p.stdio.clone())
        };
        let process_file = bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = bundle.join(format!("exec-{exec_id}.pid"));
        let internal_pid_file = bundle.join(format!("exec-{exec_id}.sandbox-pid"));
        let files = vec![
            process_file.clone(),
            pid_file.clone(),
            internal_pid_file.clone(),
        ];
        // Before `runsc exec` starts the process the pid file will name.
        let since = self.inner.exits.mark();
        let result = (|| {
            std::fs::write(&process_file, &spec)
                .map_err(|e| internal(format!("writing {}: {e}", process_file.display())))?;
            let exec = |socket: Option<&Path>, stdio| {
                runsc
                    .exec(
                        id,
                        &bundle,
                        &process_file,
                        &pid_file,
                        &internal_pid_file,
                        socket,
                        stdio,
                    )
                    .map_err(internal)
            };
            let (relay, console) = if paths.terminal {
                let socket = ConsoleSocket::new().map_err(internal)?;
                exec(Some(socket.path()), Stdio3::default())?;
                let console = socket
                    .receive_master()
                    .and_then(|master| Console::start(master, &paths.stdin, &paths.stdout))
                    .map_err(internal);
                match console {
                    Ok(console) => (None, Some(console)),
                    Err(e) => {
                        // Without its terminal nobody could see or drive the process.
                        if let Ok(pid) = read_pid(&internal_pid_file) {
                            let _ = runsc.kill_pid(id, pid, libc::SIGKILL as u32);
                        }
                        return Err(e);
                    }
                }
            } else {
                let (stdio, relay) =
                    stdio::open(&paths.stdin, &paths.stdout, &paths.stderr).map_err(invalid)?;
                exec(None, stdio)?;
                (relay, None)
            };
            Ok((
                read_pid(&pid_file)?,
                read_pid(&internal_pid_file)?,
                relay,
                console,
            ))
        })();
        let mut containers = self.lock();
        let p = containers
            .get_mut(id)
            .and_then(|c| c.process_mut(exec_id).ok())
            .ok_or_else(|| not_found(format!("exec {exec_id}")))?;
        p.files = files;
        let (pid, sandbox_pid, relay, console) = match result {
            Ok(r) => r,
            Err(e) => {
                p.remove_files();
                return Err(e);
            }
        };
        p.pid = pid as u32;
        p.sandbox_pid = Some(sandbox_pid);
        p.started = true;
        p.stdin = relay;
        p.console = console;
        drop(containers);
        self.watch(id.to_string(), exec_id.to_string(), pid as u32, since);
        Ok(pid as u32)
    }

    /// Waits for a process to exit; its status and time.
    fn wait_exit(&self, id: &str, exec_id: &str) -> TtrpcResult<api::WaitResponse> {
        let mut containers = self.lock();
        loop {
            let c = containers
                .get(id)
                .ok_or_else(|| not_found(format!("container {id}")))?;
            let p = c.process(exec_id)?;
            if p.exit.is_some() {
                return Ok(api::WaitResponse {
                    exit_status: p.exit_status(),
                    exited_at: p.exited_at().into(),
                    ..Default::default()
                });
            }
            containers = self
                .inner
                .exited
                .wait(containers)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The runsc binary: an absolute path as given; a bare name next to the shim if there,
/// else on PATH (as runc's shim finds runc).
fn resolve_runsc(configured: &Path) -> PathBuf {
    if configured.is_absolute() || configured.components().count() > 1 {
        return configured.to_path_buf();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let beside = dir.join(configured);
        if beside.is_file() {
            return beside;
        }
    }
    configured.to_path_buf()
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        containerd_shim::info!("create {} (bundle {})", req.id, req.bundle);
        let pid = self.create_task(&req)?;
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                pid,
                ..Default::default()
            },
        );
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        if !req.exec_id.is_empty() {
            let pid = self.start_exec(&req.id, &req.exec_id)?;
            self.publish(
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid,
                    ..Default::default()
                },
            );
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        let runsc = {
            let containers = self.lock();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            if c.init.started {
                return Err(precondition(format!(
                    "container {} already started",
                    req.id
                )));
            }
            c.holder.is_none().then(|| Arc::clone(&c.runsc))
        };
        // A holder has nothing to start: it waits from the moment it exists.
        if let Some(runsc) = runsc {
            runsc.start(&req.id).map_err(internal)?;
        }
        let pid = {
            let mut containers = self.lock();
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            c.init.started = true;
            c.init.pid
        };
        self.publish(
            topics::TASK_START_EVENT_TOPIC,
            TaskStart {
                container_id: req.id.clone(),
                pid,
                ..Default::default()
            },
        );
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let containers = self.lock();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| not_found(format!("container {}", req.id)))?;
        let p = c.process(&req.exec_id)?;
        Ok(api::StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid,
            status: p.status(c.paused).into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: p.exit_status(),
            exited_at: p.exited_at().into(),
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        check_exec_id(&req.exec_id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| invalid("exec: no process spec"))?;
        {
            let mut containers = self.lock();
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            if c.init.exit.is_some() {
                return Err(precondition(format!("container {} is stopped", req.id)));
            }
            if c.execs.contains_key(&req.exec_id) {
                return Err(get_rpc_status(
                    Code::ALREADY_EXISTS,
                    format!("exec {}", req.exec_id),
                ));
            }
            let mut p = Process::new(StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            });
            p.spec = Some(spec);
            c.execs.insert(req.exec_id.clone(), p);
        }
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::new())
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let (runsc, sandbox_pid, stopped, started, holder_pid) = {
            let containers = self.lock();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            let p = c.process(&req.exec_id)?;
            (
                Arc::clone(&c.runsc),
                p.sandbox_pid,
                p.exit.is_some(),
                p.started,
                c.holder.as_ref().map(|_| c.init.pid),
            )
        };
        if stopped && !req.all {
            return Err(not_found("process already finished".into()));
        }
        if let Some(pid) = holder_pid {
            if !stopped {
                signal_holder(pid, req.signal)?;
            }
            return Ok(api::Empty::new());
        }
        if req.exec_id.is_empty() {
            runsc.kill(&req.id, req.signal, req.all).map_err(|e| {
                match e.to_string().contains("not running") {
                    true => not_found("process already finished".into()),
                    false => internal(e),
                }
            })?;
        } else {
            match sandbox_pid {
                Some(pid) if started => runsc
                    .kill_pid(&req.id, pid, req.signal)
                    .map_err(|e| not_found(e.to_string()))?,
                _ => return Err(precondition(format!("exec {} not started", req.exec_id))),
            }
        }
        Ok(api::Empty::new())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut containers = self.lock();
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            let p = c.process(&req.exec_id)?;
            if p.started && p.exit.is_none() {
                return Err(precondition(format!("exec {} is running", req.exec_id)));
            }
            let p = c
                .execs
                .remove(&req.exec_id)
                .ok_or_else(|| not_found(format!("exec {}", req.exec_id)))?;
            p.remove_files();
            return Ok(api::DeleteResponse {
                pid: p.pid,
                exit_status: p.exit_status(),
                exited_at: p.exited_at().into(),
                ..Default::default()
            });
        }
        let (runsc, holder_pid) = {
            let containers = self.lock();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            (Arc::clone(&c.runsc), c.holder.as_ref().map(|_| c.init.pid))
        };
        match holder_pid {
            Some(pid) => self.end_holder(&req.id, pid)?,
            None => runsc.delete(&req.id).map_err(internal)?,
        }
        let c = self
            .lock()
            .remove(&req.id)
            .ok_or_else(|| not_found(format!("container {}", req.id)))?;
        if c.rootfs_mounted {
            bundle::unmount_rootfs(&c.bundle);
        }
        for p in c.execs.values() {
            p.remove_files();
        }
        // A container deleted before its init was reaped (created, never started) still
        // reports an exit, as runc's shim does.
        let exit = c.init.exit.unwrap_or(crate::exits::Exit {
            status: 128 + libc::SIGKILL,
            at: std::time::SystemTime::now(),
        });
        let response = api::DeleteResponse {
            pid: c.init.pid,
            exit_status: exit.status as u32,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        };
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: response.pid,
                exit_status: response.exit_status,
                exited_at: response.exited_at.clone(),
                ..Default::default()
            },
        );
        Ok(response)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let pids = match self.holder_pid(&req.id)? {
            Some(pid) => vec![pid],
            None => self.runsc_of(&req.id)?.ps(&req.id).map_err(internal)?,
        };
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.set_paused(&req.id, true)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.set_paused(&req.id, false)
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let containers = self.lock();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| not_found(format!("container {}", req.id)))?;
        let p = c.process(&req.exec_id)?;
        if let Some(relay) = &p.stdin {
            relay.close();
        }
        // A terminal has one stream both ways: closing its input hangs it up, as runc's
        // shim does once its stdin ends.
        if let Some(console) = &p.console {
            console.hang_up();
        }
        Ok(api::Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, _req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        Err(get_rpc_status(
            Code::UNIMPLEMENTED,
            "updating a sandbox's resources is not supported (runsc update)",
        ))
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let (runsc, sandbox_pid) = {
            let containers = self.lock();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            let p = c.process(&req.exec_id)?;
            // Without a terminal (or before an exec's has been made) there is nothing to
            // size: runc's shim answers the same.
            let Some(console) = &p.console else {
                return Ok(api::Empty::new());
            };
            let changed = console
                .resize(req.width, req.height)
                .map_err(|e| internal(format!("resizing the terminal: {e}")))?;
            if !changed || p.exit.is_some() {
                return Ok(api::Empty::new());
            }
            (Arc::clone(&c.runsc), p.sandbox_pid)
        };
        // What Linux does for a terminal's processes (they are guest processes here, so it
        // cannot): SIGWINCH, for them to read the new size. A process that has just exited
        // makes this fail, which is no error of the resize.
        let sent = match (req.exec_id.is_empty(), sandbox_pid) {
            (true, _) => runsc.kill(&req.id, libc::SIGWINCH as u32, false),
            (false, Some(pid)) => runsc.kill_pid(&req.id, pid, libc::SIGWINCH as u32),
            (false, None) => Ok(()),
        };
        if let Err(e) = sent {
            containerd_shim::warn!("{} {}: SIGWINCH after a resize: {e}", req.id, req.exec_id);
        }
        Ok(api::Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        self.wait_exit(&req.id, &req.exec_id)
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        // A holder uses no guest resources: its figures are zero.
        let data = match self.holder_pid(&req.id)? {
            Some(_) => serde_json::Value::Null,
            None => self.runsc_of(&req.id)?.stats(&req.id).map_err(internal)?,
        };
        let any = containerd_shim::util::convert_to_any(Box::new(metrics::from_stats(&data)))
            .map_err(internal)?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.lock().get(&req.id).map_or(0, |c| c.init.pid);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: VERSION.to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // One shim serves a whole pod: it goes when its last container has been deleted.
        if self.lock().is_empty() {
            self.inner.exit_signal.signal();
        }
        Ok(api::Empty::new())
    }
}

/// Sends `signal` to a holder process (a host process of ours, not a guest's).
fn signal_holder(pid: u32, signal: u32) -> TtrpcResult<()> {
    let signal = nix::sys::signal::Signal::try_from(signal as i32).map_err(invalid)?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(internal(format!("signalling the pod's holder {pid}: {e}"))),
    }
}

impl Service {
    /// Kills a holder and waits until its exit is recorded.
    fn end_holder(&self, id: &str, pid: u32) -> TtrpcResult<()> {
        signal_holder(pid, libc::SIGKILL as u32)?;
        let deadline = std::time::Instant::now() + HOLDER_KILL_TIMEOUT;
        let mut containers = self.lock();
        loop {
            let exited = containers.get(id).is_none_or(|c| c.init.exit.is_some());
            if exited {
                return Ok(());
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return Err(internal(format!("the pod's holder {pid} did not exit")));
            };
            containers = self
                .inner
                .exited
                .wait_timeout(containers, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// `runsc pause` or `resume`, and the event containerd expects after it.
    fn set_paused(&self, id: &str, paused: bool) -> TtrpcResult<api::Empty> {
        let runsc = self.sandbox_runsc_of(id)?;
        if paused {
            runsc.pause(id).map_err(internal)?;
        } else {
            runsc.resume(id).map_err(internal)?;
        }
        if let Some(c) = self.lock().get_mut(id) {
            c.paused = paused;
        }
        let container_id = id.to_string();
        if paused {
            self.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                TaskPaused {
                    container_id,
                    ..Default::default()
                },
            );
        } else {
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                TaskResumed {
                    container_id,
                    ..Default::default()
                },
            );
        }
        Ok(api::Empty::new())
    }

    fn holder_pid(&self, id: &str) -> TtrpcResult<Option<u32>> {
        let containers = self.lock();
        let c = containers
            .get(id)
            .ok_or_else(|| not_found(format!("container {id}")))?;
        Ok(c.holder.as_ref().map(|_| c.init.pid))
    }

    /// The runsc of a container that is a sandbox (not a holder).
    fn sandbox_runsc_of(&self, id: &str) -> TtrpcResult<Arc<Runsc>> {
        if self.holder_pid(id)?.is_some() {
            return Err(get_rpc_status(
                Code::UNIMPLEMENTED,
                format!("{id} stands in for a pod restored from a checkpoint image: pause its container"),
            ));
        }
        self.runsc_of(id)
    }

    fn runsc_of(&self, id: &str) -> TtrpcResult<Arc<Runsc>> {
        self.lock()
            .get(id)
            .map(|c| Arc::clone(&c.runsc))
            .ok_or_else(|| not_found(format!("container {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_are_safe_file_names() {
        for ok in ["abc", "a-b_c.1", "0123456789abcdef"] {
            assert!(check_exec_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(check_exec_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_codes() {
        let e = not_found("exec x".into());
        assert!(e.to_string().contains("not found"), "{e}");
    }
}

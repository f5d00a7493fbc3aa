//! The control socket's request handler: each request of `proto/control.proto` mapped
//! onto the sentry's [`Sandbox`]. One thread per connection (proto's `serve`), so a
//! `Wait` blocks only its own caller.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nanovisor_proto::control::{
    request, response, AclAddResponse, AuditLine, ContainerStatus, Empty, ErrorCode, ExecResponse,
    ProcessEntry as ProtoProcess, ProcessesResponse, Request, Response, StartResponse,
    StateResponse, StatsResponse, WaitResponse,
};
use nanovisor_proto::{error, Responder};
use netstack::acl::Acl;
use sentry::kernel::exit::ExitStatus;
use sentry::sandbox::{ProcessSpec, Sandbox, Stdio};

use crate::acl_convert;

/// Everything the handler needs.
pub struct Controller {
    pub sandbox: Arc<Sandbox>,
    /// The container this sandbox runs.
    pub id: String,
    /// The init process, until `Start` spawns it.
    pub init: Mutex<Option<ProcessSpec>>,
    /// Told the init pid once it runs (the boot main thread waits for it).
    pub started: Mutex<Option<Sender<i32>>>,
    pub acl: Arc<Acl>,
    pub audit_path: PathBuf,
    /// Wait requests being answered: the sandbox process stays until they are.
    pub waiting: std::sync::atomic::AtomicUsize,
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
        stdio,
        rlimits: p
            .rlimits
            .iter()
            .map(|r| (r.resource, r.soft, r.hard))
            .collect(),
    })
}

fn wait_response(status: ExitStatus) -> Response {
    use nanovisor_proto::control::wait_response::Status;
    let status = match status {
        ExitStatus::Exited(c) => Status::ExitCode(c as i32),
        ExitStatus::Signaled(s) => Status::Signal(s as i32),
    };
    ok(response::Kind::Wait(WaitResponse {
        status: Some(status),
    }))
}

impl Controller {
    fn check_container(&self, id: &str) -> Result<(), Response> {
        if id.is_empty() || id == self.id {
            Ok(())
        } else {
            Err(error(
                ErrorCode::NotFound,
                format!("no container {id:?} in sandbox {:?}", self.id),
            ))
        }
    }

    fn status(&self) -> (ContainerStatus, i32) {
        match self.sandbox.init_pid(&self.id) {
            None => (ContainerStatus::Created, 0),
            Some(pid) if self.sandbox.status(pid).is_some() => (ContainerStatus::Stopped, pid),
            Some(pid) if self.sandbox.is_paused() => (ContainerStatus::Paused, pid),
            Some(pid) => (ContainerStatus::Running, pid),
        }
    }

    /// Handle one request (and stream further responses for a followed audit log).
    pub fn handle(&self, req: Request, fds: Vec<OwnedFd>, out: &mut Responder) {
        tracing::debug!(request = req.name(), "control");
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
            request::Kind::Start(r) => {
                self.check_container(&r.container_id)?;
                let spec = self
                    .init
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .ok_or_else(|| {
                        error(
                            ErrorCode::WrongState,
                            "the container has already been started",
                        )
                    })?;
                let pid = self
                    .sandbox
                    .spawn(&self.id, spec)
                    .map_err(|e| error(ErrorCode::Internal, format!("starting: {e}")))?;
                if let Some(tx) = self
                    .started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                {
                    let _ = tx.send(pid);
                }
                ok(response::Kind::Start(StartResponse { pid }))
            }
            request::Kind::Exec(r) => {
                self.check_container(&r.container_id)?;
                if self.status().0 != ContainerStatus::Running {
                    return Err(error(ErrorCode::WrongState, "the container is not running"));
                }
                let p = r
                    .process
                    .ok_or_else(|| error(ErrorCode::InvalidArgument, "exec without a process"))?;
                let spec = process_spec(&p, fds)?;
                let pid = self
                    .sandbox
                    .spawn(&self.id, spec)
                    .map_err(|e| error(ErrorCode::InvalidArgument, format!("exec: {e}")))?;
                ok(response::Kind::Exec(ExecResponse { pid }))
            }
            request::Kind::Signal(r) => {
                self.check_container(&r.container_id)?;
                let sig = u8::try_from(r.signal)
                    .map_err(|_| error(ErrorCode::InvalidArgument, "bad signal number"))?;
                if r.all {
                    self.sandbox.signal_container(&self.id, sig);
                } else {
                    let pid = match r.pid {
                        0 => self.sandbox.init_pid(&self.id).ok_or_else(|| {
                            error(ErrorCode::WrongState, "the container has not started")
                        })?,
                        p => p,
                    };
                    self.sandbox.signal(pid, sig).map_err(|e| {
                        error(ErrorCode::NotFound, format!("signal {sig} to {pid}: {e}"))
                    })?;
                }
                empty()
            }
            request::Kind::Wait(r) => {
                self.check_container(&r.container_id)?;
                let _waiting = WaitGuard::new(&self.waiting);
                let pid = match r.pid {
                    0 => self.sandbox.init_pid(&self.id).ok_or_else(|| {
                        error(ErrorCode::WrongState, "the container has not started")
                    })?,
                    p => p,
                };
                let status = self
                    .sandbox
                    .wait(pid)
                    .map_err(|e| error(ErrorCode::NotFound, e.to_string()))?;
                wait_response(status)
            }
            request::Kind::State(r) => {
                self.check_container(&r.container_id)?;
                let (status, init_pid) = self.status();
                ok(response::Kind::State(StateResponse {
                    status: status as i32,
                    init_pid,
                }))
            }
            request::Kind::Stats(r) => {
                self.check_container(&r.container_id)?;
                let s = self.sandbox.stats(Some(&self.id));
                ok(response::Kind::Stats(StatsResponse {
                    memory_bytes: s.memory_bytes,
                    cpu_nanos: cpu_nanos(),
                    pids: s.pids,
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                }))
            }
            request::Kind::Pause(r) => {
                self.check_container(&r.container_id)?;
                if self.status().0 != ContainerStatus::Running {
                    return Err(error(ErrorCode::WrongState, "the container is not running"));
                }
                self.sandbox.pause();
                empty()
            }
            request::Kind::Resume(r) => {
                self.check_container(&r.container_id)?;
                if self.status().0 != ContainerStatus::Paused {
                    return Err(error(ErrorCode::WrongState, "the container is not paused"));
                }
                self.sandbox.resume();
                empty()
            }
            request::Kind::Processes(r) => {
                self.check_container(&r.container_id)?;
                let processes = self
                    .sandbox
                    .processes(Some(&self.id))
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
            request::Kind::CreateContainer(_) => {
                return Err(error(
                    ErrorCode::InvalidArgument,
                    "multi-container sandboxes are not supported yet",
                ))
            }
        };
        Ok(Some(r))
    }

    /// Send the audit log, a line per response; with `follow`, keep sending new lines
    /// until the client goes away.
    fn stream_audit(&self, follow: bool, out: &mut Responder) {
        let Ok(file) = std::fs::File::open(&self.audit_path) else {
            let _ = out.send(error(ErrorCode::NotFound, "no audit log"));
            return;
        };
        let mut reader = BufReader::new(file);
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

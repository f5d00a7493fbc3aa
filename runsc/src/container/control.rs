//! The client side of a sandbox's control socket (`ROOT/ID/control.sock`, served by
//! `runsc boot`): one typed method per request of `proto/control.proto`, errors turned
//! into [`ControlError`].

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nanovisor_proto::control::{
    request, response, wait_response, AclAddRequest, AclAuditRequest, AclGetRequest, AclPolicy,
    AclRemoveRequest, AclReplaceRequest, AclRule, CheckpointRequest, CheckpointResponse,
    ContainerStatus, CreateContainerRequest, ExecRequest, ListeningRequest, Mount, PauseRequest,
    ProcessEntry, ProcessSpec, ProcessesRequest, Request, ResumeRequest, SignalRequest,
    StartRequest, StateRequest, StatsRequest, StatsResponse, WaitRequest,
};
use nanovisor_proto::Client;
use sentry::sandbox::HostSource;

use super::Status;

/// The socket's name in the state directory.
pub const SOCKET: &str = "control.sock";

/// How long a request that should be answered at once may take (not `Wait`, not a
/// followed audit log).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a control request failed.
#[derive(Debug)]
pub enum ControlError {
    /// The socket could not be reached (the sandbox process is gone or not listening).
    Connect(String),
    /// The connection broke, or a message could not be read or written.
    Transport(String),
    /// The sandbox refused the request.
    Remote { code: i32, message: String },
    /// The sandbox answered with a response of the wrong kind.
    Unexpected(&'static str),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Connect(e) => write!(f, "connecting to the sandbox: {e}"),
            ControlError::Transport(e) => write!(f, "talking to the sandbox: {e}"),
            ControlError::Remote { message, .. } => f.write_str(message),
            ControlError::Unexpected(what) => {
                write!(
                    f,
                    "the sandbox answered with the wrong message (wanted {what})"
                )
            }
        }
    }
}

impl std::error::Error for ControlError {}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's number: the code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Where requests about one container go: the control socket of the sandbox that runs
/// it (its own, or its pod's) and its id there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub socket: PathBuf,
    pub container_id: String,
}

impl Endpoint {
    pub fn connect(&self) -> Result<Control, ControlError> {
        Control::connect_path(&self.socket, &self.container_id)
    }
}

/// A connection to one sandbox, for requests about container `id`.
pub struct Control {
    client: Client,
    id: String,
}

fn check(resp: nanovisor_proto::control::Response) -> Result<response::Kind, ControlError> {
    match resp.kind {
        Some(response::Kind::Error(e)) => Err(ControlError::Remote {
            code: e.code,
            message: e.message,
        }),
        Some(kind) => Ok(kind),
        None => Err(ControlError::Unexpected("a response")),
    }
}

impl Control {
    pub fn connect_path(path: &Path, id: &str) -> Result<Control, ControlError> {
        let client = Client::connect(path)
            .map_err(|e| ControlError::Connect(format!("{}: {e}", path.display())))?;
        client
            .set_timeout(Some(TIMEOUT))
            .map_err(|e| ControlError::Connect(e.to_string()))?;
        Ok(Control {
            client,
            id: id.to_string(),
        })
    }

    fn no_timeout(&mut self) -> Result<(), ControlError> {
        self.client
            .set_timeout(None)
            .map_err(|e| ControlError::Transport(e.to_string()))
    }

    fn call(
        &mut self,
        kind: request::Kind,
        fds: &[BorrowedFd<'_>],
    ) -> Result<response::Kind, ControlError> {
        let resp = self
            .client
            .call(Request { kind: Some(kind) }, fds)
            .map_err(|e| ControlError::Transport(e.to_string()))?;
        check(resp)
    }

    fn call_empty(&mut self, kind: request::Kind) -> Result<(), ControlError> {
        match self.call(kind, &[])? {
            response::Kind::Empty(_) => Ok(()),
            _ => Err(ControlError::Unexpected("an empty response")),
        }
    }

    /// Adds the container to the sandbox (a further container of its pod): its root file
    /// system and mounts, opened here because the sandbox has no view of the host's
    /// tree, and `stdio` as its init's stdio (three fds, or the pty's slave when
    /// `process.terminal`). The init waits for [`Control::start`].
    pub fn create_container(
        &mut self,
        process: ProcessSpec,
        hostname: &str,
        rootfs: &HostSource,
        mounts: &[(Mount, Option<HostSource>)],
        stdio: &[BorrowedFd<'_>],
    ) -> Result<(), ControlError> {
        let req = request::Kind::CreateContainer(CreateContainerRequest {
            container_id: self.id.clone(),
            process: Some(process),
            hostname: hostname.to_string(),
            mounts: mounts.iter().map(|(m, _)| m.clone()).collect(),
            rootfs_path: rootfs.shown().display().to_string(),
        });
        let fds: Vec<BorrowedFd<'_>> = stdio
            .iter()
            .copied()
            .chain(std::iter::once(rootfs.as_fd()))
            .chain(
                mounts
                    .iter()
                    .filter_map(|(_, s)| s.as_ref().map(|s| s.as_fd())),
            )
            .collect();
        match self.call(req, &fds)? {
            response::Kind::Empty(_) => Ok(()),
            _ => Err(ControlError::Unexpected("an empty response")),
        }
    }

    /// Starts the container's init; returns its pid in the sandbox.
    pub fn start(&mut self) -> Result<i32, ControlError> {
        let req = request::Kind::Start(StartRequest {
            container_id: self.id.clone(),
        });
        match self.call(req, &[])? {
            response::Kind::Start(r) => Ok(r.pid),
            _ => Err(ControlError::Unexpected("Start")),
        }
    }

    /// Runs a new process in the container, with `fds` as its stdio (three fds, or the
    /// pty's slave when `process.terminal`). Returns its pid in the sandbox.
    pub fn exec(
        &mut self,
        process: ProcessSpec,
        fds: &[BorrowedFd<'_>],
    ) -> Result<i32, ControlError> {
        let req = request::Kind::Exec(ExecRequest {
            container_id: self.id.clone(),
            process: Some(process),
        });
        match self.call(req, fds)? {
            response::Kind::Exec(r) => Ok(r.pid),
            _ => Err(ControlError::Unexpected("Exec")),
        }
    }

    /// Sends `signal` to process `pid` (0: the init), or to every process with `all`.
    pub fn signal(&mut self, pid: i32, all: bool, signal: i32) -> Result<(), ControlError> {
        self.call_empty(request::Kind::Signal(SignalRequest {
            container_id: self.id.clone(),
            pid,
            all,
            signal,
        }))
    }

    /// Takes this container (of a pod) out of its sandbox, closing what it held.
    pub fn remove_container(&mut self) -> Result<(), ControlError> {
        self.call_empty(request::Kind::RemoveContainer(
            nanovisor_proto::control::RemoveContainerRequest {
                container_id: self.id.clone(),
            },
        ))
    }

    /// Waits for process `pid` (0: the init, which is first waited for to start) to end,
    /// however long that takes.
    pub fn wait(&mut self, pid: i32) -> Result<ExitStatus, ControlError> {
        self.wait_exit(pid).map(|(status, _)| status)
    }

    /// [`Self::wait`], and whether the sandbox's OOM killer ended the process.
    pub fn wait_exit(&mut self, pid: i32) -> Result<(ExitStatus, bool), ControlError> {
        self.no_timeout()?;
        let req = request::Kind::Wait(WaitRequest {
            container_id: self.id.clone(),
            pid,
        });
        match self.call(req, &[])? {
            response::Kind::Wait(r) => match r.status {
                Some(wait_response::Status::ExitCode(c)) => {
                    Ok((ExitStatus::Exited(c), r.oom_killed))
                }
                Some(wait_response::Status::Signal(s)) => {
                    Ok((ExitStatus::Signaled(s), r.oom_killed))
                }
                None => Err(ControlError::Unexpected("an exit status")),
            },
            _ => Err(ControlError::Unexpected("Wait")),
        }
    }

    /// The container's status and its init's pid in the sandbox (0 before start).
    pub fn state(&mut self) -> Result<(Status, i32), ControlError> {
        let req = request::Kind::State(StateRequest {
            container_id: self.id.clone(),
        });
        match self.call(req, &[])? {
            response::Kind::State(r) => {
                let status = match ContainerStatus::try_from(r.status) {
                    Ok(ContainerStatus::Created) => Status::Created,
                    Ok(ContainerStatus::Running) => Status::Running,
                    Ok(ContainerStatus::Paused) => Status::Paused,
                    Ok(ContainerStatus::Stopped) => Status::Stopped,
                    _ => return Err(ControlError::Unexpected("a known status")),
                };
                Ok((status, r.init_pid))
            }
            _ => Err(ControlError::Unexpected("State")),
        }
    }

    pub fn stats(&mut self) -> Result<StatsResponse, ControlError> {
        let req = request::Kind::Stats(StatsRequest {
            container_id: self.id.clone(),
        });
        match self.call(req, &[])? {
            response::Kind::Stats(r) => Ok(r),
            _ => Err(ControlError::Unexpected("Stats")),
        }
    }

    /// Checkpoints the whole sandbox: guest memory into `memory` and the kernel state
    /// into `state` (files the sandbox writes at offsets); see control.proto.
    pub fn checkpoint(
        &mut self,
        leave_running: bool,
        memory: BorrowedFd<'_>,
        state: BorrowedFd<'_>,
    ) -> Result<CheckpointResponse, ControlError> {
        let req = request::Kind::Checkpoint(CheckpointRequest { leave_running });
        match self.call(req, &[memory, state])? {
            response::Kind::Checkpoint(r) => Ok(r),
            _ => Err(ControlError::Unexpected("Checkpoint")),
        }
    }

    /// Whether a guest socket listens on TCP `port`.
    pub fn tcp_listening(&mut self, port: u16) -> Result<bool, ControlError> {
        let req = request::Kind::Listening(ListeningRequest {
            port: u32::from(port),
        });
        match self.call(req, &[])? {
            response::Kind::Listening(r) => Ok(r.listening),
            _ => Err(ControlError::Unexpected("Listening")),
        }
    }

    pub fn pause(&mut self) -> Result<(), ControlError> {
        self.call_empty(request::Kind::Pause(PauseRequest {
            container_id: self.id.clone(),
        }))
    }

    pub fn resume(&mut self) -> Result<(), ControlError> {
        self.call_empty(request::Kind::Resume(ResumeRequest {
            container_id: self.id.clone(),
        }))
    }

    pub fn processes(&mut self) -> Result<Vec<ProcessEntry>, ControlError> {
        let req = request::Kind::Processes(ProcessesRequest {
            container_id: self.id.clone(),
        });
        match self.call(req, &[])? {
            response::Kind::Processes(r) => Ok(r.processes),
            _ => Err(ControlError::Unexpected("Processes")),
        }
    }

    pub fn acl_get(&mut self) -> Result<AclPolicy, ControlError> {
        match self.call(request::Kind::AclGet(AclGetRequest {}), &[])? {
            response::Kind::AclPolicy(p) => Ok(p),
            _ => Err(ControlError::Unexpected("AclPolicy")),
        }
    }

    /// Adds a rule at `position` (the end when `None`); returns its id.
    pub fn acl_add(
        &mut self,
        rule: AclRule,
        position: Option<u32>,
    ) -> Result<String, ControlError> {
        let req = request::Kind::AclAdd(AclAddRequest {
            rule: Some(rule),
            position,
        });
        match self.call(req, &[])? {
            response::Kind::AclAdd(r) => Ok(r.id),
            _ => Err(ControlError::Unexpected("AclAdd")),
        }
    }

    pub fn acl_remove(&mut self, id: &str) -> Result<(), ControlError> {
        self.call_empty(request::Kind::AclRemove(AclRemoveRequest {
            id: id.to_string(),
        }))
    }

    pub fn acl_replace(&mut self, policy: AclPolicy) -> Result<(), ControlError> {
        self.call_empty(request::Kind::AclReplace(AclReplaceRequest {
            policy: Some(policy),
        }))
    }

    /// Streams the audit log, a JSON line at a time, to `line`; with `follow`, until the
    /// sandbox goes away or `line` returns false.
    pub fn acl_audit(
        &mut self,
        follow: bool,
        mut line: impl FnMut(&str) -> bool,
    ) -> Result<(), ControlError> {
        if follow {
            self.no_timeout()?;
        }
        let mut resp = self
            .client
            .call(
                Request {
                    kind: Some(request::Kind::AclAudit(AclAuditRequest { follow })),
                },
                &[],
            )
            .map_err(|e| ControlError::Transport(e.to_string()));
        loop {
            match check(resp?)? {
                response::Kind::AuditLine(l) => {
                    if !line(&l.json) {
                        return Ok(());
                    }
                }
                response::Kind::Empty(_) => return Ok(()),
                _ => return Err(ControlError::Unexpected("AuditLine")),
            }
            resp = match self.client.next() {
                Ok(r) => Ok(r),
                // The sandbox ended while we followed its log.
                Err(_) if follow => return Ok(()),
                Err(e) => Err(ControlError::Transport(e.to_string())),
            };
        }
    }
}

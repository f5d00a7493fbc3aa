//! An OCI container as the CLI sees it: its saved state (`ROOT/ID/state.json`), its
//! status (from the sandbox process and its control socket), and the guards that say
//! which operation each status allows.
//!
//! A container either has a sandbox process of its own (`runsc boot`, its `pid`), or is
//! a further container of a pod and runs in the sandbox of the pod's sandbox container
//! ([`State::host`]); then its `pid` is a waiter (`runsc exec-wait --container`) that
//! exits with the container's init, for whoever reaps it.
//!
//! `state.json` is written once by `create`, atomically, after the sandbox reported
//! ready; nothing rewrites it. A state directory without it belongs to a `create` that
//! is still running (its lock is held) or that crashed (then the container is stopped
//! and `delete` removes it).

pub mod control;
pub mod dir;
pub mod host_process;

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use self::control::{Control, Endpoint};
use self::dir::{ContainerDir, DirError, Root};

/// The file holding [`State`].
pub const STATE_FILE: &str = "state.json";

/// The version of `state.json` this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// The OCI runtime spec version we report in `state` (the newest we implement).
pub const OCI_VERSION: &str = "1.1.0";

/// CRI annotations (containerd's and CRI-O's) that say what a container is in its pod.
const CONTAINER_TYPE_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri-o.ContainerType",
];
const SANDBOX_ID_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.SandboxID",
];

/// A container's place in its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerType {
    /// The first container of a sandbox: a pod's pause container, or a container that
    /// names no pod (podman, `runsc run`).
    Sandbox,
    /// A further container of a pod whose sandbox is `State::sandbox_id`.
    Container,
}

impl ContainerType {
    /// What the spec's CRI annotations say (no annotation: a sandbox of its own).
    pub fn of(annotations: &BTreeMap<String, String>) -> (ContainerType, Option<String>) {
        let typ = CONTAINER_TYPE_ANNOTATIONS
            .iter()
            .find_map(|k| annotations.get(*k));
        let sandbox = SANDBOX_ID_ANNOTATIONS
            .iter()
            .find_map(|k| annotations.get(*k))
            .cloned();
        match typ.map(String::as_str) {
            Some("container") => (ContainerType::Container, sandbox),
            _ => (ContainerType::Sandbox, sandbox),
        }
    }
}

/// The sandbox that runs a container of a pod: its pod's sandbox container's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The sandbox's control socket, absolute.
    pub socket: PathBuf,
    /// The sandbox process (`runsc boot`) and its start time.
    pub pid: i32,
    pub pid_start_time: u64,
}

/// `ROOT/ID/state.json`: what later commands need to know about a created container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    pub id: String,
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The root file system, absolute.
    pub rootfs: PathBuf,
    /// The config's `ociVersion`.
    pub oci_version: String,
    /// The container's pid for callers: its sandbox process (`runsc boot`), or with
    /// `host`, its waiter.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), so a reused pid is not taken for it.
    pub pid_start_time: u64,
    /// When `create` finished, RFC 3339.
    pub created: String,
    /// The config's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The config's process (`exec` and `checkpoint` read it later).
    pub process: Process,
    /// Whether the init's stdio is a terminal (then its master went to `console_socket`).
    pub terminal: bool,
    pub console_socket: Option<PathBuf>,
    pub container_type: ContainerType,
    /// The pod's sandbox id, from the CRI annotations.
    pub sandbox_id: Option<String>,
    /// Cgroup directories `delete` removes (when empty), from `linux.cgroupsPath`.
    pub cgroup_dirs: Vec<PathBuf>,
    /// The uid that created the container.
    pub owner: u32,
    /// Set when the container runs in its pod's sandbox, not in one of its own.
    #[serde(default)]
    pub host: Option<Host>,
}

impl State {
    /// The annotations of a spec, sorted.
    pub fn annotations_of(spec: &Spec) -> BTreeMap<String, String> {
        spec.annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    pub fn from_json(data: &[u8]) -> Result<State, String> {
        let state: State = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "state format version {} (this build reads version {STATE_VERSION})",
                state.version
            ));
        }
        Ok(state)
    }
}

/// A container's status (the OCI state's `status`, plus `paused` as runc has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `create` is still running.
    Creating,
    /// Created; `start` has not run yet.
    Created,
    Running,
    Paused,
    /// The init has ended, or the sandbox process is gone.
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }

    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// Signals reach created, running and paused containers (as runc allows).
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    /// Without `--force`: stopped containers, and created ones (runc kills those).
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created)
    }

    pub fn can_exec(self) -> bool {
        self == Status::Running
    }

    pub fn can_pause(self) -> bool {
        self == Status::Running
    }

    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors loading a container.
#[derive(Debug)]
pub enum ContainerError {
    Dir(DirError),
    /// `state.json` cannot be read.
    BadState {
        id: String,
        message: String,
    },
}

impl std::fmt::Display for ContainerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerError::Dir(e) => e.fmt(f),
            ContainerError::BadState { id, message } => {
                write!(f, "container {id:?}: {STATE_FILE}: {message}")
            }
        }
    }
}

impl std::error::Error for ContainerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ContainerError::Dir(e) => Some(e),
            ContainerError::BadState { .. } => None,
        }
    }
}

impl From<DirError> for ContainerError {
    fn from(e: DirError) -> Self {
        ContainerError::Dir(e)
    }
}

/// A container found under the root.
pub struct Container {
    pub dir: ContainerDir,
    /// `None` while `create` runs, or after it crashed.
    pub state: Option<State>,
}

impl Container {
    /// Loads container `id`; fails if it does not exist.
    pub fn load(root: &Root, id: &str) -> Result<Container, ContainerError> {
        let dir = root.open(id)?;
        Container::from_dir(dir)
    }

    pub fn from_dir(dir: ContainerDir) -> Result<Container, ContainerError> {
        let state = match dir.read(STATE_FILE)? {
            Some(data) => {
                Some(
                    State::from_json(&data).map_err(|message| ContainerError::BadState {
                        id: dir.id().to_string(),
                        message,
                    })?,
                )
            }
            None => None,
        };
        Ok(Container { dir, state })
    }

    pub fn id(&self) -> &str {
        self.dir.id()
    }

    /// Whether the container runs in its pod's sandbox rather than in one of its own.
    pub fn is_hosted(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.host.is_some())
    }

    /// The sandbox process that runs the container, and its start time.
    pub fn sandbox_process(&self) -> Option<(i32, u64)> {
        let s = self.state.as_ref()?;
        Some(match &s.host {
            Some(h) => (h.pid, h.pid_start_time),
            None => (s.pid, s.pid_start_time),
        })
    }

    /// Whether the sandbox process is alive (and still the one `create` started).
    pub fn sandbox_alive(&self) -> bool {
        self.sandbox_process()
            .is_some_and(|(pid, start)| host_process::is_alive(pid, start))
    }

    /// Where requests about this container go.
    pub fn endpoint(&self) -> Endpoint {
        let socket = match self.state.as_ref().and_then(|s| s.host.as_ref()) {
            Some(h) => h.socket.clone(),
            None => self.dir.file(control::SOCKET),
        };
        Endpoint {
            socket,
            container_id: self.id().to_string(),
        }
    }

    /// A connection to the control socket of the sandbox that runs the container.
    pub fn control(&self) -> Result<Control, control::ControlError> {
        self.endpoint().connect()
    }

    /// The current status, and the init's pid in the sandbox (0 if none).
    ///
    /// No `state.json`: `creating` while a `create` holds the lock, else `stopped` (a
    /// crashed `create`). A dead sandbox process: `stopped`. Otherwise the sandbox says;
    /// a sandbox process that no longer answers is on its way out: `stopped`.
    pub fn status(&self) -> (Status, i32) {
        self.status_inner(false)
    }

    /// [`Container::status`] for a caller that holds the directory's lock itself.
    pub fn status_locked(&self) -> (Status, i32) {
        self.status_inner(true)
    }

    fn status_inner(&self, lock_held: bool) -> (Status, i32) {
        if self.state.is_none() {
            return if !lock_held && self.dir.is_locked() {
                (Status::Creating, 0)
            } else {
                (Status::Stopped, 0)
            };
        }
        if !self.sandbox_alive() {
            return (Status::Stopped, 0);
        }
        match self.control().and_then(|mut c| c.state()) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(container = self.id(), "no answer from the sandbox: {e}");
                (Status::Stopped, 0)
            }
        }
    }

    /// The pid callers see: the sandbox process (or a pod container's waiter), 0 once
    /// stopped (as runc reports).
    pub fn visible_pid(&self, status: Status) -> i32 {
        match (&self.state, status) {
            (Some(s), Status::Created | Status::Running | Status::Paused) => s.pid,
            _ => 0,
        }
    }

    /// The OCI state document (`runsc state`).
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        let pid = self.visible_pid(status);
        match &self.state {
            Some(s) => serde_json::json!({
                "ociVersion": s.oci_version,
                "id": s.id,
                "status": status.as_str(),
                "pid": pid,
                "bundle": s.bundle,
                "rootfs": s.rootfs,
                "created": s.created,
                "owner": "",
                "annotations": s.annotations,
            }),
            None => serde_json::json!({
                "ociVersion": OCI_VERSION,
                "id": self.id(),
                "status": status.as_str(),
                "pid": 0,
                "bundle": "",
                "annotations": {},
            }),
        }
    }
}

/// The cgroup directories `linux.cgroupsPath` names under each mounted hierarchy of
/// `/sys/fs/cgroup` (v1 controllers, the v2 `unified` mount, or a pure v2 mount).
/// Systemd-style paths (`slice:prefix:name`) name no directory we manage: none.
pub fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let base = PathBuf::from("/sys/fs/cgroup");
    let Some(rel) = cgroups_path.strip_prefix('/') else {
        return Vec::new();
    };
    if rel.is_empty() || cgroups_path.contains(':') || rel.split('/').any(|c| c == "..") {
        return Vec::new();
    }
    if base.join("cgroup.controllers").exists() {
        return vec![base.join(rel)];
    }
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        // Controller mounts are directories; `cpu` → `cpu,cpuacct` symlinks are skipped
        // so that each hierarchy is named once.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(rel))
        .collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_state() -> State {
        State {
            version: STATE_VERSION,
            id: "abc".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            oci_version: "1.0.2".into(),
            pid: 42,
            pid_start_time: 7,
            created: "2026-11-22T10:00:00.000Z".into(),
            annotations: BTreeMap::from([("k".to_string(), "v".to_string())]),
            process: Process::default(),
            terminal: true,
            console_socket: Some("/tmp/console.sock".into()),
            container_type: ContainerType::Sandbox,
            sandbox_id: None,
            cgroup_dirs: vec!["/sys/fs/cgroup/memory/x".into()],
            owner: 0,
            host: None,
        }
    }

    #[test]
    fn state_round_trips() {
        let s = sample_state();
        let json = s.to_json();
        assert_eq!(State::from_json(&json).expect("valid"), s);
        let text = String::from_utf8(json).expect("utf-8");
        for key in [
            "\"id\"",
            "\"bundle\"",
            "\"pid\"",
            "\"created\"",
            "\"annotations\"",
            "\"process\"",
            "\"terminal\"",
            "\"container_type\": \"sandbox\"",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
    }

    #[test]
    fn hosted_state_round_trips_and_old_states_read() {
        let mut s = sample_state();
        s.container_type = ContainerType::Container;
        s.sandbox_id = Some("pod".into());
        s.host = Some(Host {
            socket: "/run/nanovisor/pod/control.sock".into(),
            pid: 7,
            pid_start_time: 8,
        });
        assert_eq!(State::from_json(&s.to_json()).expect("valid"), s);
        // A state written before `host` existed has none.
        let mut old: serde_json::Value =
            serde_json::from_slice(&sample_state().to_json()).expect("JSON");
        old.as_object_mut().expect("object").remove("host");
        let old = State::from_json(&serde_json::to_vec(&old).expect("JSON")).expect("valid");
        assert_eq!(old.host, None);
    }

    #[test]
    fn hosted_containers_talk_to_their_pods_sandbox() {
        let dir = std::env::temp_dir().join(format!("runsc-host-{}", std::process::id()));
        let root = Root::new(&dir).expect("root");
        let (cdir, _lock) = root.create("app").expect("created");
        let mut state = sample_state();
        state.id = "app".into();
        let mut c = Container {
            dir: cdir,
            state: Some(state.clone()),
        };
        assert!(!c.is_hosted());
        assert_eq!(c.endpoint().socket, dir.join("app").join(control::SOCKET));
        assert_eq!(c.sandbox_process(), Some((42, 7)));
        state.host = Some(Host {
            socket: "/r/pod/control.sock".into(),
            pid: 9,
            pid_start_time: 10,
        });
        c.state = Some(state);
        assert!(c.is_hosted());
        let e = c.endpoint();
        assert_eq!(e.socket, PathBuf::from("/r/pod/control.sock"));
        assert_eq!(e.container_id, "app");
        assert_eq!(c.sandbox_process(), Some((9, 10)));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn state_version_is_checked() {
        let mut s = sample_state();
        s.version = 99;
        let e = State::from_json(&s.to_json()).expect_err("refused");
        assert!(e.contains("version 99"), "{e}");
        assert!(State::from_json(b"{").is_err());
    }

    #[test]
    fn status_guards() {
        use Status::*;
        assert!(Created.can_start());
        for s in [Creating, Running, Paused, Stopped] {
            assert!(!s.can_start(), "{s}");
        }
        assert!(Created.can_kill() && Running.can_kill() && Paused.can_kill());
        assert!(!Stopped.can_kill() && !Creating.can_kill());
        assert!(Stopped.can_delete() && Created.can_delete());
        assert!(!Running.can_delete() && !Paused.can_delete());
        assert!(Running.can_pause() && !Paused.can_pause());
        assert!(Paused.can_resume() && !Running.can_resume());
        assert!(Running.can_exec() && !Created.can_exec());
        assert_eq!(Paused.to_string(), "paused");
    }

    #[test]
    fn container_type_from_annotations() {
        let none = BTreeMap::new();
        assert_eq!(ContainerType::of(&none), (ContainerType::Sandbox, None));
        let cri = BTreeMap::from([
            (
                "io.kubernetes.cri.container-type".to_string(),
                "container".to_string(),
            ),
            (
                "io.kubernetes.cri.sandbox-id".to_string(),
                "pod1".to_string(),
            ),
        ]);
        assert_eq!(
            ContainerType::of(&cri),
            (ContainerType::Container, Some("pod1".to_string()))
        );
        let crio = BTreeMap::from([(
            "io.kubernetes.cri-o.ContainerType".to_string(),
            "sandbox".to_string(),
        )]);
        assert_eq!(ContainerType::of(&crio).0, ContainerType::Sandbox);
    }

    #[test]
    fn cgroup_paths() {
        assert!(cgroup_dirs("system.slice:docker:abc").is_empty());
        assert!(cgroup_dirs("relative/path").is_empty());
        assert!(cgroup_dirs("/a/../../etc").is_empty());
        assert!(cgroup_dirs("/").is_empty());
        for d in cgroup_dirs("/kubepods/pod1/abc") {
            assert!(d.starts_with("/sys/fs/cgroup"), "{}", d.display());
            assert!(d.ends_with("kubepods/pod1/abc"), "{}", d.display());
        }
    }
}

//! The handler's pods and containers in memory, and their CRI views.
//!
//! Lock order: [`crate::Inner::state`] (a std mutex, never held across an await or a runsc
//! call) is the only shared lock; each pod's `op` (a tokio mutex) serializes the lifecycle
//! calls on that pod and its containers, and is taken before `state`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1::*;

use crate::images::ImageInfo;
use crate::logs::Log;
use crate::record::PodRecord;

/// How a pod's sandbox comes to be.
#[derive(Debug, Clone, PartialEq)]
pub enum PodKind {
    /// A sandbox booted for the pause container, whose runsc id is the pod's id.
    Booted,
    /// A pod annotated with a checkpoint image: its first container restores the sandbox from
    /// `image`, the others join that container's sandbox.
    Restored { image: PathBuf },
}

pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
    pub created_at: i64,
    pub ready: bool,
    /// RunPodSandbox has not returned yet: not listed (kubelet does not know the id).
    pub creating: bool,
    pub kind: PodKind,
    pub netns: PathBuf,
    pub ips: Vec<String>,
    /// The runsc container whose sandbox the pod's containers join, once there is one.
    pub sandbox: Option<String>,
    pub dir: PathBuf,
    pub record: PodRecord,
    pub op: Arc<tokio::sync::Mutex<()>>,
    /// A claimed pooled sandbox's container, until a CreateContainer binds to it.
    pub pooled: Option<Box<crate::pool::Warm>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrState {
    Created,
    Running,
    Exited,
}

impl CtrState {
    pub fn cri(self) -> ContainerState {
        match self {
            CtrState::Created => ContainerState::ContainerCreated,
            CtrState::Running => ContainerState::ContainerRunning,
            CtrState::Exited => ContainerState::ContainerExited,
        }
    }
}

pub struct Ctr {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    pub image: ImageInfo,
    pub bundle: PathBuf,
    pub snapshot: String,
    pub spec: serde_json::Value,
    pub log: Arc<Log>,
    pub log_path: Option<PathBuf>,
    pub state: CtrState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// Set when the exit is known; the pid is the runsc create's (sandbox or waiter).
    pub exited: bool,
    pub pid: u32,
    /// A pooled container: running since before it was created; Start only says so.
    pub prestarted: bool,
    /// Why StartContainer failed (CRI's reason `StartError`, this as the message).
    pub start_error: Option<String>,
    /// The sandbox's out-of-memory killer ended the container's init (CRI's reason
    /// `OOMKilled`, as containerd gives it on a TaskOOM event).
    pub oom_killed: bool,
}

#[derive(Default)]
pub struct State {
    pub pods: HashMap<String, Pod>,
    pub ctrs: HashMap<String, Ctr>,
}

impl Pod {
    pub fn cri_state(&self) -> i32 {
        if self.ready {
            PodSandboxState::SandboxReady as i32
        } else {
            PodSandboxState::SandboxNotready as i32
        }
    }

    pub fn view(&self) -> PodSandbox {
        PodSandbox {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.cri_state(),
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: crate::HANDLER.into(),
        }
    }
}

impl Ctr {
    /// A container in `state` that exited with `exit_code`, for the pure views' tests.
    #[cfg(test)]
    fn sample(state: CtrState, exit_code: i32) -> Ctr {
        Ctr {
            id: "c".into(),
            pod_id: "p".into(),
            config: ContainerConfig::default(),
            image: ImageInfo::default(),
            bundle: PathBuf::new(),
            snapshot: String::new(),
            spec: serde_json::Value::Null,
            log: Arc::new(Log::default()),
            log_path: Some("/logs/c.log".into()),
            state,
            created_at: 1,
            started_at: 2,
            finished_at: 3,
            exit_code,
            exited: state == CtrState::Exited,
            pid: 0,
            prestarted: false,
            start_error: None,
            oom_killed: false,
        }
    }

    pub fn image_spec(&self) -> ImageSpec {
        ImageSpec {
            image: self.image.name.clone(),
            ..Default::default()
        }
    }

    pub fn view(&self) -> Container {
        Container {
            id: self.id.clone(),
            pod_sandbox_id: self.pod_id.clone(),
            metadata: self.config.metadata.clone(),
            image: Some(self.image_spec()),
            image_ref: self.image.id.clone(),
            state: self.state.cri() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            ..Default::default()
        }
    }

    /// CRI's reason for an exited container, as containerd gives it.
    pub fn reason(&self) -> &'static str {
        if self.start_error.is_some() {
            return "StartError";
        }
        match (self.state, self.exit_code) {
            (CtrState::Exited, _) if self.oom_killed => "OOMKilled",
            (CtrState::Exited, 0) => "Completed",
            (CtrState::Exited, _) => "Error",
            _ => "",
        }
    }

    pub fn status(&self) -> ContainerStatus {
        ContainerStatus {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.state.cri() as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: Some(self.image_spec()),
            image_ref: self.image.id.clone(),
            reason: self.reason().into(),
            message: self.start_error.clone().unwrap_or_default(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            // What CreateContainer asked for; the sandbox enforces the pod's sum (resources.rs).
            resources: self
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|linux| ContainerResources {
                    linux: Some(linux),
                    windows: None,
                }),
            log_path: self
                .log_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    pub fn attributes(&self) -> ContainerAttributes {
        ContainerAttributes {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_views_say_what_cri_expects() {
        let done = Ctr::sample(CtrState::Exited, 0);
        assert_eq!(done.reason(), "Completed");
        let failed = Ctr::sample(CtrState::Exited, 143);
        let s = failed.status();
        assert_eq!(
            (s.state, s.exit_code, s.reason.as_str()),
            (ContainerState::ContainerExited as i32, 143, "Error")
        );
        assert_eq!((s.created_at, s.started_at, s.finished_at), (1, 2, 3));
        assert_eq!(s.log_path, "/logs/c.log");
        assert_eq!(Ctr::sample(CtrState::Running, 0).reason(), "");
        let mut oom = Ctr::sample(CtrState::Exited, 137);
        oom.oom_killed = true;
        assert_eq!(
            (oom.status().reason.as_str(), oom.status().exit_code),
            ("OOMKilled", 137)
        );
        let mut bad = Ctr::sample(CtrState::Exited, 127);
        bad.start_error = Some("no such program".into());
        assert_eq!(
            (bad.reason(), bad.status().message.as_str()),
            ("StartError", "no such program")
        );
        assert_eq!(
            Ctr::sample(CtrState::Created, 0).view().state,
            ContainerState::ContainerCreated as i32
        );
    }
}

//! The `nanovisor` runtime handler of nanovisor-cri: pods as runsc sandboxes that this
//! process runs itself, without containerd's task service or a shim.
//!
//! - A pod gets a network namespace (`/var/run/netns/cni-UUID`) that we attach with CNI
//!   ([`cni`], [`netns`]), and a sandbox: the sandbox image (pause) booted by `runsc create`
//!   ([`pods`]), or, for a pod annotated `dev.nanovisor.checkpoint-image`, the sandbox its
//!   first container restores from that image ([`containers`]).
//! - A container's root file system is a snapshot of its image that we prepare through
//!   containerd's API ([`images`]); its config.json comes from the image and CRI's config
//!   ([`spec`]); its stdout and stderr become the CRI log file ([`logs`]).
//! - runsc is driven through the shim's typed wrapper (`shim::runsc`), whose exits come from
//!   our reaper ([`reaper`]: we are a child subreaper, see there what that asks of the host
//!   process).
//! - Pools of sandboxes restored ahead of time make RunPodSandbox of an annotated pod a
//!   claim ([`pool`]: read there what differs for a pooled pod).
//! - A pod's sandbox runs in a host cgroup under kubelet's `cgroup_parent`, limited by the
//!   pod-level resources ([`cgroup`], [`resources`]: read there how per-container limits map
//!   onto one sandbox).
//! - State is kept in memory ([`model`]) and, for cleaning up after a restart, on disk
//!   ([`record`]).

#![forbid(unsafe_code)]

pub mod cgroup;
pub mod cni;
pub mod config;
mod containers;
pub mod error;
mod etc;
mod exec;
pub mod filters;
pub mod images;
pub mod logs;
mod model;
mod mount;
pub mod names;
pub mod netns;
mod pods;
mod pool;
pub mod reaper;
pub mod record;
pub mod resources;
mod rootfs;
pub mod spec;
pub mod stats;
pub mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_cri::v1::*;
use tonic::Status;

pub use config::{Config, PoolConfig, WarmUp};
use error::Error;
use model::State;

/// The runtime handler this crate serves.
pub const HANDLER: &str = "nanovisor";

/// The pods and containers this runtime handler owns.
pub struct Runtime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub reaper: Arc<reaper::Reaper>,
    pub runsc: Arc<shim::runsc::Runsc>,
    pub images: images::Images,
    pub state: Mutex<State>,
    pub pools: pool::Pools,
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.config.root.join("pods")
    }
}

/// `program` if it is a path to a file, else the first `PATH` directory that has it.
fn find_on_path(program: &std::path::Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Runs blocking work (runsc, CNI, mounts) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))?
}

impl Runtime {
    /// Starts the handler: releases what a previous run left, connects to containerd.
    pub async fn start(config: Config) -> Result<Runtime, Status> {
        config
            .validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let reaper = reaper::Reaper::start()
            .map_err(|e| Status::internal(format!("becoming a subreaper: {e}")))?;
        let runsc_root = config.root.join("runsc");
        std::fs::create_dir_all(&runsc_root)
            .map_err(|e| Status::internal(format!("creating {}: {e}", runsc_root.display())))?;
        let runsc = shim::runsc::Runsc::new(
            config.runsc.clone(),
            runsc_root,
            config.debug,
            Arc::clone(&reaper.exits),
        );
        let channel = containerd_client::connect(&config.containerd_socket)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "connecting to containerd at {}: {e}",
                    config.containerd_socket.display()
                ))
            })?;
        let images = images::Images::new(
            channel,
            config.containerd_namespace.clone(),
            config.snapshotter.clone(),
        );
        let inner = Arc::new(Inner {
            config,
            reaper,
            runsc: Arc::new(runsc),
            images,
            state: Mutex::new(State::default()),
            pools: pool::Pools::default(),
        });
        pods::release_recorded(&inner).await;
        pool::start(&inner);
        Ok(Runtime { inner })
    }

    pub fn handler(&self) -> &str {
        HANDLER
    }

    pub fn owns_pod(&self, pod_id: &str) -> bool {
        let state = self.inner.lock();
        filters::resolve(pod_id, state.pods.keys()).is_some()
    }

    pub fn owns_container(&self, container_id: &str) -> bool {
        let state = self.inner.lock();
        filters::resolve(container_id, state.ctrs.keys()).is_some()
    }

    /// This handler's conditions for StatusResponse (RuntimeReady, NetworkReady).
    pub async fn conditions(&self) -> Vec<RuntimeCondition> {
        let c = &self.inner.config;
        let runsc_ok = find_on_path(&c.runsc).is_some();
        let network = cni::load(&c.cni_conf_dir);
        let condition = |kind: &str, ok: bool, reason: &str, message: String| RuntimeCondition {
            r#type: kind.into(),
            status: ok,
            reason: if ok { String::new() } else { reason.into() },
            message: if ok { String::new() } else { message },
        };
        vec![
            condition(
                "RuntimeReady",
                runsc_ok,
                "RunscMissing",
                format!("runsc {} not found", c.runsc.display()),
            ),
            condition(
                "NetworkReady",
                network.is_ok(),
                "NetworkPluginNotReady",
                network.err().map(|e| e.to_string()).unwrap_or_default(),
            ),
        ]
    }

    pub async fn run_pod_sandbox(
        &self,
        r: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, Status> {
        Ok(pods::run(&self.inner, r).await?)
    }
    pub async fn stop_pod_sandbox(
        &self,
        r: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse, Status> {
        pods::stop(&self.inner, &r.pod_sandbox_id).await?;
        Ok(StopPodSandboxResponse {})
    }
    pub async fn remove_pod_sandbox(
        &self,
        r: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse, Status> {
        pods::remove(&self.inner, &r.pod_sandbox_id).await?;
        Ok(RemovePodSandboxResponse {})
    }
    pub async fn pod_sandbox_status(
        &self,
        r: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse, Status> {
        Ok(pods::status(&self.inner, &r.pod_sandbox_id, r.verbose)?)
    }
    /// This handler's pods that pass `filter` (the caller merges them with upstream's).
    pub async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
        pods::list(&self.inner, filter)
    }
    pub async fn create_container(
        &self,
        r: CreateContainerRequest,
    ) -> Result<CreateContainerResponse, Status> {
        Ok(containers::create(&self.inner, r).await?)
    }
    pub async fn start_container(
        &self,
        r: StartContainerRequest,
    ) -> Result<StartContainerResponse, Status> {
        containers::start(&self.inner, &r.container_id).await?;
        Ok(StartContainerResponse {})
    }
    pub async fn stop_container(
        &self,
        r: StopContainerRequest,
    ) -> Result<StopContainerResponse, Status> {
        containers::stop(&self.inner, &r.container_id, r.timeout).await?;
        Ok(StopContainerResponse {})
    }
    pub async fn remove_container(
        &self,
        r: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse, Status> {
        containers::remove(&self.inner, &r.container_id).await?;
        Ok(RemoveContainerResponse {})
    }
    pub async fn list_containers(&self, filter: Option<ContainerFilter>) -> Vec<Container> {
        containers::list(&self.inner, filter)
    }
    pub async fn container_status(
        &self,
        r: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse, Status> {
        Ok(containers::status(&self.inner, &r.container_id, r.verbose)?)
    }
    pub async fn update_container_resources(
        &self,
        r: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse, Status> {
        containers::resolve(&self.inner, &r.container_id)?;
        // runsc has no `update`: a sandbox's cgroup limits are written, and its guest memory
        // sized, once when it boots.
        Err(Error::Unimplemented(
            "UpdateContainerResources: nanovisor fixes a pod's limits when its sandbox boots              (runsc has no update, and the guest's memory is sized then); recreate the pod to              change them"
                .into(),
        )
        .into())
    }
    pub async fn reopen_container_log(
        &self,
        r: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse, Status> {
        containers::reopen_log(&self.inner, &r.container_id)?;
        Ok(ReopenContainerLogResponse {})
    }
    pub async fn exec_sync(&self, r: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
        Ok(exec::exec_sync(&self.inner, r).await?)
    }
    pub async fn container_stats(
        &self,
        r: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse, Status> {
        let stats = containers::stats(&self.inner, &r.container_id).await?;
        Ok(ContainerStatsResponse { stats: Some(stats) })
    }
    pub async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Vec<ContainerStats> {
        containers::list_stats(&self.inner, filter).await
    }
    pub async fn pod_sandbox_stats(
        &self,
        r: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse, Status> {
        let stats = pods::stats(&self.inner, &r.pod_sandbox_id).await?;
        Ok(PodSandboxStatsResponse { stats: Some(stats) })
    }
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Vec<PodSandboxStats> {
        pods::list_stats(&self.inner, filter).await
    }
    /// How many pooled sandboxes each pool (by checkpoint name) has ready to be claimed.
    pub fn pooled(&self) -> Vec<(String, usize)> {
        self.inner.pools.ready()
    }

    /// Stops filling pools and releases pooled (unclaimed) sandboxes; pods keep running.
    pub async fn shutdown(&self) {
        pool::shutdown(&self.inner).await;
    }
}

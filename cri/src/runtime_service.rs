//! The CRI RuntimeService nanovisor-cri serves: each call routed (see `route.rs`) to the
//! nanovisor handler or forwarded upstream, the list calls and Status merged (`merge.rs`).
//!
//! Not served for the nanovisor handler's pods yet, and answered `Unimplemented` for them:
//! Exec, Attach and PortForward (the streaming server) and CheckpointContainer. Container
//! events (GetContainerEvents) are the upstream's only.

use std::sync::Arc;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::handler::Handler;
use crate::merge;
use crate::route::{self, Route};
use crate::upstream::{forward, Upstream};

pub struct RuntimeServer {
    upstream: Upstream,
    handler: Option<Arc<Handler>>,
}

impl RuntimeServer {
    pub fn new(upstream: Upstream, handler: Option<Arc<Handler>>) -> RuntimeServer {
        RuntimeServer { upstream, handler }
    }

    fn handler(&self) -> Option<&Handler> {
        self.handler.as_deref()
    }

    fn up(&self) -> RuntimeServiceClient<Channel> {
        self.upstream.runtime.clone()
    }

    /// An upstream answer as ours; `pending`: see [`route::pending_error`].
    fn answer<T>(
        &self,
        result: Result<Response<T>, Status>,
        pending: bool,
    ) -> Result<Response<T>, Status> {
        result.map_err(|status| {
            let status = self.upstream.error(status);
            match self.handler() {
                Some(h) if pending => route::pending_error(status, || h.not_started()),
                _ => status,
            }
        })
    }

    fn not_started(&self) -> Status {
        self.handler().map_or_else(
            || Status::internal("no nanovisor handler"),
            Handler::not_started,
        )
    }
}

/// The error for a streaming call on one of the nanovisor handler's pods or containers.
fn no_streaming(call: &str) -> Status {
    Status::unimplemented(format!(
        "{call}: streaming (exec, attach, port-forward) is not served for the nanovisor runtime \
         handler yet"
    ))
}

/// A call naming one pod or container: the nanovisor handler's own method of the same name,
/// or the upstream's.
macro_rules! by_id {
    ($self:ident, $request:ident, $route:path, $id:ident, $method:ident) => {{
        let id = $request.get_ref().$id.clone();
        match $route($self.handler(), &id) {
            Route::Pods(rt) => {
                tracing::debug!(call = stringify!($method), %id, "nanovisor handler");
                rt.$method($request.into_inner()).await.map(Response::new)
            }
            Route::NotStarted => Err($self.not_started()),
            Route::Upstream { pending } => {
                tracing::debug!(call = stringify!($method), %id, "upstream");
                let result = $self.up().$method(forward($request)).await;
                $self.answer(result, pending)
            }
        }
    }};
}

/// A call the nanovisor handler does not take: the upstream's.
macro_rules! upstream {
    ($self:ident, $request:ident, $method:ident) => {{
        tracing::debug!(call = stringify!($method), "upstream");
        let result = $self.up().$method(forward($request)).await;
        $self.answer(result, false)
    }};
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let result = self.up().version(forward(request)).await;
        let upstream = self.answer(result, false)?.into_inner();
        Ok(Response::new(merge::version(&upstream)))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let handler = request.get_ref().runtime_handler.clone();
        match route::by_handler(self.handler(), &handler) {
            Route::Pods(rt) => {
                tracing::debug!(call = "run_pod_sandbox", %handler, "nanovisor handler");
                rt.run_pod_sandbox(request.into_inner())
                    .await
                    .map(Response::new)
            }
            Route::NotStarted => Err(self.not_started()),
            Route::Upstream { pending } => {
                tracing::debug!(call = "run_pod_sandbox", %handler, "upstream");
                let result = self.up().run_pod_sandbox(forward(request)).await;
                self.answer(result, pending)
            }
        }
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_pod,
            pod_sandbox_id,
            stop_pod_sandbox
        )
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_pod,
            pod_sandbox_id,
            remove_pod_sandbox
        )
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_pod,
            pod_sandbox_id,
            pod_sandbox_status
        )
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let filter = request.get_ref().filter.clone();
        let result = self.up().list_pod_sandbox(forward(request)).await;
        let upstream = self.answer(result, false)?.into_inner().items;
        let ours = match self.handler().and_then(Handler::runtime) {
            Some(rt) => rt.list_pod_sandbox(filter).await,
            None => Vec::new(),
        };
        Ok(Response::new(ListPodSandboxResponse {
            items: merge::items(upstream, ours),
        }))
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_pod,
            pod_sandbox_id,
            create_container
        )
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            start_container
        )
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            stop_container
        )
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            remove_container
        )
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = request.get_ref().filter.clone();
        let result = self.up().list_containers(forward(request)).await;
        let upstream = self.answer(result, false)?.into_inner().containers;
        let ours = match self.handler().and_then(Handler::runtime) {
            Some(rt) => rt.list_containers(filter).await,
            None => Vec::new(),
        };
        Ok(Response::new(ListContainersResponse {
            containers: merge::items(upstream, ours),
        }))
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            container_status
        )
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            update_container_resources
        )
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            reopen_container_log
        )
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        by_id!(self, request, route::by_container, container_id, exec_sync)
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        match route::by_container(self.handler(), &request.get_ref().container_id) {
            Route::Pods(_) => Err(no_streaming("Exec")),
            Route::NotStarted => Err(self.not_started()),
            Route::Upstream { pending } => {
                let result = self.up().exec(forward(request)).await;
                self.answer(result, pending)
            }
        }
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        match route::by_container(self.handler(), &request.get_ref().container_id) {
            Route::Pods(_) => Err(no_streaming("Attach")),
            Route::NotStarted => Err(self.not_started()),
            Route::Upstream { pending } => {
                let result = self.up().attach(forward(request)).await;
                self.answer(result, pending)
            }
        }
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        match route::by_pod(self.handler(), &request.get_ref().pod_sandbox_id) {
            Route::Pods(_) => Err(no_streaming("PortForward")),
            Route::NotStarted => Err(self.not_started()),
            Route::Upstream { pending } => {
                let result = self.up().port_forward(forward(request)).await;
                self.answer(result, pending)
            }
        }
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_container,
            container_id,
            container_stats
        )
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let filter = request.get_ref().filter.clone();
        let result = self.up().list_container_stats(forward(request)).await;
        let upstream = self.answer(result, false)?.into_inner().stats;
        let ours = match self.handler().and_then(Handler::runtime) {
            Some(rt) => rt.list_container_stats(filter).await,
            None => Vec::new(),
        };
        Ok(Response::new(ListContainerStatsResponse {
            stats: merge::items(upstream, ours),
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        by_id!(
            self,
            request,
            route::by_pod,
            pod_sandbox_id,
            pod_sandbox_stats
        )
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let filter = request.get_ref().filter.clone();
        let result = self.up().list_pod_sandbox_stats(forward(request)).await;
        let upstream = self.answer(result, false)?.into_inner().stats;
        let ours = match self.handler().and_then(Handler::runtime) {
            Some(rt) => rt.list_pod_sandbox_stats(filter).await,
            None => Vec::new(),
        };
        Ok(Response::new(ListPodSandboxStatsResponse {
            stats: merge::items(upstream, ours),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        upstream!(self, request, update_runtime_config)
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let result = self.up().status(forward(request)).await;
        let upstream = self.answer(result, false)?.into_inner();
        let handler = match self.handler() {
            Some(h) => h.status().await,
            None => merge::Handler::Absent,
        };
        Ok(Response::new(merge::status(upstream, handler)))
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        match route::by_container(self.handler(), &request.get_ref().container_id) {
            Route::Pods(_) => Err(Status::unimplemented(
                "CheckpointContainer is not served for the nanovisor runtime handler \
                 (checkpoint images are made with `runsc image build`)",
            )),
            Route::NotStarted => Err(self.not_started()),
            Route::Upstream { pending } => {
                let result = self.up().checkpoint_container(forward(request)).await;
                self.answer(result, pending)
            }
        }
    }

    type GetContainerEventsStream = tonic::Streaming<ContainerEventResponse>;

    async fn get_container_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        upstream!(self, request, get_container_events)
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        upstream!(self, request, list_metric_descriptors)
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        upstream!(self, request, list_pod_sandbox_metrics)
    }

    async fn runtime_config(
        &self,
        request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        upstream!(self, request, runtime_config)
    }
}

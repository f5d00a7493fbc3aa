//! The CRI ImageService nanovisor-cri serves: every call forwarded to the upstream, whose
//! image store both sides use (the nanovisor handler reads images through containerd too).

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use crate::upstream::{forward, Upstream};

pub struct ImageServer {
    upstream: Upstream,
}

impl ImageServer {
    pub fn new(upstream: Upstream) -> ImageServer {
        ImageServer { upstream }
    }
}

macro_rules! forward_call {
    ($self:ident, $request:ident, $method:ident) => {{
        tracing::debug!(call = stringify!($method), "upstream");
        let result = $self
            .upstream
            .images
            .clone()
            .$method(forward($request))
            .await;
        result.map_err(|status| $self.upstream.error(status))
    }};
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        forward_call!(self, request, list_images)
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        forward_call!(self, request, image_status)
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        forward_call!(self, request, pull_image)
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        forward_call!(self, request, remove_image)
    }

    async fn image_fs_info(
        &self,
        request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        forward_call!(self, request, image_fs_info)
    }
}

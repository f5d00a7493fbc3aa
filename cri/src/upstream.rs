//! The upstream CRI endpoint (containerd): one lazily connected channel over its unix socket,
//! the two CRI clients on it, and how a request and an error cross to it and back.
//!
//! The channel connects on first use and reconnects after a failure, so nanovisor-cri starts
//! and serves whether or not containerd is up; while it is not, every forwarded call fails
//! with `Unavailable` naming the socket, and [`Upstream::watch`] logs until it answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::VersionRequest;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

/// The largest message either way: kubelet's and containerd's CRI limit (16 MiB), not tonic's
/// default of 4 MiB, so that long container lists pass.
pub const MAX_MESSAGE: usize = 16 << 20;

/// How often [`Upstream::watch`] asks an unreachable upstream again.
const WATCH_PERIOD: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Upstream {
    socket: PathBuf,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Upstream {
    /// Clients of the CRI endpoint at unix socket `socket`; nothing is connected yet.
    pub fn new(socket: &Path) -> Upstream {
        let path = socket.to_path_buf();
        // The URI is a placeholder: the connector below dials the socket.
        let channel = Endpoint::from_static("http://upstream.invalid")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    match tokio::net::UnixStream::connect(&path).await {
                        Ok(stream) => Ok(TokioIo::new(stream)),
                        Err(e) => Err(std::io::Error::new(
                            e.kind(),
                            format!("upstream CRI endpoint {} unreachable: {e}", path.display()),
                        )),
                    }
                }
            }));
        Upstream {
            socket: socket.to_path_buf(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Logs whether the upstream answers: once when it does, and every [`WATCH_PERIOD`] while
    /// it does not. Returns once it has answered.
    pub async fn watch(mut self) {
        let mut warned = false;
        loop {
            let asked = self
                .runtime
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await;
            match asked {
                Ok(v) => {
                    let v = v.into_inner();
                    tracing::info!(
                        upstream = %self.socket.display(),
                        "upstream CRI endpoint answers: {} {} (CRI {})",
                        v.runtime_name,
                        v.runtime_version,
                        v.runtime_api_version
                    );
                    return;
                }
                Err(status) => {
                    let status = self.error(status);
                    if !warned {
                        tracing::warn!(
                            upstream = %self.socket.display(),
                            "{}; retrying every {WATCH_PERIOD:?}, answering calls with Unavailable meanwhile",
                            status.message()
                        );
                        warned = true;
                    } else {
                        tracing::debug!("{}", status.message());
                    }
                }
            }
            tokio::time::sleep(WATCH_PERIOD).await;
        }
    }

    /// An error of a forwarded call, as nanovisor-cri's caller sees it: the upstream's own
    /// errors pass through with their code and message; a failure to reach it is
    /// `Unavailable` naming the socket.
    pub fn error(&self, status: Status) -> Status {
        error_from_upstream(&self.socket, status)
    }
}

/// See [`Upstream::error`].
pub fn error_from_upstream(socket: &Path, status: Status) -> Status {
    // A status decoded from the upstream's answer has no source; one tonic made because the
    // call never got an answer (no connection, a reset) has the transport error as its source.
    let transport = std::error::Error::source(&status).is_some();
    if !transport {
        return status;
    }
    let message = status.message();
    let named = socket.display().to_string();
    if message.contains(&named) {
        Status::unavailable(message.to_string())
    } else {
        Status::unavailable(format!("upstream CRI endpoint {named}: {message}"))
    }
}

/// A request to forward: the caller's message and metadata (its deadline, `grpc-timeout`,
/// included; tonic drops the reserved headers), none of the server-side extensions.
pub fn forward<T>(request: Request<T>) -> Request<T> {
    let (metadata, _extensions, message) = request.into_parts();
    Request::from_parts(metadata, Default::default(), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn upstream_errors_pass_through() {
        let e = error_from_upstream(Path::new("/c.sock"), Status::not_found("no such pod"));
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.message(), "no such pod");
        let e = error_from_upstream(Path::new("/c.sock"), Status::unavailable("busy"));
        assert_eq!((e.code(), e.message()), (Code::Unavailable, "busy"));
    }

    #[tokio::test]
    async fn an_absent_upstream_is_unavailable_naming_its_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("absent.sock");
        let mut up = Upstream::new(&socket);
        let status = up
            .runtime
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .expect_err("nothing listens");
        let status = up.error(status);
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains(&socket.display().to_string()),
            "{status:?}"
        );
    }
}

//! nanovisor-cri's server in-process, on a unix socket in a temporary directory, with no
//! upstream listening: it serves, and every forwarded call is Unavailable naming the upstream's
//! socket. (Forwarding to a real containerd is `tests/tests/cri.rs`.)

use std::path::Path;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use nanovisor_cri::image_service::ImageServer;
use nanovisor_cri::runtime_service::RuntimeServer;
use nanovisor_cri::server;
use nanovisor_cri::upstream::Upstream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

async fn client(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connecting to nanovisor-cri")
}

#[tokio::test]
async fn without_an_upstream_calls_are_unavailable_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = dir.path().join("cri.sock");
    let absent = dir.path().join("containerd.sock");
    let upstream = Upstream::new(&absent);
    let listener = server::listen(&listen).await.expect("listen");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(
        listener,
        RuntimeServer::new(upstream.clone(), None),
        ImageServer::new(upstream),
        async {
            let _ = stopped.await;
        },
    ));

    let channel = client(&listen).await;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut im = ImageServiceClient::new(channel);
    let named = absent.display().to_string();
    let check = |what: &str, status: tonic::Status| {
        assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
        assert!(status.message().contains(&named), "{what}: {status:?}");
    };
    let e = rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect_err("no upstream");
    check("Version", e);
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: None,
            runtime_handler: "nanovisor".into(),
        })
        .await
        .expect_err("no upstream");
    check("RunPodSandbox", e);
    let e = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect_err("no upstream");
    check("ListPodSandbox", e);
    let e = im
        .list_images(ListImagesRequest { filter: None })
        .await
        .expect_err("no upstream");
    check("ListImages", e);

    let _ = stop.send(());
    serving
        .await
        .expect("the server task")
        .expect("the server stops cleanly");
}

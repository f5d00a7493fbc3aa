//! The unix socket nanovisor-cri serves on, and the gRPC server on it.
//!
//! The socket is made as containerd makes its own: a stale socket file (nothing answers on
//! it) is removed, a live one is refused, the directory is created, and the socket is made
//! `0660` so that only root (and its group) reach the CRI.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tonic::codegen::tokio_stream::wrappers::UnixListenerStream;

use crate::image_service::ImageServer;
use crate::runtime_service::RuntimeServer;
use crate::upstream::MAX_MESSAGE;

/// The socket's mode: containerd's for its own.
const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{path} is in use: another server answers on it")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; not removing it")]
    NotASocket { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ListenError {
    let path = path.to_path_buf();
    move |source| ListenError::Io { what, path, source }
}

/// Listens on unix socket `path` (see the module doc).
pub async fn listen(path: &Path) -> Result<UnixListener, ListenError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ListenError::InUse {
                    path: path.to_path_buf(),
                });
            }
            tracing::info!(socket = %path.display(), "removing a stale socket");
            std::fs::remove_file(path).map_err(io("removing the stale socket", path))?;
        }
        Ok(_) => {
            return Err(ListenError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting", path)(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the socket's directory", dir))?;
    }
    let listener = UnixListener::bind(path).map_err(io("listening on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(io("setting the mode of", path))?;
    Ok(listener)
}

/// Serves the CRI on `listener` until `shutdown` completes, then stops accepting and lets the
/// calls under way finish.
pub async fn serve(
    listener: UnixListener,
    runtime: RuntimeServer,
    images: ImageServer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(runtime)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(images)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/cri.sock");
        let first = listen(&path).await.expect("listen");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let e = listen(&path).await.expect_err("in use");
        assert!(matches!(e, ListenError::InUse { .. }), "{e}");
        drop(first);
        let _second = listen(&path).await.expect("the stale socket is replaced");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cri.sock");
        std::fs::write(&path, "keep me").expect("write");
        let e = listen(&path).await.expect_err("not a socket");
        assert!(matches!(e, ListenError::NotASocket { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "keep me");
    }
}

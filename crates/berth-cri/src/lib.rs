//! `berth-cri`: the Kubernetes Container Runtime Interface v1 (`runtime.v1`) as tonic code.
//!
//! The protocol is berth's own wire-compatible subset of upstream CRI (`proto/cri/api.proto`), so
//! berth's agent can drive any CRI runtime (containerd, CRI-O, berth's) and any CRI client can
//! drive berth's runtime. This crate adds what both sides need around the generated code:
//! 16 MiB message limits (as kubelet and containerd use; tonic's default is 4 MiB), a client that
//! dials a Unix socket, and a server that listens on one.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};

/// The generated CRI v1 messages, clients (`*_client`) and server traits (`*_server`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use v1::image_service_client::ImageServiceClient;
use v1::image_service_server::{ImageService, ImageServiceServer};
use v1::runtime_service_client::RuntimeServiceClient;
use v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};

/// Largest CRI message sent or accepted, as kubelet and containerd configure gRPC.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The CRI API version this crate speaks (reported by `Version`).
pub const API_VERSION: &str = "v1";

/// Errors of connecting to or serving CRI over a Unix socket.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The endpoint is not `unix:///path` or a plain path.
    #[error("unsupported CRI endpoint {0:?}: expected unix:///path/to/socket")]
    BadEndpoint(String),
    /// Connecting to the socket failed.
    #[error("cannot connect to CRI socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        source: tonic::transport::Error,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on CRI socket {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("CRI server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Turns `unix:///run/x.sock` (or a plain path) into the socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    match endpoint.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
        Some(_) => Err(CriError::BadEndpoint(endpoint.to_string())),
        None if endpoint.starts_with('/') => Ok(PathBuf::from(endpoint)),
        None => Err(CriError::BadEndpoint(endpoint.to_string())),
    }
}

/// A connected CRI client: both services share one HTTP/2 connection.
#[derive(Clone)]
pub struct CriClient {
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub image: ImageServiceClient<Channel>,
}

/// Connects to a CRI endpoint (`unix:///path` or a path) with 16 MiB message limits.
pub async fn connect(endpoint: &str) -> Result<CriClient, CriError> {
    let path = socket_path(endpoint)?;
    let channel = unix_channel(&path)
        .await
        .map_err(|source| CriError::Connect { path, source })?;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
        image: ImageServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    })
}

/// A channel whose connector dials `path`; the URI is a placeholder that gRPC requires.
async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}

/// Wraps a `RuntimeService` implementation with 16 MiB limits.
pub fn runtime_server<T: RuntimeService>(svc: T) -> RuntimeServiceServer<T> {
    RuntimeServiceServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Wraps an `ImageService` implementation with 16 MiB limits.
pub fn image_server<T: ImageService>(svc: T) -> ImageServiceServer<T> {
    ImageServiceServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Binds `path` (removing a stale socket file first) for [`serve`].
pub fn bind(path: &Path) -> Result<UnixListener, CriError> {
    let listen_err = |source| CriError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(listen_err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_err(e)),
    }
    UnixListener::bind(path).map_err(listen_err)
}

/// Serves both CRI services on `listener` until `shutdown` completes.
pub async fn serve<R, I>(
    listener: UnixListener,
    runtime: R,
    image: I,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CriError>
where
    R: RuntimeService,
    I: ImageService,
{
    Server::builder()
        .add_service(runtime_server(runtime))
        .add_service(image_server(image))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_to_socket_paths() {
        assert_eq!(
            socket_path("unix:///run/berth/cri.sock").unwrap(),
            PathBuf::from("/run/berth/cri.sock")
        );
        assert_eq!(
            socket_path("/tmp/x.sock").unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert!(matches!(
            socket_path("tcp://1.2.3.4:5"),
            Err(CriError::BadEndpoint(_))
        ));
        assert!(matches!(
            socket_path("unix://relative"),
            Err(CriError::BadEndpoint(_))
        ));
    }
}

//! `berth-registry`: an OCI distribution-spec v1.1 registry server.
//!
//! Content lives under `DIR/registry/` (see [`storage`] for the layout): blobs by digest, streamed
//! to disk on upload, verified before they become visible and again (once per change) before
//! they are served; manifests as exact bytes; tags as small files replaced atomically; and per
//! repository links, so a blob pushed to one repository is readable from another only after it
//! is pushed or mounted there.
//!
//! **Access** ([`AuthMode`]): with `push` (the default) anyone may pull and pushing needs the
//! account in `DIR/registry/credentials` (`user:password`, generated on first start, mode 0600).
//! Clients authenticate either with Basic credentials on every request or through the token
//! flow: an anonymous `GET /v2/` is answered `401` with
//! `WWW-Authenticate: Bearer realm="<scheme>://<host>/token",service="berth-registry"`, and
//! `GET /token` returns a bearer token (push and pull for the account, pull only for anonymous
//! callers). Plain `GET`s of manifests and blobs need no token in `push` mode.
//!
//! **Garbage collection** ([`gc()`]) deletes blobs no manifest references; it takes the same
//! exclusive lock as a serving registry, so it only runs while the registry is stopped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use berth_registry::{AuthMode, Config, Registry};
//! let registry = Registry::open("/var/lib/berth".as_ref(), Config { auth: AuthMode::Push, tls: false })?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! registry.serve(listener).await?;
//! # Ok(()) }
//! ```
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod api;
pub mod auth;
pub mod error;
pub mod gc;
pub mod storage;
mod upload;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use auth::{AuthMode, Credentials};
pub use gc::{GcReport, gc};

/// Registry settings.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Who must authenticate (default: pushes only).
    pub auth: AuthMode,
    /// Whether clients reach it over HTTPS (used for the token realm URL in challenges).
    pub tls: bool,
}

/// Why the registry could not open its data directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another registry process (or a GC) holds `DIR/registry/lock`.
    #[error("{0} is in use by another registry process or a garbage collection")]
    Locked(PathBuf),
    /// File system error.
    #[error("opening registry storage: {0}")]
    Io(#[from] io::Error),
}

/// Opens the registry in `data_dir`, binds `addr` and serves plain HTTP in a background task
/// until `shutdown` completes. Returns the bound address (useful with port 0) and the task.
/// This is what `berth server` calls.
pub async fn start(
    data_dir: &Path,
    addr: std::net::SocketAddr,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<
    (
        std::net::SocketAddr,
        tokio::task::JoinHandle<io::Result<()>>,
    ),
    OpenError,
> {
    let registry = Registry::open(data_dir, config)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move { registry.serve_until(listener, shutdown).await });
    Ok((bound, task))
}

/// An open registry: storage, upload sessions and access control.
pub struct Registry {
    state: Arc<api::AppState>,
}

/// `DIR/registry`, where everything of the registry lives.
pub fn registry_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("registry")
}

/// Takes the exclusive lock on `DIR/registry/lock` (held while serving and while collecting
/// garbage, so a GC never sweeps blobs of an upload in progress).
pub(crate) fn take_lock(root: &Path) -> Result<File, OpenError> {
    std::fs::create_dir_all(root)?;
    let path = root.join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked(path)),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl Registry {
    /// Opens the registry under `data_dir/registry`, creating it (and its credentials file,
    /// mode 0600) on first start.
    pub fn open(data_dir: &Path, config: Config) -> Result<Self, OpenError> {
        let root = registry_dir(data_dir);
        let lock = take_lock(&root)?;
        let storage = storage::Storage::open(&root)?;
        let creds = Credentials::load_or_create(&root.join("credentials"))?;
        let state = api::AppState {
            storage,
            uploads: upload::Uploads::default(),
            auth: auth::Auth::new(config.auth, creds),
            tls: config.tls,
            _lock: lock,
        };
        Ok(Registry {
            state: Arc::new(state),
        })
    }

    /// The account allowed to push (`user`, `password`).
    pub fn credentials(&self) -> Credentials {
        self.state.auth.credentials().clone()
    }

    /// The HTTP router (serve it at the root of a host, plain or behind TLS).
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serves plain HTTP on `listener` until the process ends.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> io::Result<()> {
        self.serve_until(listener, std::future::pending()).await
    }

    /// Serves plain HTTP on `listener` until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve_until(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        tracing::info!(addr = ?listener.local_addr().ok(), auth = ?self.state.auth.mode(), "registry listening");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serves HTTPS on `listener` with a PEM certificate chain and key until `shutdown`.
    pub async fn serve_tls_until(
        &self,
        listener: tokio::net::TcpListener,
        cert: &Path,
        key: &Path,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let config = berth_tls::server_config_from_files(cert, key, berth_tls::Alpn::H2AndHttp11)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        tracing::info!(addr = ?listener.local_addr().ok(), auth = ?self.state.auth.mode(), "registry listening (TLS)");
        berth_tls::serve_router(listener, config, self.router(), shutdown).await;
        Ok(())
    }
}

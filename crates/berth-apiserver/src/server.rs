//! Starting the API server: TLS material, tokens (the default join token), kubeconfig, bootstrap objects, the HTTPS
//! listener (HTTP/1.1 + HTTP/2) and the background garbage collector.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::resources::Registry;
use crate::state::{ApiServer, Options, Validator};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Token files.
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    /// File or socket I/O.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The default join token.
    #[error(transparent)]
    JoinToken(#[from] crate::tokenstore::DefaultTokenError),
    /// Bootstrapping objects failed.
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] crate::error::ApiError),
}

/// What to start.
pub struct Config {
    /// The data dir; the server keeps its files under `<data_dir>/server/`.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Tunables.
    pub options: Options,
    /// CRDs to install (or update) at start, e.g. ModelService's.
    pub install_crds: Vec<Value>,
    /// Extra validators keyed by `group/Kind`.
    pub validators: HashMap<String, Validator>,
    /// Names (DNS names or IP addresses) the serving certificate carries beside localhost, the
    /// host name and addresses and the listen address (`berth server --tls-san`).
    pub tls_sans: Vec<String>,
}

/// A running server.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The kubeconfig written for this server.
    pub kubeconfig: PathBuf,
    /// Shared state (store, registry, ...).
    pub state: Arc<ApiServer>,
    accept: JoinHandle<()>,
    gc: JoinHandle<()>,
}

impl Running {
    /// Serves until the accept loop ends (it never does on its own: accept errors are survived).
    pub async fn wait(self) {
        let _ = self.accept.await;
        self.gc.abort();
    }

    /// Stops accepting connections, ends open ones and stops background tasks.
    pub fn stop(&self) {
        self.accept.abort();
        self.gc.abort();
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Creates the namespaces every cluster has.
async fn bootstrap_namespaces(srv: &ApiServer) -> Result<(), ServerError> {
    let Some(ns) = srv.registry.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let key = ns.key(None, name);
        if srv
            .store
            .get(&key)
            .await
            .map_err(crate::error::ApiError::from)?
            .is_some()
        {
            continue;
        }
        let obj = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":name,
            "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": crate::object::now(),
            "labels": {"kubernetes.io/metadata.name": name}},
            "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}});
        match srv
            .store
            .create(&key, crate::object::encode(&obj, &ns)?)
            .await
        {
            Ok(_) | Err(berth_store::StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(crate::error::ApiError::from(e).into()),
        }
    }
    Ok(())
}

/// The key written before a start-up compaction (outside every resource prefix).
const COMPACT_MARKER: &str = "/berth/compaction-marker";

/// Writes the marker (so the current revision is new) and compacts everything before it.
async fn compact_now(srv: &ApiServer) -> Result<(), ServerError> {
    let err = |e: berth_store::StoreError| ServerError::Bootstrap(e.into());
    let stamp = crate::object::now().into_bytes();
    let rev = match srv.store.get(COMPACT_MARKER).await.map_err(err)? {
        Some(kv) => {
            srv.store
                .update(COMPACT_MARKER, stamp, kv.mod_revision)
                .await
                .map_err(err)?
                .mod_revision
        }
        None => {
            srv.store
                .create(COMPACT_MARKER, stamp)
                .await
                .map_err(err)?
                .mod_revision
        }
    };
    srv.store.compact(rev).await.map_err(err)?;
    tracing::info!(revision = rev, "compacted history at start");
    Ok(())
}

/// Compacts history periodically to the revision seen one interval earlier (then vacuums the
/// store, so its file shrinks), and returns freed heap to the OS.
async fn compactor(srv: Arc<ApiServer>) {
    let Some(every) = srv.options.compact_interval else {
        return;
    };
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(every).await;
        if let Some(rev) = previous {
            match berth_store::compact_and_vacuum(srv.store.as_ref(), rev).await {
                Ok(Some(rev)) => tracing::debug!(revision = rev, "compacted"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
        release_freed_memory();
        previous = srv.store.current_revision().await.ok();
    }
}

/// Hands memory freed by deleted objects back to the OS. glibc keeps freed heap in its arenas
/// (each thread's arena only shrinks from the top), so after large objects come and go the
/// process stays at its high-water mark; `malloc_trim` releases the free pages of every arena.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Serves allocations of 128 KiB and more from their own mappings, returned to the OS on free.
/// glibc otherwise raises that threshold each time such a block is freed (up to 32 MiB), after
/// which megabyte-sized request bodies and objects land in the arenas and fragment them, so the
/// server stays near its high-water mark after large objects are deleted.
fn keep_large_allocations_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it has no preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Starts the server over `store`.
pub async fn start(cfg: Config, store: Arc<dyn Store>) -> Result<Running, ServerError> {
    keep_large_allocations_apart();
    let server_dir = cfg.data_dir.join("server");
    std::fs::create_dir_all(&server_dir)
        .map_err(io(format!("creating {}", server_dir.display())))?;
    let tls = crate::tls::load_or_create(&server_dir.join("tls"), &cfg.tls_sans, cfg.listen.ip())?;
    let tls_config = crate::tls::server_config(&tls)?;
    let auth = Authenticator::load_or_create(&server_dir, &tls.ca_pem)?;
    let state = Arc::new(ApiServer {
        store,
        registry: Arc::new(Registry::with_builtins()),
        auth,
        validators: cfg.validators,
        options: cfg.options,
        quota_locks: crate::quota::Locks::default(),
    });
    bootstrap_namespaces(&state).await?;
    let fingerprint =
        crate::jointoken::ca_fingerprint(&tls.ca_pem).map_err(crate::tls::TlsError::from)?;
    crate::tokenstore::ensure_default(&state, &server_dir.join("node-token"), &fingerprint).await?;
    crate::crd::bootstrap(&state, &cfg.install_crds).await?;

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(io(format!("binding {}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(io("local address"))?;
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = format!("https://{host}:{}", addr.port());
    let kubeconfig = server_dir.join("kubeconfig.yaml");
    // Written atomically so a reader never sees half a file (tests wait for it to appear).
    berth_fs::write_atomic_private(
        &kubeconfig,
        crate::kubeconfig::render(&url, &tls.ca_pem, state.auth.admin_token()).as_bytes(),
    )
    .map_err(io("writing kubeconfig"))?;

    let app = axum::Router::new()
        .fallback(crate::handler::handle)
        .with_state(state.clone());
    let accept = tokio::spawn(berth_tls::serve_router(
        listener,
        tls_config,
        app,
        std::future::pending(),
    ));
    if state.options.compact_on_start {
        compact_now(&state).await?;
    }
    let gc_state = state.clone();
    let gc = tokio::spawn(async move {
        tokio::join!(
            crate::gc::run(gc_state.clone()),
            crate::quota::run(gc_state.clone()),
            compactor(gc_state)
        );
    });
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(Running {
        addr,
        kubeconfig,
        state,
        accept,
        gc,
    })
}

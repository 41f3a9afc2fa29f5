//! The one TLS accept loop: accept TCP, complete the TLS handshake in a task per connection, and
//! serve HTTP/1.1 (with upgrades: WebSocket, exec streams) or HTTP/2 on it with hyper-util's auto
//! builder.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long to pause after a failed accept: errors like EMFILE persist for a while, and retrying
/// at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `service` over TLS (`config`) on every connection `listener` accepts, until `shutdown`
/// completes (pass `std::future::pending()` to serve for as long as the future is polled).
///
/// Accept errors are logged and survived; failed handshakes and connection errors are logged
/// at debug level. Connections run as tasks owned by this future: dropping it ends them all; when
/// `shutdown` completes, accepting stops and open connections are left to finish on their own.
pub async fn serve<S, B>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set only holds live ones.
        while conns.try_join_next().is_some() {}
        let (acceptor, service) = (acceptor.clone(), service.clone());
        conns.spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    conns.detach_all();
}

/// [`serve`] for an axum router.
pub async fn serve_router(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, config, TowerToHyperService::new(router), shutdown).await
}

//! Optional HTTPS: the same router behind rustls, with a PEM certificate chain and key.

use std::io;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

/// Builds a rustls server config (HTTP/2 and HTTP/1.1 via ALPN) from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<rustls::ServerConfig> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(invalid(format!("no certificate in {}", cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or_else(|| invalid(format!("no private key in {}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TLS connections on `listener` and serves `app` on each until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: rustls::ServerConfig,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection failures (e.g. EMFILE) must not stop the server.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}

//! The node endpoint for logs and exec (the kubelet's server, reduced to what the API server
//! proxies `pods/log` and `pods/exec` to).
//!
//! HTTPS with a self-signed certificate made in memory at start (the API server does not verify
//! it, as kube-apiserver without `--kubelet-certificate-authority`), every request authenticated
//! by `Authorization: Bearer <AgentConfig::server_token>`:
//! - `GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&sinceSeconds=&limitBytes=`
//!   ([`logs`]);
//! - `GET|POST /exec/{namespace}/{pod}/{container}?command=..&stdin=&stdout=&stderr=&tty=`, a
//!   WebSocket upgrade relayed to the runtime's streaming URL ([`exec`]).
//!
//! Containers are found through CRI by the kubelet's labels ([`find`]); the optional `podUID`
//! query parameter narrows them to one incarnation of the Pod.

pub mod exec;
pub mod find;
pub mod logs;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use berth_cri::CriClient;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use crate::AgentConfig;

/// The response body type of the node endpoint (log bodies stream).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Errors starting the node endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate.
    #[error("node endpoint certificate: {0}")]
    Cert(#[from] berth_tls::CertError),
    /// The TLS configuration.
    #[error("node endpoint TLS: {0}")]
    Tls(#[from] berth_tls::ConfigError),
    /// Binding the port.
    #[error("binding the node endpoint on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Shared state of the request handlers.
struct Shared {
    cri: CriClient,
    token: String,
}

/// Binds the node endpoint on `config.node_ip`'s unspecified address and `config.server_port`
/// (0 = a free port) and returns the bound port together with the future that serves it (until
/// dropped). The port is known before serving so the Node can publish it.
pub async fn serve(
    config: &AgentConfig,
    cri: CriClient,
) -> Result<(u16, impl Future<Output = ()> + Send + 'static), ServerError> {
    let ip = if config.node_ip.is_loopback() {
        config.node_ip
    } else {
        std::net::IpAddr::from([0u8, 0, 0, 0])
    };
    let addr = SocketAddr::new(ip, config.server_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?
        .port();
    let cert = node_certificate(config.node_ip)?;
    // HTTP/1.1 only: exec is a connection upgrade, which HTTP/2 connections cannot do.
    let tls = berth_tls::server_config(&cert.cert_pem, &cert.key_pem, berth_tls::Alpn::Http11)?;
    let shared = Arc::new(Shared {
        cri,
        token: config.server_token.clone(),
    });
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(&shared, req).await) }
    });
    tracing::info!(port, "node endpoint (logs, exec) listening");
    Ok((
        port,
        berth_tls::serve(listener, tls, service, std::future::pending()),
    ))
}

/// A fresh self-signed certificate for `localhost` and `ip`, made in memory at every start:
/// nobody verifies it (the API server connects without verification, as kube-apiserver does
/// without a kubelet CA), so persisting it would buy nothing.
fn node_certificate(ip: std::net::IpAddr) -> Result<berth_tls::CertifiedKey, berth_tls::CertError> {
    berth_tls::self_signed(vec!["localhost".to_string(), ip.to_string()])
}

/// What a request path addresses: `(namespace, pod, container)`.
fn target<'a>(path: &'a str, prefix: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = path.strip_prefix(prefix)?;
    let mut it = rest.split('/');
    let (ns, pod, container) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || ns.is_empty() || pod.is_empty() || container.is_empty() {
        return None;
    }
    Some((ns, pod, container))
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    if !authorized(&shared.token, &req) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let path = req.uri().path().to_string();
    let query = find::Query::parse(req.uri().query());
    if let Some((ns, pod, c)) = target(&path, "/containerLogs/") {
        if req.method() != http::Method::GET {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method",
            );
        }
        let id = find::Id {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.into(),
            uid: query
                .get("podUID")
                .filter(|u| !u.is_empty())
                .map(String::from),
        };
        return logs::serve(shared.cri.clone(), &id, &query).await;
    }
    if let Some((ns, pod, c)) = target(&path, "/exec/") {
        let id = find::Id {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.into(),
            uid: query
                .get("podUID")
                .filter(|u| !u.is_empty())
                .map(String::from),
        };
        return exec::serve(shared.cri.clone(), &id, &query, req).await;
    }
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// A token comparison without an early exit.
fn authorized<B>(token: &str, req: &Request<B>) -> bool {
    let Some(given) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    !token.is_empty()
        && given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A `metav1.Status` error response (what kubectl prints).
pub(crate) fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A complete body.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_needs_three_segments() {
        assert_eq!(target("/exec/ns/p/c", "/exec/"), Some(("ns", "p", "c")));
        assert_eq!(target("/exec/ns/p", "/exec/"), None);
        assert_eq!(target("/exec/ns/p/c/x", "/exec/"), None);
        assert_eq!(target("/exec/ns//c", "/exec/"), None);
    }

    #[test]
    fn bearer_token_must_match() {
        let req = |h: &str| {
            Request::builder()
                .header("authorization", h)
                .body(())
                .unwrap()
        };
        assert!(authorized("secret", &req("Bearer secret")));
        assert!(!authorized("secret", &req("Bearer secreT")));
        assert!(!authorized("secret", &req("secret")));
        assert!(!authorized("", &req("Bearer ")));
    }
}

//! `GET|POST /exec/{namespace}/{pod}/{container}?command=..`: CRI Exec prepares the command and
//! returns a one-time URL on the runtime's streaming server, which speaks the Kubernetes channel
//! protocol over WebSocket. The endpoint forwards the client's WebSocket handshake there and, once
//! both sides switched protocols, copies the raw connections both ways, so the frames (and the
//! subprotocol the runtime chose) pass through untouched.
//!
//! `tty=true` is accepted but runs without a terminal (the runtime has none yet; no resize).

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::find::{self, FindError, Id, Instance, Query};
use super::{Body, status};

/// Request headers of a WebSocket handshake that go on to the runtime.
const HANDSHAKE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Why an exec could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The runtime returned a URL that is not `http://host:port/...`.
    #[error("the runtime returned an unusable streaming URL {0:?}")]
    BadUrl(String),
    /// Connecting to the streaming server failed.
    #[error("connecting to the runtime's streaming server: {0}")]
    Connect(#[from] std::io::Error),
    /// The HTTP exchange with the streaming server failed.
    #[error("streaming server: {0}")]
    Http(#[from] hyper::Error),
    /// Building the forwarded request failed.
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Serves one exec request.
pub async fn serve(mut cri: CriClient, id: &Id, query: &Query, req: Request<Incoming>) -> Response<Body> {
    let cmd = query.all("command");
    if cmd.is_empty() {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "you must specify at least 1 command");
    }
    if !is_websocket(req.headers()) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported",
        );
    }
    let container_id = match find::container(&mut cri, id, Instance::Current).await {
        Ok(c) => c,
        Err(e @ FindError::NotStarted { .. }) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        Err(e) => return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
    };
    let request = cri::ExecRequest {
        container_id,
        cmd,
        tty: false,
        stdin: query.flag("stdin"),
        stdout: query.flag("stdout"),
        stderr: query.flag("stderr"),
    };
    let url = match cri.runtime.exec(request).await {
        Ok(r) => r.into_inner().url,
        Err(e) => {
            let code = if e.code() == tonic::Code::FailedPrecondition || e.code() == tonic::Code::InvalidArgument {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return status(code, "BadRequest", &format!("exec: {}", e.message()));
        }
    };
    match relay(&url, req).await {
        Ok(resp) => resp,
        Err(e) => status(StatusCode::BAD_GATEWAY, "InternalError", &e.to_string()),
    }
}

/// Forwards the handshake to `url`; on `101` answers `101` with the runtime's handshake headers
/// and copies both upgraded connections in the background; otherwise returns the runtime's answer.
async fn relay(url: &str, mut req: Request<Incoming>) -> Result<Response<Body>, RelayError> {
    let uri: http::Uri = url.parse().map_err(|_| RelayError::BadUrl(url.into()))?;
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority().cloned()) else {
        return Err(RelayError::BadUrl(url.into()));
    };
    let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "streaming server connection ended with an error");
        }
    });
    let mut forward = Request::builder()
        .method(http::Method::GET)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority.as_str());
    for name in HANDSHAKE_HEADERS {
        for value in req.headers().get_all(name) {
            forward = forward.header(name, value);
        }
    }
    let mut upstream = sender.send_request(forward.body(http_body_util::Empty::new())?).await?;
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = upstream.into_parts();
        let body = body.map_err(std::io::Error::other).boxed();
        return Ok(Response::from_parts(parts, body));
    }
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in upstream.headers() {
        if name.as_str().starts_with("sec-websocket") || name == http::header::UPGRADE || name == http::header::CONNECTION {
            answer = answer.header(name, value);
        }
    }
    let up = hyper::upgrade::on(&mut upstream);
    let down = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (up, down) = match tokio::try_join!(up, down) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "exec upgrade failed");
                return;
            }
        };
        let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "exec relay ended with an error");
        }
    });
    Ok(answer.body(super::full(bytes::Bytes::new()))?)
}

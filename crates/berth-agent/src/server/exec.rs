//! `GET|POST /exec/{namespace}/{pod}/{container}?command=..`: CRI Exec prepares the command and
//! returns a one-time URL on the runtime's streaming server, which speaks the Kubernetes channel
//! protocol over WebSocket. The endpoint opens a WebSocket there with the client's subprotocols,
//! accepts the client's with the one the runtime chose, and relays the messages (the channel
//! protocol itself passes through untouched); it ends the client's socket with a proper close
//! code whatever the runtime sent. With `tty=true` the command runs on a terminal: its output
//! (stderr included) comes on stdout and the client's resize messages pass through.

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};

use super::find::{self, FindError, Id, Instance, Query};
use super::{Body, status};

/// Why an exec could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The runtime returned a URL that is not `http://host:port/...`.
    #[error("the runtime returned an unusable streaming URL {0:?}")]
    BadUrl(String),
    /// Connecting to the streaming server failed.
    #[error("connecting to the runtime's streaming server: {0}")]
    Connect(#[from] std::io::Error),
    /// The WebSocket handshake with the streaming server failed.
    #[error("streaming server: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// Building the response failed.
    #[error("building the response: {0}")]
    Response(#[from] http::Error),
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Serves one exec request.
pub async fn serve(
    mut cri: CriClient,
    id: &Id,
    query: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let cmd = query.all("command");
    if cmd.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
        );
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
        Err(e @ FindError::NotStarted { .. }) => {
            return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            );
        }
    };
    let tty = query.flag("tty");
    let request = cri::ExecRequest {
        container_id,
        cmd,
        tty,
        stdin: query.flag("stdin"),
        stdout: query.flag("stdout") || tty,
        // A terminal shows stderr itself (as kubelet: tty implies no separate stderr).
        stderr: query.flag("stderr") && !tty,
    };
    let url = match cri.runtime.exec(request).await {
        Ok(r) => r.into_inner().url,
        Err(e) => {
            let (code, reason) = match e.code() {
                tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
                    (StatusCode::BAD_REQUEST, "BadRequest")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            };
            return status(code, reason, &format!("exec: {}", e.message()));
        }
    };
    match relay(&url, req).await {
        Ok(resp) => resp,
        Err(e) => status(StatusCode::BAD_GATEWAY, "InternalError", &e.to_string()),
    }
}

/// Opens a WebSocket to the runtime's `url` offering the client's subprotocols, answers the
/// client `101` with the one the runtime chose, and relays messages between both in the
/// background ([`pump`]).
async fn relay(url: &str, mut req: Request<Incoming>) -> Result<Response<Body>, RelayError> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Ok(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing Sec-WebSocket-Key",
        ));
    };
    let uri: http::Uri = url.parse().map_err(|_| RelayError::BadUrl(url.into()))?;
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority().cloned()) else {
        return Err(RelayError::BadUrl(url.into()));
    };
    let mut upstream = format!(
        "ws://{authority}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    )
    .into_client_request()?;
    if let Some(protocols) = req.headers().get("sec-websocket-protocol") {
        upstream
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.clone());
    }
    let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
    let (runtime, answer) = match tokio_tungstenite::client_async(upstream, tcp).await {
        Ok(pair) => pair,
        Err(tungstenite::Error::Http(resp)) => {
            let text = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            return Ok(status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("exec: {text}"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()));
    if let Some(chosen) = answer.headers().get("sec-websocket-protocol") {
        response = response.header("sec-websocket-protocol", chosen);
    }
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match client.await {
            Ok(io) => {
                let client =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
                pump(client, runtime).await;
            }
            Err(e) => tracing::debug!(error = %e, "exec upgrade failed"),
        }
    });
    Ok(response.body(super::full(bytes::Bytes::new()))?)
}

/// Copies data messages both ways until the runtime ends the exec, then closes the client's
/// socket with code 1000 (kubectl reports a close without a code as an error). Pings are
/// answered by each side's WebSocket itself.
async fn pump<C, R>(client: WebSocketStream<C>, runtime: WebSocketStream<R>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client.split();
    let (mut runtime_tx, mut runtime_rx) = runtime.split();
    let to_runtime = async {
        while let Some(Ok(msg)) = client_rx.next().await {
            match msg {
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                data => {
                    if runtime_tx.send(data).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = runtime_tx.close().await;
    };
    let to_client = async {
        while let Some(Ok(msg)) = runtime_rx.next().await {
            match msg {
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                data => {
                    if client_tx.send(data).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = client_tx.send(Message::Close(Some(close))).await;
        let _ = client_tx.close().await;
    };
    tokio::pin!(to_runtime, to_client);
    // The exec ends when the runtime's side does; a client that left only stops its input.
    tokio::select! {
        _ = &mut to_client => {}
        _ = &mut to_runtime => to_client.await,
    }
}

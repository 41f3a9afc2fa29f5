//! pods/log and pods/exec: proxied to the node agent that runs the Pod (as kube-apiserver proxies
//! them to the kubelet).
//!
//! The Pod's `spec.nodeName` names the Node; its `InternalIP` and
//! `status.daemonEndpoints.kubeletEndpoint.Port` say where the agent's endpoint is. The request goes
//! there over HTTPS without certificate verification (kube-apiserver's behaviour without
//! `--kubelet-certificate-authority`), authenticated with the token the server derives for that node
//! ([`crate::nodecred::endpoint_token`]), which the node learnt when it joined. Log bodies
//! stream through as they come (follow); an exec's WebSocket handshake is forwarded and, on `101`,
//! both upgraded connections are copied into each other.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extensions::SubresourceRequest;
use crate::resources::ResourceInfo;
use crate::rest::Ctx;

/// Request headers forwarded to the agent besides the path: the upgrade handshake.
const FORWARDED: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// Whether this module answers the request: `log` or `exec` of a core Pod.
pub fn serves(ctx: &Ctx, subresource: &str) -> bool {
    ctx.r.builtin
        && ctx.r.group.is_empty()
        && ctx.r.plural == "pods"
        && matches!(subresource, "log" | "exec")
}

/// Answers pods/log (GET) and pods/exec (GET, POST).
pub async fn handle(req: SubresourceRequest<'_>) -> ApiResult<Response> {
    let ctx = req.ctx;
    let allowed = match req.subresource {
        "log" => req.method == http::Method::GET,
        _ => req.method == http::Method::GET || req.method == http::Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let namespace = ctx.namespace().unwrap_or("default");
    let pod = load(ctx, &ctx.r, Some(namespace), name)
        .await?
        .ok_or_else(|| ApiError::not_found(&ctx.r, name))?;
    let container = pick_container(&pod, name, ctx.query.get("container"))?;
    let node_name = crate::object::get_path(&pod, "spec.nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let node_name = node_name.ok_or_else(|| {
        ApiError::bad_request(format!("pod {name} does not have a host assigned"))
    })?;
    let (ip, port) = node_endpoint(ctx, node_name).await?;
    let token = ctx.srv.auth.endpoint_token(node_name);
    let path = match req.subresource {
        "log" => "containerLogs",
        _ => "exec",
    };
    // The Pod's UID tells the agent which incarnation of a re-created Pod is meant.
    let uid = crate::object::meta_str(&pod, "uid").unwrap_or_default();
    let query = match req.raw_query.filter(|q| !q.is_empty()) {
        Some(q) => format!("?{q}&podUID={uid}"),
        None => format!("?podUID={uid}"),
    };
    let target = Target {
        ip,
        port,
        path_and_query: format!("/{path}/{namespace}/{name}/{container}{query}"),
        token,
    };
    forward(target, req.method.clone(), &ctx.headers, req.upgrade).await
}

/// Reads object `name` (in `namespace`) of resource `r` from the store.
async fn load(
    ctx: &Ctx,
    r: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Option<Value>> {
    let Some(kv) = ctx.srv.store.get(&r.key(namespace, name)).await? else {
        return Ok(None);
    };
    crate::object::decode(&kv, r).map(Some)
}

/// The container a request is for: the one named (it must be in the Pod), else the Pod's only one.
pub fn pick_container(pod: &Value, pod_name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names = |field: &str| -> Vec<String> {
        crate::object::get_path(pod, field)
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("spec.containers");
    match asked {
        Some(c) => {
            let all = [
                containers.clone(),
                names("spec.initContainers"),
                names("spec.ephemeralContainers"),
            ]
            .concat();
            if all.iter().any(|n| n == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The agent endpoint of `node`: its InternalIP (else first address) and kubelet port.
async fn node_endpoint(ctx: &Ctx, node: &str) -> ApiResult<(IpAddr, u16)> {
    let nodes = ctx
        .srv
        .registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let obj = load(ctx, &nodes, None, node)
        .await?
        .ok_or_else(|| ApiError::not_found(&nodes, node))?;
    endpoint_of(&obj).ok_or_else(|| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node} does not publish an agent endpoint"),
        )
    })
}

/// Reads address and port out of a Node object.
pub fn endpoint_of(node: &Value) -> Option<(IpAddr, u16)> {
    let addresses = crate::object::get_path(node, "status.addresses")?.as_array()?;
    let address = |t: Option<&str>| {
        addresses
            .iter()
            .filter(|a| t.is_none() || a.get("type").and_then(Value::as_str) == t)
            .find_map(|a| a.get("address")?.as_str()?.parse::<IpAddr>().ok())
    };
    let ip = address(Some("InternalIP")).or_else(|| address(None))?;
    let ep = crate::object::get_path(node, "status.daemonEndpoints.kubeletEndpoint")?;
    let port = ep
        .get("Port")
        .or_else(|| ep.get("port"))?
        .as_u64()
        .filter(|p| (1..=65535).contains(p))?;
    Some((ip, port as u16))
}

/// Where a request goes.
struct Target {
    ip: IpAddr,
    port: u16,
    path_and_query: String,
    token: String,
}

fn upstream_error(target: &Target, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "Get \"https://{}:{}{}\": {e}",
        target.ip, target.port, target.path_and_query
    ))
}

/// Sends the request to the agent and relays the answer (streamed body, or an upgraded stream).
async fn forward(
    target: Target,
    method: http::Method,
    headers: &HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> ApiResult<Response> {
    let tcp = tokio::net::TcpStream::connect((target.ip, target.port))
        .await
        .map_err(|e| upstream_error(&target, e))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(client_config()?)
        .connect(ServerName::IpAddress(target.ip.into()), tcp)
        .await
        .map_err(|e| upstream_error(&target, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioIo::new(tls))
    .await
    .map_err(|e| upstream_error(&target, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node connection ended with an error");
        }
    });
    let mut builder = http::Request::builder()
        .method(method)
        .uri(target.path_and_query.as_str())
        .header(http::header::HOST, format!("{}:{}", target.ip, target.port))
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        );
    if upgrade.is_some() {
        for name in FORWARDED {
            for value in headers.get_all(name) {
                builder = builder.header(name, value);
            }
        }
    }
    let request = builder
        .body(http_body_util::Empty::new())
        .map_err(ApiError::internal)?;
    let mut resp = sender
        .send_request(request)
        .await
        .map_err(|e| upstream_error(&target, e))?;
    match (resp.status(), upgrade) {
        (StatusCode::SWITCHING_PROTOCOLS, Some(client)) => {
            let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
            for (name, value) in resp.headers() {
                if name.as_str().starts_with("sec-websocket")
                    || name == http::header::UPGRADE
                    || name == http::header::CONNECTION
                {
                    answer = answer.header(name, value);
                }
            }
            let node = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice(client, node));
            answer.body(Body::empty()).map_err(ApiError::internal)
        }
        _ => {
            let (parts, body) = resp.into_parts();
            let body = Body::new(body.map_err(std::io::Error::other));
            let mut out = Response::new(body);
            *out.status_mut() = parts.status;
            for name in [http::header::CONTENT_TYPE, http::header::CONTENT_LENGTH] {
                if let Some(v) = parts.headers.get(&name) {
                    out.headers_mut().insert(name, v.clone());
                }
            }
            Ok(out)
        }
    }
}

/// Copies the client's and the node's upgraded connections into each other until both end.
async fn splice(client: hyper::upgrade::OnUpgrade, node: hyper::upgrade::OnUpgrade) {
    let (client, node) = match tokio::try_join!(client, node) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "exec upgrade failed");
            return;
        }
    };
    let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut node).await {
        tracing::debug!(error = %e, "exec relay ended with an error");
    }
}

/// TLS to agents: no certificate verification (signatures are still checked), HTTP/1.1.
fn client_config() -> ApiResult<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        })
        .clone()
        .ok_or_else(|| ApiError::internal("building the TLS client configuration failed"))
}

/// Accepts any server certificate (see the module docs for why).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaults_to_the_only_one_and_is_validated() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "app");
        let err = pick_container(&one, "p", Some("x")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "container x is not valid for pod p")
        );
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let err = pick_container(&two, "p", None).unwrap_err();
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(pick_container(&two, "p", Some("b")).unwrap(), "b");
    }

    #[test]
    fn node_endpoint_from_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(
            endpoint_of(&node),
            Some(("10.0.0.7".parse().unwrap(), 10250))
        );
        let no_port =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}});
        assert_eq!(endpoint_of(&no_port), None);
    }
}

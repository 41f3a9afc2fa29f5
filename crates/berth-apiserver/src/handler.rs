//! The single catch-all request handler: authentication, path parsing and dispatch to discovery,
//! OpenAPI and the REST verbs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Method, Request};
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::path::{self, ApiPath};
use crate::query::Query;
use crate::rest::{self, Ctx, json_response};
use crate::state::ApiServer;

/// Handles every request.
pub async fn handle(State(srv): State<Arc<ApiServer>>, req: Request<Body>) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    match dispatch(srv, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code, reason = e.reason, message = %e.message, "request failed");
            e.into_response()
        }
    }
}

fn text(body: &'static str) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The `/version` document (k8s-openapi's `Info` requires every field).
pub fn version_info() -> serde_json::Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": format!("v1.33.0-berth.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "unknown", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

async fn dispatch(srv: Arc<ApiServer>, req: Request<Body>) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" | "/readyz" | "/livez" => return Ok(text("ok")),
        "/version" | "/version/" => return Ok(json_response(200, &version_info(), &[])),
        _ => {}
    }
    if crate::join::serves(&path) {
        return crate::join::handle(&srv, req).await;
    }
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = crate::auth::authenticate(&srv, auth).await?;
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if path == "/openapi/v3" || path.starts_with("/openapi/v3/") {
        return crate::surface::openapi(&srv, &path, &accept);
    }
    if path == "/openapi/v2" {
        return Err(ApiError::no_route());
    }
    let Some(api_path) = path::parse(&path) else {
        return Err(ApiError::no_route());
    };
    let rp = match api_path {
        ApiPath::Resource(rp) => rp,
        other => return crate::surface::discovery(&srv, &other, &accept),
    };
    let r = srv
        .registry
        .lookup(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(ApiError::no_route)?;
    let watch = Query::parse(req.uri().query()).flag("watch");
    let attributes = crate::nodeauthz::Attributes {
        method: req.method(),
        watch,
        group: &r.group,
        resource: &r.plural,
        namespace: rp.namespace.as_deref().filter(|_| r.namespaced),
        name: rp.name.as_deref(),
        subresource: rp.subresource.as_deref(),
    };
    crate::nodeauthz::authorize(&srv, &identity, &attributes).await?;
    let (mut parts, body) = req.into_parts();
    // Taken before the body is read: extensions answering `101` (pods/exec) need the connection.
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let raw_query = parts.uri.query().map(str::to_string);
    let mut body = match crate::body::read(&parts.headers, body).await {
        Ok(body) => body,
        Err(rejected) => return Ok(rejected.into_response()),
    };
    if is_protobuf(&parts.headers) {
        // kubectl's typed commands send protobuf; translate the kinds we know, else 415 (JSON retry).
        let obj = crate::protobuf::to_json(&body).ok_or_else(|| {
            ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf")
        })?;
        body = bytes::Bytes::from(obj.to_string());
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    reject_binary_body(&parts.headers)?;
    crate::body::check_depth(&body)?;
    let ctx = Ctx {
        srv,
        r,
        query: Query::parse(parts.uri.query()),
        path: rp,
        headers: parts.headers,
        identity,
    };
    verb(ctx, &parts.method, &body, (raw_query.as_deref(), upgrade)).await
}

fn is_protobuf(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/vnd.kubernetes.protobuf"))
}

/// Protobuf and CBOR bodies are not served; a 415 makes client-go retry the request as JSON.
fn reject_binary_body(headers: &http::HeaderMap) -> ApiResult<()> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/vnd.kubernetes.protobuf")
        || ct.starts_with("application/cbor")
        || ct.contains("+cbor")
    {
        return Err(ApiError::unsupported_media_type(ct));
    }
    Ok(())
}

/// `extra`: the raw query and the connection upgrade, for subresource extensions.
async fn verb(
    ctx: Ctx,
    method: &Method,
    body: &bytes::Bytes,
    extra: (Option<&str>, Option<hyper::upgrade::OnUpgrade>),
) -> ApiResult<Response> {
    let sub = ctx.path.subresource.clone();
    let has_name = ctx.path.name.is_some();
    match (sub.as_deref(), has_name, method.as_str()) {
        (None, false, "GET") if ctx.query.flag("watch") => rest::watch::watch(ctx).await,
        (None, false, "GET") => rest::read::list(&ctx).await,
        (None, false, "POST") => rest::write::create(&ctx, body).await,
        (None, false, "DELETE") => rest::delete::delete_collection(&ctx, body).await,
        (None, true, "GET") => rest::read::get(&ctx).await,
        (None, true, "PUT") => rest::write::update(&ctx, body, None).await,
        (None, true, "PATCH") => rest::patch::patch(&ctx, body, None).await,
        (None, true, "DELETE") => rest::delete::delete(&ctx, body).await,
        (Some("status"), true, m) if ctx.r.status_subresource => match m {
            "GET" => rest::read::get(&ctx).await,
            "PUT" => rest::write::update(&ctx, body, Some("status")).await,
            "PATCH" => rest::patch::patch(&ctx, body, Some("status")).await,
            _ => Err(ApiError::method_not_allowed()),
        },
        (Some("scale"), true, _) if ctx.r.scale.is_some() => {
            rest::sub::scale(&ctx, method, body).await
        }
        (Some("binding"), true, "POST") if ctx.r.builtin && ctx.r.plural == "pods" => {
            rest::sub::binding(&ctx, body).await
        }
        (Some("eviction"), true, "POST") if ctx.r.builtin && ctx.r.plural == "pods" => {
            crate::eviction::evict(&ctx, body).await
        }
        (Some(other), true, _) => {
            match crate::extensions::handle(crate::extensions::SubresourceRequest {
                ctx: &ctx,
                subresource: other,
                method,
                body,
                raw_query: extra.0,
                upgrade: extra.1,
            })
            .await
            {
                Some(resp) => resp,
                None => Err(ApiError::no_route()),
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

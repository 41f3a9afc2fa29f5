//! The two endpoints a joining agent uses before it has a credential:
//!
//! - `GET /cacerts` (anonymous, like K3s): the cluster CA certificate, PEM. The agent fetches it
//!   without verifying the server, compares its SHA-256 with the fingerprint in its join token, and
//!   only then trusts it and sends the token's secret.
//! - `POST /v1-berth/join` with `Authorization: Bearer <id>.<secret>` (a join token,
//!   [`crate::tokenstore`]) and the body `{"nodeName": "<name>"}`: issues the node's credential
//!   ([`crate::nodecred`]) and answers `{"nodeName", "token", "endpointToken", "caCert"}`.
//!   A malformed, unknown, wrong or expired token answers 401 and registers nothing.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::rest::json_response;
use crate::state::ApiServer;

/// The CA certificate's path.
pub const CACERTS_PATH: &str = "/cacerts";
/// The join path.
pub const JOIN_PATH: &str = "/v1-berth/join";
/// Largest join request body.
const MAX_JOIN_BODY: usize = 4096;

/// Whether `path` is one of this module's.
pub fn serves(path: &str) -> bool {
    path == CACERTS_PATH || path == JOIN_PATH
}

/// Answers `/cacerts` and `/v1-berth/join`.
pub async fn handle(srv: &ApiServer, req: Request<Body>) -> ApiResult<Response> {
    match (req.uri().path(), req.method().as_str()) {
        (CACERTS_PATH, "GET") => Ok((
            [(http::header::CONTENT_TYPE, "application/x-pem-file")],
            srv.auth.ca_pem().to_string(),
        )
            .into_response()),
        (JOIN_PATH, "POST") => join(srv, req).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

async fn join(srv: &ApiServer, req: Request<Body>) -> ApiResult<Response> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let credential = crate::auth::bearer(header).ok_or_else(ApiError::unauthorized)?;
    let token_id = crate::tokenstore::verify(srv, credential).await?;
    let body = axum::body::to_bytes(req.into_body(), MAX_JOIN_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the join request is not JSON: {e}")))?;
    let node = body
        .get("nodeName")
        .and_then(Value::as_str)
        .filter(|n| crate::nodecred::valid_node_name(n))
        .ok_or_else(|| {
            ApiError::bad_request("nodeName must be a lower-case DNS subdomain (a Node name)")
        })?;
    let token = crate::nodecred::issue(srv, node).await?;
    tracing::info!(node, token_id, "a node joined");
    let answer = json!({
        "nodeName": node,
        "token": token,
        "endpointToken": srv.auth.endpoint_token(node),
        "caCert": srv.auth.ca_pem(),
    });
    Ok(json_response(200, &answer, &[]))
}

//! The REST verbs on resources: read (get/list), watch, write (create/update), delete, patch and
//! the subresources (status, scale, binding).

pub mod delete;
pub mod patch;
pub mod read;
pub mod retry;
pub mod sub;
pub mod watch;
pub mod write;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::path::ResourcePath;
use crate::query::Query;
use crate::resources::ResourceInfo;
use crate::state::ApiServer;

/// Everything about one resource request.
pub struct Ctx {
    /// The server.
    pub srv: Arc<ApiServer>,
    /// The resource addressed.
    pub r: Arc<ResourceInfo>,
    /// The parsed path.
    pub path: ResourcePath,
    /// Query parameters.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// Who is asking.
    pub identity: Identity,
}

impl Ctx {
    /// The namespace from the URL (namespaced resources only).
    pub fn namespace(&self) -> Option<&str> {
        if self.r.namespaced {
            self.path.namespace.as_deref()
        } else {
            None
        }
    }

    /// The store key of the object named in the URL.
    pub fn key(&self) -> ApiResult<String> {
        let name = self
            .path
            .name
            .as_deref()
            .ok_or_else(ApiError::method_not_allowed)?;
        if self.r.namespaced && self.path.namespace.is_none() {
            return Err(ApiError::no_route());
        }
        Ok(self.r.key(self.namespace(), name))
    }

    /// The object name in the URL.
    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or_default()
    }

    /// The field manager of a write: `fieldManager`, else the User-Agent's first word.
    pub fn field_manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager") {
            return m.to_string();
        }
        self.headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }

    /// The request's Content-Type without parameters.
    pub fn content_type(&self) -> String {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    }

    /// Whether the client asked for a server-side Table.
    pub fn wants_table(&self) -> bool {
        self.headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split(',').next())
            .is_some_and(|first| first.contains("as=Table"))
    }
}

/// Parses a request body as JSON, or YAML (for apply and kubectl-style clients); 400 otherwise.
pub fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_yaml::from_slice::<Value>(body).map_err(|_| {
            ApiError::bad_request(format!("the object provided is unrecognized: {json_err}"))
        }),
    }
    .and_then(|v| {
        if v.is_object() {
            Ok(v)
        } else {
            Err(ApiError::bad_request("the request body must be an object"))
        }
    })
}

/// Checks the body's apiVersion/kind against the endpoint (filling them in when absent).
pub fn check_type(r: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let want_av = r.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => obj["apiVersion"] = Value::String(want_av),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != r.kind => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind",
            r.kind, r.version, r.kind
        ))),
        _ => {
            obj["kind"] = Value::String(r.kind.clone());
            Ok(())
        }
    }
}

/// A JSON response with `Warning` headers.
pub fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let mut resp = (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// A `Status` with `status: Success`.
pub fn success_status(r: &ResourceInfo, name: &str, uid: Option<&str>) -> Value {
    let mut details = serde_json::json!({"name": name, "group": r.group, "kind": r.plural});
    if let Some(u) = uid {
        details["uid"] = Value::String(u.to_string());
    }
    serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":details})
}

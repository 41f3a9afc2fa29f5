//! HTTP surface: one fallback handler that routes on path *suffixes*, because repository names
//! contain `/` and cannot be matched by a router pattern with a middle wildcard.

mod blobs;
mod listing;
mod manifests;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::auth::{Access, Auth, SERVICE};
use crate::error::{ApiError, ErrorCode};
use crate::storage::Storage;
use crate::upload::Uploads;
use berth_oci::reference::RepoName;

/// Shared state of every request.
pub struct AppState {
    pub(crate) storage: Storage,
    pub(crate) uploads: Uploads,
    pub(crate) auth: Auth,
    pub(crate) tls: bool,
    /// Held for as long as anything serves this state (see `take_lock`).
    pub(crate) _lock: std::fs::File,
}

/// The header every response carries.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// The registry's router (serve it at the root of a host).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// What a `/v2/...` path names.
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Upload(String, Option<String>),
    Referrers(String, String),
    Token,
}

/// Splits a path into a route by its suffix.
fn route(path: &str) -> Option<Route> {
    if path == "/token" {
        return Some(Route::Token);
    }
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    let seg = |back: usize| {
        if n > back {
            Some(segs[n - 1 - back])
        } else {
            None
        }
    };
    if n >= 4 && seg(2) == Some("blobs") && seg(1) == Some("uploads") {
        let id = segs[n - 1];
        return Some(Route::Upload(
            name(3),
            (!id.is_empty()).then(|| id.to_string()),
        ));
    }
    if n >= 3 && seg(1) == Some("blobs") && seg(0) == Some("uploads") {
        return Some(Route::Upload(name(2), None));
    }
    if n < 3 {
        return None;
    }
    let last = segs[n - 1].to_string();
    match segs[n - 2] {
        "tags" if last == "list" => Some(Route::Tags(name(2))),
        "manifests" => Some(Route::Manifest(name(2), last)),
        "blobs" => Some(Route::Blob(name(2), last)),
        "referrers" => Some(Route::Referrers(name(2), last)),
        _ => None,
    }
}

async fn dispatch(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = handle(&st, req).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%method, %path, error = %e, "registry request failed");
            } else {
                tracing::debug!(%method, %path, error = %e, "registry request refused");
            }
            e.into_response()
        }
    };
    resp.headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    resp
}

async fn handle(st: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let Some(route) = route(req.uri().path()) else {
        return Err(ApiError::new(ErrorCode::NameInvalid, "unknown path")
            .with_status(StatusCode::NOT_FOUND));
    };
    let method = req.method().clone();
    match route {
        Route::Token => Ok(token(st, req.headers())),
        Route::Base => base(st, &req),
        Route::Catalog => {
            authorize(st, &req, None, Access::Pull)?;
            listing::catalog(st, req.uri()).await
        }
        Route::Tags(name) => {
            let repo = authorize_repo(st, &req, &name, Access::Pull)?;
            listing::tags(st, &repo, req.uri()).await
        }
        Route::Referrers(name, digest) => {
            let repo = authorize_repo(st, &req, &name, Access::Pull)?;
            listing::referrers(st, &repo, &digest, req.uri()).await
        }
        Route::Manifest(name, reference) => {
            let repo = authorize_repo(st, &req, &name, access_of(&method))?;
            manifests::handle(st, repo, &reference, req).await
        }
        Route::Blob(name, digest) => {
            let repo = authorize_repo(st, &req, &name, access_of(&method))?;
            blobs::handle(st, repo, &digest, req).await
        }
        Route::Upload(name, id) => {
            // Even reading an upload's status is part of pushing.
            let repo = authorize_repo(st, &req, &name, Access::Push)?;
            uploads::handle(st, repo, id, req).await
        }
    }
}

fn access_of(m: &Method) -> Access {
    if m == Method::GET || m == Method::HEAD {
        Access::Pull
    } else {
        Access::Push
    }
}

/// Validates the name, then checks access (so a bad name is NAME_INVALID even when anonymous).
fn authorize_repo(
    st: &AppState,
    req: &Request,
    name: &str,
    access: Access,
) -> Result<RepoName, ApiError> {
    let repo = RepoName::parse(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name {name:?}"),
        )
    })?;
    authorize(st, req, Some(&repo), access)?;
    Ok(repo)
}

fn authorize(
    st: &AppState,
    req: &Request,
    repo: Option<&RepoName>,
    access: Access,
) -> Result<(), ApiError> {
    if st.auth.allows(req.headers(), access) {
        return Ok(());
    }
    let scope = match (repo, access) {
        (Some(r), Access::Pull) => format!(",scope=\"repository:{r}:pull\""),
        (Some(r), Access::Push) => format!(",scope=\"repository:{r}:pull,push\""),
        (None, _) => ",scope=\"registry:catalog:*\"".to_string(),
    };
    Err(unauthorized(st, req, &scope))
}

/// The challenge pointing clients at this registry's token endpoint, on the host they used
/// (the `Host` header in HTTP/1.1, the URI authority in HTTP/2).
fn unauthorized(st: &AppState, req: &Request, scope: &str) -> ApiError {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("localhost");
    let scheme = if st.tls { "https" } else { "http" };
    let challenge =
        format!("Bearer realm=\"{scheme}://{host}/token\",service=\"{SERVICE}\"{scope}");
    ApiError::new(ErrorCode::Unauthorized, "authentication required")
        .with_header(header::WWW_AUTHENTICATE, &challenge)
}

/// `GET /v2/`: 200 when the caller may use the registry at all. With auth enabled, anonymous
/// callers get the challenge, which is how clients learn where to fetch tokens (they ask for a
/// pull-only token when they have no credentials).
fn base(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    if st.auth.mode() == crate::AuthMode::None || st.auth.authenticated(req.headers()) {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response());
    }
    Err(unauthorized(st, req, ""))
}

/// `GET /token`: a bearer token for the presented Basic credentials (or an anonymous one).
fn token(st: &AppState, headers: &HeaderMap) -> Response {
    match st.auth.issue_token(headers) {
        Some(t) => axum::Json(t).into_response(),
        None => ApiError::new(ErrorCode::Unauthorized, "invalid credentials")
            .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"berth-registry\"")
            .into_response(),
    }
}

/// Parses `n` and `last` query parameters for paginated lists.
fn pagination(uri: &http::Uri) -> Result<(Option<usize>, Option<String>), ApiError> {
    let mut n = None;
    let mut last = None;
    for (k, v) in query_pairs(uri) {
        match k.as_str() {
            "n" => {
                n = Some(v.parse().map_err(|_| {
                    ApiError::new(ErrorCode::Unsupported, "n must be a number")
                        .with_status(StatusCode::BAD_REQUEST)
                })?)
            }
            "last" => last = Some(v),
            _ => {}
        }
    }
    Ok((n, last))
}

/// Decoded query pairs (percent-decoding `%xx` and `+`).
fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// First value of query parameter `key`.
fn query_param(uri: &http::Uri, key: &str) -> Option<String> {
    query_pairs(uri)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// An empty-bodied response with the given status and headers.
fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (header::HeaderName::try_from(*k), HeaderValue::from_str(v))
        {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(path: &str) -> String {
        match route(path) {
            None => "none".into(),
            Some(Route::Base) => "base".into(),
            Some(Route::Catalog) => "catalog".into(),
            Some(Route::Token) => "token".into(),
            Some(Route::Tags(n)) => format!("tags {n}"),
            Some(Route::Manifest(n, r)) => format!("manifest {n} {r}"),
            Some(Route::Blob(n, d)) => format!("blob {n} {d}"),
            Some(Route::Upload(n, id)) => format!("upload {n} {id:?}"),
            Some(Route::Referrers(n, d)) => format!("referrers {n} {d}"),
        }
    }

    #[test]
    fn routes_on_suffixes_of_names_with_slashes() {
        assert_eq!(describe("/v2/"), "base");
        assert_eq!(describe("/v2"), "base");
        assert_eq!(describe("/v2/_catalog"), "catalog");
        assert_eq!(
            describe("/v2/a/b/c/manifests/latest"),
            "manifest a/b/c latest"
        );
        // Names may contain the words the routes use.
        assert_eq!(
            describe("/v2/x/manifests/manifests/v1"),
            "manifest x/manifests v1"
        );
        assert_eq!(
            describe("/v2/x/blobs/blobs/sha256:ab"),
            "blob x/blobs sha256:ab"
        );
        assert_eq!(describe("/v2/tags/list/tags/list"), "tags tags/list");
        assert_eq!(describe("/v2/a/blobs/uploads/"), "upload a None");
        assert_eq!(describe("/v2/a/blobs/uploads"), "upload a None");
        assert_eq!(
            describe("/v2/a/b/blobs/uploads/123"),
            "upload a/b Some(\"123\")"
        );
        assert_eq!(
            describe("/v2/a/referrers/sha256:ab"),
            "referrers a sha256:ab"
        );
        assert_eq!(describe("/v2/a/unknown/x"), "none");
        assert_eq!(describe("/v3/a/manifests/x"), "none");
        assert_eq!(describe("/token"), "token");
    }
}

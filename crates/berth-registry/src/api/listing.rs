//! Content discovery: `GET /v2/<name>/tags/list`, `GET /v2/_catalog` (both paginated with `n`
//! and `last`, with a `Link` header when truncated) and `GET /v2/<name>/referrers/<digest>`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::{AppState, pagination, query_param};
use crate::error::{ApiError, ErrorCode};
use crate::storage::StorageError;
use berth_oci::digest::Digest;
use berth_oci::manifest::Summary;
use berth_oci::media::OCI_INDEX;
use berth_oci::reference::RepoName;

/// One page of a sorted list: entries after `last` (exclusive), at most `n`, and whether more follow.
fn page(all: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let mut rest: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|x| x.as_str() > l).collect(),
        None => all,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            (rest, true)
        }
        _ => (rest, false),
    }
}

/// A JSON response with an RFC 5988 `Link` to the next page when truncated.
fn paged(
    body: serde_json::Value,
    base: &str,
    items: &[String],
    more: bool,
    n: Option<usize>,
) -> Response {
    let mut resp = axum::Json(body).into_response();
    if let (true, Some(last), Some(n)) = (more, items.last(), n) {
        let last = percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC);
        let link = format!("<{base}?n={n}&last={last}>; rel=\"next\"");
        if let Ok(v) = http::HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

pub(super) async fn tags(
    st: &Arc<AppState>,
    repo: &RepoName,
    uri: &http::Uri,
) -> Result<Response, ApiError> {
    let (n, last) = pagination(uri)?;
    let all = st
        .storage
        .tags(repo)
        .await
        .map_err(StorageError::from)?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NameUnknown, format!("repository {repo} unknown"))
        })?;
    let (items, more) = page(all, n, last.as_deref());
    let body = serde_json::json!({ "name": repo.as_str(), "tags": items });
    Ok(paged(
        body,
        &format!("/v2/{repo}/tags/list"),
        &items,
        more,
        n,
    ))
}

pub(super) async fn catalog(st: &Arc<AppState>, uri: &http::Uri) -> Result<Response, ApiError> {
    let (n, last) = pagination(uri)?;
    let all = st
        .storage
        .repositories()
        .await
        .map_err(StorageError::from)?;
    let (items, more) = page(all, n, last.as_deref());
    let body = serde_json::json!({ "repositories": items });
    Ok(paged(body, "/v2/_catalog", &items, more, n))
}

pub(super) async fn referrers(
    st: &Arc<AppState>,
    repo: &RepoName,
    digest: &str,
    uri: &http::Uri,
) -> Result<Response, ApiError> {
    let subject: Digest = digest.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {digest:?}"),
        )
    })?;
    let filter = query_param(uri, "artifactType");
    let mut descriptors = Vec::new();
    // An unknown subject (or repository) is not an error: the list is just empty.
    for d in st
        .storage
        .referrers(repo, &subject)
        .await
        .map_err(StorageError::from)?
    {
        let Ok(Some((bytes, media_type))) = st.storage.get_manifest(repo, &d).await else {
            continue;
        };
        let Ok(m) = Summary::parse(&bytes, None) else {
            continue;
        };
        if filter.is_some() && m.artifact_type != filter {
            continue;
        }
        let mut desc = serde_json::json!({
            "mediaType": media_type,
            "digest": d.to_string(),
            "size": bytes.len(),
        });
        if let Some(a) = &m.artifact_type {
            desc["artifactType"] = a.clone().into();
        }
        if let Some(a) = m.annotations {
            desc["annotations"] = a.into();
        }
        descriptors.push(desc);
    }
    let body =
        serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors });
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OCI_INDEX)],
        body.to_string(),
    )
        .into_response();
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}

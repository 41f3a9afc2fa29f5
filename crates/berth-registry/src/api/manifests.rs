//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<tag-or-digest>`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use http::{Method, StatusCode, header};

use super::{AppState, empty, query_pairs};
use crate::error::{ApiError, ErrorCode};
use crate::storage::StorageError;
use berth_oci::digest::{Algorithm, Digest};
use berth_oci::manifest::Summary;
use berth_oci::reference::{RepoName, Tag, TagOrDigest};

/// Largest manifest accepted (the spec asks registries to accept at least 4 MiB).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

pub(super) async fn handle(
    st: &Arc<AppState>,
    repo: RepoName,
    reference: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let r = TagOrDigest::parse(reference).ok_or_else(|| bad_reference(reference))?;
    let method = req.method().clone();
    match method {
        Method::GET | Method::HEAD => get(st, &repo, &r, method == Method::GET).await,
        Method::PUT => put(st, &repo, r, req).await,
        Method::DELETE => delete(st, &repo, &r).await,
        _ => Err(ApiError::new(ErrorCode::Unsupported, "method not allowed")),
    }
}

fn bad_reference(reference: &str) -> ApiError {
    if reference.contains(':') {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {reference:?}"),
        )
    } else {
        ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("invalid tag {reference:?}"),
        )
    }
}

fn manifest_unknown(r: &TagOrDigest) -> ApiError {
    let what = match r {
        TagOrDigest::Tag(t) => t.as_str().to_string(),
        TagOrDigest::Digest(d) => d.to_string(),
    };
    ApiError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {what} unknown"),
    )
}

/// The digest a reference names in `repo`, if any.
async fn resolve(
    st: &AppState,
    repo: &RepoName,
    r: &TagOrDigest,
) -> Result<Option<Digest>, ApiError> {
    match r {
        TagOrDigest::Digest(d) => Ok(Some(d.clone())),
        TagOrDigest::Tag(t) => Ok(st
            .storage
            .resolve_tag(repo, t)
            .await
            .map_err(StorageError::from)?),
    }
}

async fn get(
    st: &AppState,
    repo: &RepoName,
    r: &TagOrDigest,
    with_body: bool,
) -> Result<Response, ApiError> {
    let d = resolve(st, repo, r)
        .await?
        .ok_or_else(|| manifest_unknown(r))?;
    let (bytes, media_type) = st
        .storage
        .get_manifest(repo, &d)
        .await?
        .ok_or_else(|| manifest_unknown(r))?;
    let mut resp = empty(
        StatusCode::OK,
        &[
            ("content-type", media_type),
            ("docker-content-digest", d.to_string()),
            ("content-length", bytes.len().to_string()),
        ],
    );
    if with_body {
        *resp.body_mut() = Body::from(bytes);
    }
    Ok(resp)
}

/// Reads the body, refusing (413) anything over [`MAX_MANIFEST`] without buffering it.
async fn read_limited(body: Body) -> Result<Vec<u8>, ApiError> {
    let too_big = || {
        ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("manifest larger than {MAX_MANIFEST} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, format!("reading body: {e}")))?;
        if out.len() + chunk.len() > MAX_MANIFEST {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn put(
    st: &AppState,
    repo: &RepoName,
    r: TagOrDigest,
    req: Request,
) -> Result<Response, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST) {
        return Err(ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("manifest larger than {MAX_MANIFEST} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let extra_tags = tag_params(req.uri())?;
    let bytes = read_limited(req.into_body()).await?;
    let m = Summary::parse(&bytes, content_type.as_deref())
        .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
    let d = match &r {
        TagOrDigest::Digest(want) => {
            let got = Digest::of_with(want.algorithm(), &bytes);
            if &got != want {
                return Err(StorageError::DigestMismatch {
                    expected: want.clone(),
                    actual: got,
                }
                .into());
            }
            got
        }
        TagOrDigest::Tag(_) => Digest::of_with(Algorithm::Sha256, &bytes),
    };
    check_references(st, repo, &m).await?;
    st.storage
        .put_manifest(repo, &d, &bytes, &m.media_type, m.subject.as_ref())
        .await
        .map_err(StorageError::from)?;
    let mut tags = extra_tags;
    if let TagOrDigest::Tag(t) = r {
        tags.push(t);
    }
    for t in &tags {
        st.storage
            .set_tag(repo, t, &d)
            .await
            .map_err(StorageError::from)?;
    }
    tracing::debug!(%repo, digest = %d, tags = tags.len(), "manifest stored");
    let mut headers = vec![
        ("location", format!("/v2/{repo}/manifests/{d}")),
        ("docker-content-digest", d.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(s) = &m.subject {
        headers.push(("oci-subject", s.to_string()));
    }
    let mut resp = empty(StatusCode::CREATED, &headers);
    for t in &tags {
        if let Ok(v) = http::HeaderValue::from_str(t.as_str()) {
            resp.headers_mut().append("oci-tag", v);
        }
    }
    Ok(resp)
}

/// `?tag=a&tag=b` on a manifest PUT (distribution-spec 1.1 end-7b).
fn tag_params(uri: &http::Uri) -> Result<Vec<Tag>, ApiError> {
    query_pairs(uri)
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::parse(&v).ok_or_else(|| bad_reference(&v)))
        .collect()
}

/// Every config/layer blob must be in the repository and every child of an index must be a
/// manifest of the repository; a missing `subject` is allowed.
async fn check_references(st: &AppState, repo: &RepoName, m: &Summary) -> Result<(), ApiError> {
    for b in &m.blobs {
        if !st.storage.repo_has_blob(repo, b).await {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("blob {b} unknown to repository"),
            ));
        }
    }
    for c in &m.children {
        if !st.storage.has_manifest(repo, c).await {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {c} unknown to repository"),
            ));
        }
    }
    Ok(())
}

async fn delete(st: &AppState, repo: &RepoName, r: &TagOrDigest) -> Result<Response, ApiError> {
    let deleted = match r {
        TagOrDigest::Tag(t) => st
            .storage
            .delete_tag(repo, t)
            .await
            .map_err(StorageError::from)?,
        TagOrDigest::Digest(d) => {
            // The subject is needed to drop the referrers entry; unreadable manifests have none.
            let subject = match st.storage.get_manifest(repo, d).await {
                Ok(Some((bytes, _))) => Summary::parse(&bytes, None).ok().and_then(|m| m.subject),
                _ => None,
            };
            st.storage
                .delete_manifest(repo, d, subject.as_ref())
                .await
                .map_err(StorageError::from)?
        }
    };
    if deleted {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(manifest_unknown(r))
    }
}

//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (new session, monolithic `?digest=`, or
//! cross-repository `?mount=&from=`), then `PATCH`/`PUT`/`GET`/`DELETE` on the session.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use tokio::sync::OwnedMutexGuard;

use super::{AppState, empty, query_param};
use crate::error::{ApiError, ErrorCode};
use crate::storage::{StorageError, hash_file};
use crate::upload::{AppendError, Session};
use berth_oci::digest::{Algorithm, Digest};
use berth_oci::reference::RepoName;

pub(super) async fn handle(
    st: &Arc<AppState>,
    repo: RepoName,
    id: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    match (req.method().clone(), id) {
        (Method::POST, None) => start(st, repo, req).await,
        (Method::PATCH, Some(id)) => patch(st, &repo, &id, req).await,
        (Method::PUT, Some(id)) => put(st, &repo, &id, req).await,
        (Method::GET, Some(id)) => status(st, &repo, &id).await,
        (Method::DELETE, Some(id)) => {
            let mut s = session(st, &repo, &id).await?;
            s.discard().await;
            st.uploads.forget(&id);
            Ok(empty(StatusCode::NO_CONTENT, &[]))
        }
        _ => Err(ApiError::new(ErrorCode::Unsupported, "method not allowed")),
    }
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|_| ApiError::new(ErrorCode::DigestInvalid, format!("invalid digest {s:?}")))
}

async fn start(st: &Arc<AppState>, repo: RepoName, req: Request) -> Result<Response, ApiError> {
    let uri = req.uri().clone();
    if let Some(mount) = query_param(&uri, "mount") {
        let d = parse_digest(&mount)?;
        if let Some(from) = query_param(&uri, "from").and_then(|f| RepoName::parse(&f))
            && st.storage.repo_has_blob(&from, &d).await
        {
            st.storage
                .link_blob(&repo, &d)
                .await
                .map_err(StorageError::from)?;
            tracing::debug!(%repo, %from, digest = %d, "mounted blob");
            return Ok(created(&repo, &d));
        }
        // Not mountable: fall back to a new session, as the spec allows.
    }
    let alg = match query_param(&uri, "digest-algorithm") {
        None => None,
        Some(a) => Some(Algorithm::from_name(&a).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unsupported,
                format!("unsupported digest algorithm {a:?}"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    let digest = query_param(&uri, "digest")
        .map(|d| parse_digest(&d))
        .transpose()?;
    let alg = alg
        .or(digest.as_ref().map(Digest::algorithm))
        .unwrap_or(Algorithm::Sha256);
    let storage = &st.storage;
    let id = st
        .uploads
        .create(repo.clone(), alg, |id| storage.upload_path(id))
        .await
        .map_err(StorageError::from)?
        .to_string();
    let Some(digest) = digest else {
        return Ok(accepted(&repo, &id, 0, StatusCode::ACCEPTED));
    };
    // Monolithic upload: the whole blob is the POST body.
    let mut s = session(st, &repo, &id).await?;
    let expected = content_length(req.headers());
    if let Err(e) = s.append(req.into_body(), expected).await {
        s.discard().await;
        st.uploads.forget(&id);
        return Err(append_error(e));
    }
    finish(st, &repo, &id, &mut s, &digest).await
}

async fn patch(
    st: &Arc<AppState>,
    repo: &RepoName,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let mut s = session(st, repo, id).await?;
    let expected = check_range(req.headers(), &s, repo, id)?;
    s.append(req.into_body(), expected)
        .await
        .map_err(append_error)?;
    Ok(accepted(repo, id, s.offset, StatusCode::ACCEPTED))
}

async fn put(
    st: &Arc<AppState>,
    repo: &RepoName,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let digest = query_param(req.uri(), "digest")
        .ok_or_else(|| ApiError::new(ErrorCode::DigestInvalid, "digest query parameter required"))
        .and_then(|d| parse_digest(&d))?;
    let mut s = session(st, repo, id).await?;
    let expected = check_range(req.headers(), &s, repo, id)?;
    s.append(req.into_body(), expected)
        .await
        .map_err(append_error)?;
    finish(st, repo, id, &mut s, &digest).await
}

async fn status(st: &Arc<AppState>, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    let s = session(st, repo, id).await?;
    Ok(accepted(repo, id, s.offset, StatusCode::NO_CONTENT))
}

/// Locks session `id` of `repo` (waiting for a concurrent request on it to finish).
async fn session(
    st: &AppState,
    repo: &RepoName,
    id: &str,
) -> Result<OwnedMutexGuard<Session>, ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorCode::BlobUploadUnknown,
            format!("upload {id:?} unknown"),
        )
    };
    let guard = st
        .uploads
        .get(repo, id)
        .ok_or_else(unknown)?
        .lock_owned()
        .await;
    if guard.closed {
        return Err(unknown());
    }
    Ok(guard)
}

/// Verifies the received bytes against `digest` and moves them into place; on a mismatch the
/// upload is discarded and nothing is stored.
async fn finish(
    st: &AppState,
    repo: &RepoName,
    id: &str,
    s: &mut Session,
    digest: &Digest,
) -> Result<Response, ApiError> {
    let actual = if s.hasher.algorithm() == digest.algorithm() {
        s.hasher.clone().finish()
    } else {
        let (path, alg) = (s.path.clone(), digest.algorithm());
        tokio::task::spawn_blocking(move || hash_file(&path, alg))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
            .map_err(StorageError::from)?
    };
    if &actual != digest {
        s.discard().await;
        st.uploads.forget(id);
        return Err(StorageError::DigestMismatch {
            expected: digest.clone(),
            actual,
        }
        .into());
    }
    if let Err(e) = st.storage.commit_blob(&s.path, digest).await {
        s.discard().await;
        st.uploads.forget(id);
        return Err(StorageError::from(e).into());
    }
    s.closed = true;
    st.uploads.forget(id);
    st.storage
        .link_blob(repo, digest)
        .await
        .map_err(StorageError::from)?;
    tracing::debug!(%repo, %digest, size = s.offset, "blob stored");
    Ok(created(repo, digest))
}

/// Checks `Content-Range: <start>-<end>` against the session offset (416 when it does not
/// continue the upload) and returns the number of bytes the body must carry, if known. A PATCH
/// without Content-Range appends at the current offset (docker and containerd stream that way).
fn check_range(
    headers: &HeaderMap,
    s: &Session,
    repo: &RepoName,
    id: &str,
) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(content_length(headers));
    };
    let spec = value
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    let invalid = || {
        ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!(
                "Content-Range {value:?} does not continue the upload at {}",
                s.offset
            ),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(header::LOCATION, &upload_location(repo, id))
        .with_header(header::RANGE, &range_value(s.offset))
    };
    // `end - start + 1` overflows for `0-18446744073709551615`: no body can be that long either.
    match parsed {
        Some((start, end)) if start == s.offset && end >= start => {
            (end - start).checked_add(1).map(Some).ok_or_else(invalid)
        }
        _ => Err(invalid()),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Length { .. } => ApiError::new(ErrorCode::SizeInvalid, e.to_string()),
        AppendError::Body(_) => ApiError::new(ErrorCode::BlobUploadInvalid, e.to_string()),
        AppendError::Io(io) => StorageError::Io(io).into(),
    }
}

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// The `Range` of an upload: `0-<last byte>`, and `0-0` when empty (as distribution does).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn accepted(repo: &RepoName, id: &str, offset: u64, status: StatusCode) -> Response {
    empty(
        status,
        &[
            ("location", upload_location(repo, id)),
            ("range", range_value(offset)),
            ("docker-upload-uuid", id.to_string()),
            ("content-length", "0".to_string()),
        ],
    )
}

fn created(repo: &RepoName, d: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
            ("content-length", "0".to_string()),
        ],
    )
}

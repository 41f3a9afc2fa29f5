//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{AppState, empty};
use crate::error::{ApiError, ErrorCode};
use berth_oci::digest::Digest;
use berth_oci::reference::RepoName;

/// Read buffer for streamed blobs.
const READ_BUFFER: usize = 256 * 1024;

pub(super) async fn handle(
    st: &Arc<AppState>,
    repo: RepoName,
    digest: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let d: Digest = digest.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {digest:?}"),
        )
    })?;
    let method = req.method().clone();
    match method {
        Method::GET | Method::HEAD => {
            serve(st, &repo, &d, req.headers(), method == Method::GET).await
        }
        Method::DELETE => {
            if st
                .storage
                .unlink_blob(&repo, &d)
                .await
                .map_err(crate::storage::StorageError::from)?
            {
                Ok(empty(StatusCode::ACCEPTED, &[]))
            } else {
                Err(ApiError::new(
                    ErrorCode::BlobUnknown,
                    format!("blob {d} unknown to repository"),
                ))
            }
        }
        _ => Err(ApiError::new(ErrorCode::Unsupported, "method not allowed")),
    }
}

/// An inclusive byte range within a blob of known size.
struct ByteRange {
    start: u64,
    end: u64,
}

/// Parses `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` against `size`; `Err` means unsatisfiable.
fn parse_range(value: &str, size: u64) -> Result<ByteRange, ()> {
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (a, b) => (
            a.parse().map_err(|_| ())?,
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1)),
        ),
    };
    if start > end || start >= size {
        return Err(());
    }
    Ok(ByteRange { start, end })
}

async fn serve(
    st: &AppState,
    repo: &RepoName,
    d: &Digest,
    req_headers: &http::HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorCode::BlobUnknown,
            format!("blob {d} unknown to repository"),
        )
    };
    if !st.storage.repo_has_blob(repo, d).await {
        return Err(unknown());
    }
    let size = st
        .storage
        .verified_blob_size(d)
        .await?
        .ok_or_else(unknown)?;
    let range = match req_headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => Some(parse_range(v, size).map_err(|()| {
            ApiError::new(ErrorCode::BlobUnknown, "requested range not satisfiable")
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
        })?),
    };
    let (status, start, len) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut headers = vec![
        ("docker-content-digest", d.to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
        ("accept-ranges", "bytes".to_string()),
    ];
    if let Some(r) = &range {
        headers.push((
            "content-range",
            format!("bytes {}-{}/{size}", r.start, r.end),
        ));
    }
    let mut resp = empty(status, &headers);
    if with_body {
        let mut file = tokio::fs::File::open(st.storage.blob_path(d))
            .await
            .map_err(crate::storage::StorageError::from)?;
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(crate::storage::StorageError::from)?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_BUFFER);
        *resp.body_mut() = Body::from_stream(stream);
    }
    Ok(resp)
}

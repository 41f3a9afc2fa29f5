//! Join tokens kept server-side, as kubeadm keeps bootstrap tokens: one Secret of type
//! `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>` in `kube-system` per token, with
//! `token-id`, `token-secret-sha256` (the SHA-256 of the secret: the secret itself is never
//! stored), optional `expiration` (RFC 3339) and `description`.
//!
//! The default token is also written to `<data>/server/node-token` (0600) at every start; `berth
//! token create/list/delete` manage further ones through the API.

use std::path::Path;

use crate::error::{ApiError, ApiResult};
use crate::jointoken::JoinToken;
use crate::secretstore;
use crate::state::ApiServer;

/// The Secret type of join tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Data key of the token id.
pub const KEY_ID: &str = "token-id";
/// Data key of the secret's SHA-256 (hex).
pub const KEY_SECRET_HASH: &str = "token-secret-sha256";
/// Data key of the expiry (RFC 3339).
pub const KEY_EXPIRATION: &str = "expiration";
/// Data key of the description.
pub const KEY_DESCRIPTION: &str = "description";

/// The name of the Secret holding token `id`.
pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// Stores `token` (its hashed secret) with an optional expiry and a description.
pub async fn store(
    srv: &ApiServer,
    token: &JoinToken,
    expiration: Option<&str>,
    description: &str,
) -> ApiResult<()> {
    let hash = token.secret_hash();
    let mut data = vec![
        (KEY_ID, token.id.as_str()),
        (KEY_SECRET_HASH, hash.as_str()),
        (KEY_DESCRIPTION, description),
        ("usage-bootstrap-authentication", "true"),
    ];
    if let Some(e) = expiration {
        data.push((KEY_EXPIRATION, e));
    }
    let name = secret_name(&token.id);
    secretstore::put(srv, &name, SECRET_TYPE, &data, serde_json::json!({})).await
}

/// Errors of the default token file.
#[derive(Debug, thiserror::Error)]
pub enum DefaultTokenError {
    /// Writing the file.
    #[error("writing the join token {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Storing its Secret.
    #[error("storing the join token: {0}")]
    Store(#[from] ApiError),
}

/// Loads the default join token from `path` (making one on first start), pins it to
/// `ca_fingerprint`, rewrites the file if that changed anything, and makes sure its Secret exists
/// (an in-memory store starts empty). Deleting the default token therefore lasts until the next
/// start; to replace it, remove the file and restart.
pub async fn ensure_default(
    srv: &ApiServer,
    path: &Path,
    ca_fingerprint: &str,
) -> Result<JoinToken, DefaultTokenError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut token = JoinToken::parse(&text).unwrap_or_else(|_| JoinToken::generate(ca_fingerprint));
    token.ca_fingerprint = Some(ca_fingerprint.to_string());
    if text.trim() != token.to_string() {
        berth_fs::write_atomic_private(path, format!("{token}\n").as_bytes()).map_err(
            |source| DefaultTokenError::Io {
                path: path.into(),
                source,
            },
        )?;
    }
    if secretstore::get(srv, &secret_name(&token.id))
        .await?
        .is_none()
    {
        store(
            srv,
            &token,
            None,
            "the default join token (DIR/server/node-token)",
        )
        .await?;
    }
    Ok(token)
}

/// Checks a joining agent's `<id>.<secret>`: 401 for a malformed, unknown, wrong or expired
/// token, with a message saying which.
pub async fn verify(srv: &ApiServer, credential: &str) -> ApiResult<String> {
    let refuse = |why: String| ApiError::new(401, "Unauthorized", why);
    let Some((id, secret)) = crate::jointoken::parse_credential(credential) else {
        return Err(refuse("the join token is malformed".into()));
    };
    let Some(stored) = secretstore::get(srv, &secret_name(&id)).await? else {
        return Err(refuse(format!("the join token {id} is unknown (deleted?)")));
    };
    let hash = secretstore::data(&stored, KEY_SECRET_HASH).unwrap_or_default();
    if stored.get("type").and_then(|t| t.as_str()) != Some(SECRET_TYPE)
        || !secretstore::constant_time_eq(&hash, &crate::jointoken::sha256_hex(&secret))
    {
        return Err(refuse(format!("the join token {id} is not valid")));
    }
    if let Some(exp) = secretstore::data(&stored, KEY_EXPIRATION) {
        if expired(&exp, chrono::Utc::now()) {
            return Err(refuse(format!("the join token {id} expired at {exp}")));
        }
    }
    Ok(id)
}

/// Whether an RFC 3339 expiry is past at `now` (an unreadable one counts as past).
pub fn expired(expiration: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(expiration).map_or(true, |t| t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_compared_with_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert!(expired("2026-01-01T11:59:59Z", now));
        assert!(expired("2026-01-01T12:00:00Z", now));
        assert!(!expired("2026-01-01T12:00:01Z", now));
        assert!(expired("tomorrow", now), "unreadable counts as expired");
    }
}

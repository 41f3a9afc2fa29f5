//! Bearer-token authentication.
//!
//! Credentials: the admin token (`<data>/server/token`, written into the kubeconfig), and per-node
//! credentials issued when an agent joins ([`crate::nodecred`]). Join tokens
//! ([`crate::tokenstore`]) are no API credential: they only buy a node credential at
//! `POST /v1-berth/join` ([`crate::join`]). What a node may do is decided by [`crate::nodeauthz`].

use std::path::Path;

use rand::Rng;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiServer;

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Full access.
    Admin,
    /// The agent of the named node, confined by the Node authorizer.
    Node(String),
}

impl Identity {
    /// The user name in messages (`system:node:<name>` for nodes, as Kubernetes names them).
    pub fn user(&self) -> String {
        match self {
            Identity::Admin => "berth-admin".into(),
            Identity::Node(name) => format!("system:node:{name}"),
        }
    }
}

/// The server's own secrets: the admin token, the key node endpoint tokens derive from, and the
/// CA certificate joining agents fetch.
#[derive(Debug, Clone)]
pub struct Authenticator {
    admin: String,
    endpoint_key: String,
    ca_pem: String,
}

/// Errors reading or writing token files.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {source}")]
pub struct TokenError {
    path: std::path::PathBuf,
    source: std::io::Error,
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    hex::encode(bytes)
}

fn load_or_create_token(path: &Path) -> Result<String, TokenError> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let t = random_token();
    berth_fs::write_atomic_private(path, format!("{t}\n").as_bytes()).map_err(|source| {
        TokenError {
            path: path.into(),
            source,
        }
    })?;
    Ok(t)
}

impl Authenticator {
    /// Loads the admin token and the endpoint key from `dir` (the server dir), creating them on
    /// first start; `ca_pem` is the cluster CA certificate.
    pub fn load_or_create(dir: &Path, ca_pem: &str) -> Result<Self, TokenError> {
        Ok(Authenticator {
            admin: load_or_create_token(&dir.join("token"))?,
            endpoint_key: load_or_create_token(&dir.join("node-endpoint-key"))?,
            ca_pem: ca_pem.to_string(),
        })
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// The cluster CA certificate (PEM), served at `/cacerts`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The token the API server presents to `node`'s endpoint (see [`crate::nodecred`]).
    pub fn endpoint_token(&self, node: &str) -> String {
        crate::nodecred::endpoint_token(&self.endpoint_key, node)
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Maps an `Authorization` header value to an identity; 401 when missing, unknown or revoked.
pub async fn authenticate(srv: &ApiServer, header: Option<&str>) -> ApiResult<Identity> {
    let token = bearer(header).ok_or_else(ApiError::unauthorized)?;
    if crate::secretstore::constant_time_eq(token, &srv.auth.admin) {
        return Ok(Identity::Admin);
    }
    if crate::nodecred::is_credential(token) {
        if let Some(node) = crate::nodecred::verify(srv, token).await? {
            return Ok(Identity::Node(node));
        }
    }
    Err(ApiError::unauthorized())
}

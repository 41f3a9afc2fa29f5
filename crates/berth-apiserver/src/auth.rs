//! Bearer-token authentication and a small authorizer.
//!
//! Tokens live in `<data>/server/`: `token` (the admin token, written into the kubeconfig) and
//! `node-token` (the agents' join token). Each token maps to an [`Identity`] with fixed rights.

use std::path::Path;

use rand::Rng;

use crate::error::ApiError;

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Full access.
    Admin,
    /// A node agent: may touch nodes, leases, pods (+status, +binding) and events, nothing else.
    Node,
}

impl Identity {
    /// The user name in messages.
    pub fn user(&self) -> &'static str {
        match self {
            Identity::Admin => "berth-admin",
            Identity::Node => "system:node",
        }
    }

    /// Whether this identity may use `resource` of `group` with HTTP `method`.
    pub fn allowed(&self, group: &str, resource: &str, method: &http::Method) -> bool {
        match self {
            Identity::Admin => true,
            Identity::Node => {
                let read = matches!(*method, http::Method::GET | http::Method::HEAD);
                matches!(
                    (group, resource),
                    (
                        "",
                        "nodes"
                            | "pods"
                            | "events"
                            | "namespaces"
                            | "services"
                            | "endpoints"
                            | "configmaps"
                            | "secrets"
                    ) | ("coordination.k8s.io", "leases")
                        | ("events.k8s.io", "events") // The service proxy reads every ModelService's service port; it never writes them.
                ) || (read && (group, resource) == ("berth.dev", "modelservices"))
            }
        }
    }
}

/// The token table.
#[derive(Debug, Clone)]
pub struct Authenticator {
    admin: String,
    node: String,
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
    let err = |source| TokenError {
        path: path.into(),
        source,
    };
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let t = random_token();
    std::fs::write(path, format!("{t}\n")).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(t)
}

impl Authenticator {
    /// Loads the tokens from `dir` (the server dir), creating them on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, TokenError> {
        Ok(Authenticator {
            admin: load_or_create_token(&dir.join("token"))?,
            node: load_or_create_token(&dir.join("node-token"))?,
        })
    }

    /// An authenticator with the given tokens (tests).
    pub fn with_tokens(admin: String, node: String) -> Self {
        Authenticator { admin, node }
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// Maps an `Authorization` header value to an identity; 401 when missing or unknown.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Identity, ApiError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        if constant_time_eq(token, &self.admin) {
            Ok(Identity::Admin)
        } else if constant_time_eq(token, &self.node) {
            Ok(Identity::Node)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// Compares without an early exit, so timing does not leak how much of a token matched.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_agents_may_read_but_not_write_modelservices() {
        let node = Identity::Node;
        assert!(node.allowed("berth.dev", "modelservices", &http::Method::GET));
        assert!(!node.allowed("berth.dev", "modelservices", &http::Method::PATCH));
        assert!(!node.allowed("berth.dev", "modelservices", &http::Method::DELETE));
        assert!(node.allowed("", "pods", &http::Method::PATCH));
        assert!(node.allowed("coordination.k8s.io", "leases", &http::Method::PUT));
        assert!(!node.allowed(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            &http::Method::GET
        ));
        assert!(Identity::Admin.allowed("berth.dev", "modelservices", &http::Method::DELETE));
    }
}

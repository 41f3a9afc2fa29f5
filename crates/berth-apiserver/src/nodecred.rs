//! Node credentials: what a joined agent authenticates with from then on, and the token the API
//! server presents to that node's endpoint.
//!
//! A credential is a bearer token `node:<node-name>:<secret>` (Kubernetes would issue a client
//! certificate `CN=system:node:<name>`; a token revokes by deleting one object, needs no CSR
//! flow, and every client berth has speaks it already). The server keeps only its SHA-256, in the
//! Secret `kube-system/node-credential-<node-name>` (type `berth.dev/node-credential`), together
//! with the uid of the Node it belongs to; the Secret is owned by that Node. The credential is
//! valid while the Secret exists and the Node with that uid exists: deleting either revokes it.
//!
//! The node endpoint (logs, exec) token is `HMAC-SHA256(server key, node name)`: the server
//! computes it for each node it calls, and each node learns only its own when joining.

use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::secretstore;
use crate::state::ApiServer;

/// The Secret type of node credentials.
pub const SECRET_TYPE: &str = "berth.dev/node-credential";
/// The credential's prefix.
const PREFIX: &str = "node:";

/// The name of the Secret holding `node`'s credential.
pub fn secret_name(node: &str) -> String {
    format!("node-credential-{node}")
}

/// Whether `name` is a valid Node name (a DNS subdomain).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The Node `name` (created, empty, if missing: the credential is bound to its uid).
async fn ensure_node(srv: &ApiServer, name: &str) -> ApiResult<Value> {
    let r = srv
        .registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let key = r.key(None, name);
    if let Some(kv) = srv.store.get(&key).await? {
        return crate::object::decode(&kv, &r);
    }
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
        "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": crate::object::now()}});
    srv.store
        .create(&key, crate::object::encode(&node, &r)?)
        .await?;
    Ok(node)
}

/// Issues a new credential for node `name` (replacing any earlier one) and returns it.
pub async fn issue(srv: &ApiServer, name: &str) -> ApiResult<String> {
    let node = ensure_node(srv, name).await?;
    let uid = crate::object::meta_str(&node, "uid")
        .unwrap_or_default()
        .to_string();
    let secret: [u8; 24] = rand::rng().random();
    let token = format!("{PREFIX}{name}:{}", hex::encode(secret));
    let hash = crate::jointoken::sha256_hex(&token);
    let owner = json!({"ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]});
    let data = [
        ("node-name", name),
        ("token-sha256", &hash),
        ("node-uid", &uid),
    ];
    secretstore::put(srv, &secret_name(name), SECRET_TYPE, &data, owner).await?;
    Ok(token)
}

/// Whether `token` looks like a node credential (so other token kinds skip the store lookups).
pub fn is_credential(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The node a credential belongs to, if it is valid now.
pub async fn verify(srv: &ApiServer, token: &str) -> ApiResult<Option<String>> {
    let Some((name, _)) = token
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
    else {
        return Ok(None);
    };
    if !valid_node_name(name) {
        return Ok(None);
    }
    let Some(stored) = secretstore::get(srv, &secret_name(name)).await? else {
        return Ok(None);
    };
    let hash = secretstore::data(&stored, "token-sha256").unwrap_or_default();
    if stored.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
        || !secretstore::constant_time_eq(&hash, &crate::jointoken::sha256_hex(token))
    {
        return Ok(None);
    }
    let Some(nodes) = srv.registry.lookup("", "v1", "nodes") else {
        return Ok(None);
    };
    let Some(kv) = srv.store.get(&nodes.key(None, name)).await? else {
        return Ok(None);
    };
    let node = crate::object::decode(&kv, &nodes)?;
    let bound = secretstore::data(&stored, "node-uid").unwrap_or_default();
    Ok((crate::object::meta_str(&node, "uid") == Some(bound.as_str())).then(|| name.to_string()))
}

/// The token the API server presents to `node`'s endpoint: HMAC-SHA256 of the name under `key`.
pub fn endpoint_token(key: &str, node: &str) -> String {
    const BLOCK: usize = 64;
    let mut k = key.as_bytes().to_vec();
    if k.len() > BLOCK {
        k = Sha256::digest(&k).to_vec();
    }
    k.resize(BLOCK, 0);
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(node.as_bytes())
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_tokens_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            endpoint_token("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(endpoint_token("k", "n1"), endpoint_token("k", "n2"));
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(valid_node_name("n1"));
        assert!(valid_node_name("worker-2.example"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("N1"));
        assert!(!valid_node_name("a:b"));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name("a..b"));
    }
}

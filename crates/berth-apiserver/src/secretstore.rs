//! Secrets in `kube-system` that the server itself reads and writes straight in the store: join
//! tokens ([`crate::tokenstore`]) and node credentials ([`crate::nodecred`]).

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::ApiServer;

/// The namespace of the server's own Secrets.
pub const NAMESPACE: &str = "kube-system";

fn secrets(srv: &ApiServer) -> ApiResult<std::sync::Arc<crate::resources::ResourceInfo>> {
    srv.registry
        .lookup("", "v1", "secrets")
        .ok_or_else(|| ApiError::internal("secrets are not served"))
}

/// Reads Secret `name` of `kube-system`.
pub async fn get(srv: &ApiServer, name: &str) -> ApiResult<Option<Value>> {
    let r = secrets(srv)?;
    let Some(kv) = srv.store.get(&r.key(Some(NAMESPACE), name)).await? else {
        return Ok(None);
    };
    crate::object::decode(&kv, &r).map(Some)
}

/// Writes Secret `name` of `kube-system` with `type_` and string `data` (base64-encoded here),
/// replacing one of that name; `extra_meta` is merged into its metadata (ownerReferences).
pub async fn put(
    srv: &ApiServer,
    name: &str,
    type_: &str,
    data: &[(&str, &str)],
    extra_meta: Value,
) -> ApiResult<()> {
    let r = secrets(srv)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(b64.encode(v))))
        .collect();
    let mut obj = json!({"apiVersion": "v1", "kind": "Secret", "type": type_, "data": data,
        "metadata": {"name": name, "namespace": NAMESPACE,
            "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": crate::object::now()}});
    if let (Some(meta), Some(extra)) = (obj["metadata"].as_object_mut(), extra_meta.as_object()) {
        meta.extend(extra.clone());
    }
    let key = r.key(Some(NAMESPACE), name);
    let value = crate::object::encode(&obj, &r)?;
    match srv.store.get(&key).await? {
        Some(kv) => srv.store.update(&key, value, kv.mod_revision).await?,
        None => srv.store.create(&key, value).await?,
    };
    Ok(())
}

/// The decoded string value of `data[key]` of a Secret.
pub fn data(secret: &Value, key: &str) -> Option<String> {
    let raw = secret.get("data")?.get(key)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    String::from_utf8(bytes).ok()
}

/// Compares without an early exit, so timing does not leak how much of a secret matched.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

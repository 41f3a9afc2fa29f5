//! Object codec between the store and the wire, and metadata helpers.
//!
//! Objects are stored as JSON without `metadata.resourceVersion` (the store's modification revision
//! is the resourceVersion, filled in on every read). events.k8s.io/v1 Events are stored as core/v1.

use berth_store::KeyValue;
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::resources::{Conversion, ResourceInfo};

/// The current time as RFC 3339 UTC with whole seconds, like kube-apiserver.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decodes a stored object into its served form for `r`.
pub fn decode(kv: &KeyValue, r: &ResourceInfo) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(to_wire(obj, r))
}

/// Converts a stored-form object (as JSON) into the form served for `r`.
pub fn to_wire(mut obj: Value, r: &ResourceInfo) -> Value {
    if r.conversion == Conversion::EventsV1 {
        obj = rename_fields(obj, EVENT_FIELD_MAP.iter().map(|(v1, core)| (*core, *v1)));
    }
    obj["apiVersion"] = Value::String(r.api_version());
    obj["kind"] = Value::String(r.kind.clone());
    obj
}

/// Largest stored object: etcd's default `--max-request-bytes` (1.5 MiB), which is what limits
/// objects in Kubernetes.
pub const MAX_OBJECT: usize = 1024 * 1024 * 3 / 2;

/// The 413 kube-apiserver answers when etcd refuses a write as too large.
pub fn too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        "etcdserver: request is too large",
    )
}

/// Encodes an object for storage (no resourceVersion; stored form of the resource). Every write
/// (create, update, patch, apply, status, finalizers) encodes here, so this is where objects over
/// [`MAX_OBJECT`] are refused with [`too_large`].
pub fn encode(obj: &Value, r: &ResourceInfo) -> ApiResult<Vec<u8>> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if r.conversion == Conversion::EventsV1 {
        obj = rename_fields(obj, EVENT_FIELD_MAP.iter().copied());
        obj["apiVersion"] = json!("v1");
    }
    let bytes = serde_json::to_vec(&obj).map_err(ApiError::internal)?;
    if bytes.len() > MAX_OBJECT {
        return Err(too_large());
    }
    Ok(bytes)
}

/// events.k8s.io/v1 field -> core/v1 field.
const EVENT_FIELD_MAP: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename_fields<'a>(mut obj: Value, map: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (from, to) in map {
            if let Some(v) = m.remove(from) {
                m.insert(to.to_string(), v);
            }
        }
    }
    obj
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, rev: i64) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(rev.to_string()));
}

/// `metadata` as a mutable map (created if missing or not an object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        // Both levels were made objects just above.
        None => unreachable!("metadata is an object"),
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The object's name.
pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

/// The object's `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `prefix` + 5 random lowercase alphanumerics (generateName).
pub fn generate_name(prefix: &str) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Checks a name is a DNS-1123 subdomain (what most kinds require); the causes name `metadata.name`.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    })
}

/// The object minus `metadata` (and `status` when `ignore_status`), for generation comparisons.
pub fn spec_part(obj: &Value, ignore_status: bool) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if ignore_status {
            m.remove("status");
        }
    }
    o
}

/// Reads a simple JSONPath like `.spec.replicas`.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(obj, |cur, seg| cur.get(seg))
}

/// Writes a simple JSONPath like `.spec.replicas`, creating objects on the way.
pub fn set_path(obj: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i + 1 == segs.len() {
            cur[*seg] = value;
            return;
        }
        cur = &mut cur[*seg];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn events_round_trip_between_versions() {
        let reg = Registry::with_builtins();
        let v1 = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        let core = reg.lookup("", "v1", "events").unwrap();
        let ev = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e","resourceVersion":"9"},
            "regarding":{"kind":"Pod","name":"p"},"note":"hello","reason":"Started"});
        let stored = encode(&ev, &v1).unwrap();
        let kv = KeyValue {
            key: "k".into(),
            value: stored,
            create_revision: 3,
            mod_revision: 4,
        };
        let as_core = decode(&kv, &core).unwrap();
        assert_eq!(as_core["involvedObject"]["name"], "p");
        assert_eq!(as_core["message"], "hello");
        assert_eq!(as_core["apiVersion"], "v1");
        assert_eq!(as_core["metadata"]["resourceVersion"], "4");
        let back = decode(&kv, &v1).unwrap();
        assert_eq!(back["note"], "hello");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }

    #[test]
    fn paths_and_names() {
        let mut o = json!({});
        set_path(&mut o, ".spec.replicas", json!(3));
        assert_eq!(get_path(&o, ".spec.replicas"), Some(&json!(3)));
        assert!(name_problem("churn-model").is_none());
        assert!(name_problem("Bad_Name").is_some());
    }
}

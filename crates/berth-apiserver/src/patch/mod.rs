//! Patch engines: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch for
//! built-in kinds ([`strategic`]) and server-side apply with managedFields ([`apply`](mod@apply)).
//!
//! Everything here is pure: `serde_json::Value` in, `Value` out, no I/O. Errors carry the HTTP
//! status the REST layer should answer with ([`PatchError::status_code`]).

pub mod apply;
pub mod fields;
pub mod keys;
pub mod strategic;

use serde_json::Value;

pub use apply::{
    ApplyError, Conflict, FieldManagerEntry, Operation, Writer, apply, record_update, unchanged,
};
pub use fields::{FieldPath, FieldSet, PathElement};
pub use keys::{
    ListType, SmpList, builtin_list_type, list_types, schema_list_type, smp_list_strategy,
};
pub use strategic::strategic_merge;

/// Why a (non-apply) patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not valid JSON, or not the shape its media type requires (400).
    #[error("error decoding patch: {0}")]
    Decode(String),
    /// A JSON patch operation failed, e.g. a `test` that did not match (422 Invalid).
    #[error("the server rejected our request due to an error in our request: {0}")]
    Apply(String),
    /// A strategic merge patch list item lacks the list's merge key (400).
    #[error("map: {item} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The offending list item, as JSON.
        item: String,
        /// The merge key the list is declared with.
        key: String,
    },
    /// An unknown or misplaced `$patch`/`$retainKeys`/... directive (400).
    #[error("invalid strategic merge patch directive: {0}")]
    Directive(String),
}

impl PatchError {
    /// The HTTP status code kube-apiserver answers with for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Apply(_) => 422,
            _ => 400,
        }
    }

    /// The metav1.Status reason matching [`Self::status_code`].
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::Apply(_) => "Invalid",
            _ => "BadRequest",
        }
    }
}

/// Applies an RFC 6902 JSON patch document (`body` is the raw JSON array) to `target`.
pub fn json_patch(target: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?;
    let mut out = target.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::Apply(e.to_string()))?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch (`body` is the raw JSON document) to `target`.
pub fn merge_patch(target: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?;
    let mut out = target.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_test_failure_is_422_and_leaves_target_alone() {
        let t = json!({"metadata":{"finalizers":["a"]}});
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":["b"]},{"op":"add","path":"/metadata/finalizers/-","value":"c"}]"#;
        let err = json_patch(&t, body).unwrap_err();
        assert_eq!(err.status_code(), 422);
        assert_eq!(err.reason(), "Invalid");
        let ok = br#"[{"op":"test","path":"/metadata/finalizers","value":["a"]},{"op":"add","path":"/metadata/finalizers/-","value":"c"}]"#;
        assert_eq!(
            json_patch(&t, ok).unwrap()["metadata"]["finalizers"],
            json!(["a", "c"])
        );
        assert_eq!(t["metadata"]["finalizers"], json!(["a"]));
    }

    #[test]
    fn json_patch_garbage_is_400() {
        let err = json_patch(&json!({}), b"{not json").unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(&json!({}), br#"{"op":"add"}"#).unwrap_err();
        assert_eq!(err.status_code(), 400, "a JSON patch must be an array");
    }

    #[test]
    fn merge_patch_deletes_nulls_and_replaces_lists() {
        let t = json!({"spec":{"replicas":1,"args":["a","b"],"x":{"y":1}}});
        let out = merge_patch(&t, br#"{"spec":{"replicas":3,"args":["c"],"x":null}}"#).unwrap();
        assert_eq!(out, json!({"spec":{"replicas":3,"args":["c"]}}));
        assert_eq!(merge_patch(&t, b"[").unwrap_err().status_code(), 400);
    }
}

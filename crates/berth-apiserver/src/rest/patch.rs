//! PATCH of an object or its status/scale subresource: JSON patch, merge patch, strategic merge
//! patch (built-in kinds only) and server-side apply.

use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::write::{admit, commit, create_object, merge_update};
use super::{Ctx, check_type, json_response, parse_body};
use crate::error::{ApiError, ApiResult};
use crate::object;

/// The patch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply.
    Apply,
}

impl PatchType {
    /// From a Content-Type; 415 for anything else.
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        match ct {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies a non-apply patch document to `target`.
pub fn apply_patch(pt: PatchType, target: &Value, body: &Bytes) -> ApiResult<Value> {
    let mut out = target.clone();
    match pt {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut out, &ops).map_err(|e| ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}")))?;
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut out, &p);
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            out = crate::patching::strategic_merge(target, &p)?;
        }
        PatchType::Apply => return Err(ApiError::internal("apply is not a plain patch")),
    }
    Ok(out)
}

/// PATCH on an object or subresource (`sub` = `status` or `None`; scale goes through [`super::sub`]).
pub async fn patch(ctx: &Ctx, body: &Bytes, sub: Option<&str>) -> ApiResult<Response> {
    let pt = PatchType::from_content_type(&ctx.content_type())?;
    if pt == PatchType::Strategic && !ctx.r.builtin {
        return Err(ApiError::unsupported_media_type("application/strategic-merge-patch+json"));
    }
    if pt == PatchType::Apply {
        return apply(ctx, body, sub).await;
    }
    if ctx.query.flag("force") {
        return Err(ApiError::bad_request("force may only be specified with apply patches"));
    }
    let key = ctx.key()?;
    for _ in 0..5 {
        let kv = ctx.srv.store.get(&key).await?.ok_or_else(|| ApiError::not_found(&ctx.r, ctx.name()))?;
        let old = object::decode(&kv, &ctx.r)?;
        let mut patched = apply_patch(pt, &old, body)?;
        let precondition = object::meta_str(&patched, "resourceVersion").map(String::from);
        let explicit = precondition.as_deref() != object::meta_str(&old, "resourceVersion");
        if explicit && precondition.is_some() {
            return Err(ApiError::conflict(&ctx.r, ctx.name()));
        }
        check_type(&ctx.r, &mut patched)?;
        if object::name(&patched) != Some(ctx.name()) {
            return Err(ApiError::bad_request("the name of the object cannot be changed by a patch"));
        }
        let mut merged = merge_update(ctx, &old, patched, sub)?;
        let warnings = admit(ctx, &mut merged)?;
        match commit(ctx, &key, kv.mod_revision, merged, sub, &old).await {
            Ok(stored) => return Ok(json_response(200, &stored, &warnings)),
            // Somebody wrote in between: patches without a precondition are retried on fresh state.
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&ctx.r, ctx.name()))
}

/// Server-side apply (`application/apply-patch+yaml`).
async fn apply(ctx: &Ctx, body: &Bytes, sub: Option<&str>) -> ApiResult<Response> {
    let manager = ctx
        .query
        .get("fieldManager")
        .ok_or_else(|| ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))?
        .to_string();
    let mut applied = parse_body(body)?;
    check_type(&ctx.r, &mut applied)?;
    if applied["metadata"].get("managedFields").is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    // A body without a name (common for status applies) addresses the object in the URL.
    match object::name(&applied) {
        None => {
            object::meta_mut(&mut applied).insert("name".into(), Value::String(ctx.name().to_string()));
        }
        Some(n) if n != ctx.name() => {
            return Err(ApiError::bad_request("the name of the object in the apply body does not match the URL"));
        }
        Some(_) => {}
    }
    if ctx.r.namespaced {
        if let Some(ns) = object::meta_str(&applied, "namespace") {
            if Some(ns) != ctx.namespace() {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
        }
        object::meta_mut(&mut applied).insert("namespace".into(), Value::String(ctx.namespace().unwrap_or_default().into()));
    }
    let force = ctx.query.flag("force");
    let api_version = ctx.r.api_version();
    let key = ctx.key()?;
    for _ in 0..5 {
        let Some(kv) = ctx.srv.store.get(&key).await? else {
            if sub.is_some() {
                return Err(ApiError::not_found(&ctx.r, ctx.name()));
            }
            let mut obj = applied.clone();
            crate::patching::apply_to_new(&mut obj, &manager, &api_version, &object::now());
            let (code, stored, warnings) = create_object(ctx, obj, "Apply").await?;
            return Ok(json_response(code, &stored, &warnings));
        };
        let old = object::decode(&kv, &ctx.r)?;
        let live = crate::patching::server_side_apply(&old, &applied, &manager, &api_version, sub, force, &object::now(), &ctx.r)?;
        let mut merged = merge_update(ctx, &old, live, sub)?;
        let warnings = admit(ctx, &mut merged)?;
        match super::write::commit_as(ctx, &key, kv.mod_revision, merged, &old, false).await {
            Ok(stored) => return Ok(json_response(200, &stored, &warnings)),
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&ctx.r, ctx.name()))
}

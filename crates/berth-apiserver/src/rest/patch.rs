//! PATCH of an object or its status/scale subresource: JSON patch, merge patch, strategic merge
//! patch (built-in kinds only) and server-side apply.

use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::retry::{Attempt, retry_on_conflict};
use super::write::{admit, commit, create_object, merge_update};
use super::{Ctx, check_type, json_response, parse_body};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::patch::{self, ApplyError, PatchError, Writer};
use crate::podsecurity;

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

/// Applies a non-apply patch document to `target` (strategic merge picks list strategies by the
/// target's `kind`).
pub fn apply_patch(pt: PatchType, target: &Value, body: &Bytes) -> ApiResult<Value> {
    let kind = target
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let out = match pt {
        PatchType::Json => patch::json_patch(target, body),
        PatchType::Merge => patch::merge_patch(target, body),
        PatchType::Strategic => serde_json::from_slice::<Value>(body)
            .map_err(|e| PatchError::Decode(e.to_string()))
            .and_then(|p| patch::strategic_merge(kind, target, &p)),
        PatchType::Apply => return Err(ApiError::internal("apply is not a plain patch")),
    };
    out.map_err(|e| ApiError::new(e.status_code(), e.reason(), e.to_string()))
}

/// PATCH on an object or subresource (`sub` = `status` or `None`; scale goes through [`super::sub`]).
pub async fn patch(ctx: &Ctx, body: &Bytes, sub: Option<&str>) -> ApiResult<Response> {
    let pt = PatchType::from_content_type(&ctx.content_type())?;
    if pt == PatchType::Strategic && !ctx.r.builtin {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json",
        ));
    }
    if pt == PatchType::Apply {
        return apply(ctx, body, sub).await;
    }
    if ctx.query.flag("force") {
        return Err(ApiError::bad_request(
            "force may only be specified with apply patches",
        ));
    }
    let key = &ctx.key()?;
    retry_on_conflict(5, &ctx.r, ctx.name(), move || async move {
        let kv = ctx
            .srv
            .store
            .get(key)
            .await?
            .ok_or_else(|| ApiError::not_found(&ctx.r, ctx.name()))?;
        let old = object::decode(&kv, &ctx.r)?;
        let mut patched = apply_patch(pt, &old, body)?;
        let precondition = object::meta_str(&patched, "resourceVersion").map(String::from);
        let explicit = precondition.as_deref() != object::meta_str(&old, "resourceVersion");
        if explicit && precondition.is_some() {
            return Err(ApiError::conflict(&ctx.r, ctx.name()));
        }
        check_type(&ctx.r, &mut patched)?;
        if object::name(&patched) != Some(ctx.name()) {
            return Err(ApiError::bad_request(
                "the name of the object cannot be changed by a patch",
            ));
        }
        let mut merged = merge_update(ctx, &old, patched, sub)?;
        let warnings = admit(ctx, &mut merged)?;
        podsecurity::admit(ctx, Some(&old), &merged, sub).await?;
        match commit(ctx, key, kv.mod_revision, merged, sub, &old).await {
            Ok(stored) => Ok(Attempt::Done(json_response(200, &stored, &warnings))),
            // Somebody wrote in between: patches without a precondition are retried on fresh state.
            Err(e) if e.code == 409 && e.reason == "Conflict" => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    })
    .await
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
            object::meta_mut(&mut applied)
                .insert("name".into(), Value::String(ctx.name().to_string()));
        }
        Some(n) if n != ctx.name() => {
            return Err(ApiError::bad_request(
                "the name of the object in the apply body does not match the URL",
            ));
        }
        Some(_) => {}
    }
    if ctx.r.namespaced {
        if let Some(ns) = object::meta_str(&applied, "namespace") {
            if Some(ns) != ctx.namespace() {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        object::meta_mut(&mut applied).insert(
            "namespace".into(),
            Value::String(ctx.namespace().unwrap_or_default().into()),
        );
    }
    let force = ctx.query.flag("force");
    let part = applied_part(applied, sub, ctx.r.status_subresource);
    let api_version = ctx.r.api_version();
    let list_types = patch::list_types(&ctx.r.kind, ctx.r.schema.as_ref());
    let key = &ctx.key()?;
    let (manager, api_version, part, list_types) = (&manager, &api_version, &part, &list_types);
    retry_on_conflict(5, &ctx.r, ctx.name(), move || async move {
        let now = object::now();
        let w = Writer {
            manager,
            api_version,
            time: &now,
            subresource: sub,
        };
        let Some(kv) = ctx.srv.store.get(key).await? else {
            if sub.is_some() {
                return Err(ApiError::not_found(&ctx.r, ctx.name()));
            }
            let obj = patch::apply(None, part, w, force, list_types).map_err(apply_error)?;
            let (code, stored, warnings) = create_object(ctx, obj, "Apply").await?;
            return Ok(Attempt::Done(json_response(code, &stored, &warnings)));
        };
        let old = object::decode(&kv, &ctx.r)?;
        let live = patch::apply(Some(&old), part, w, force, list_types).map_err(apply_error)?;
        let mut merged = merge_update(ctx, &old, live, sub)?;
        let warnings = admit(ctx, &mut merged)?;
        podsecurity::admit(ctx, Some(&old), &merged, sub).await?;
        match super::write::commit_as(ctx, key, kv.mod_revision, merged, &old, false).await {
            Ok(stored) => Ok(Attempt::Done(json_response(200, &stored, &warnings))),
            Err(e) if e.code == 409 && e.reason == "Conflict" => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    })
    .await
}

/// The part of an applied configuration a manager owns through `sub`: only `status` through
/// `/status`; everything but `status` on the main resource of a kind with a status subresource.
/// A resourceVersion in the body is not part of the configuration (it is not a field anyone owns).
fn applied_part(mut applied: Value, sub: Option<&str>, status_subresource: bool) -> Value {
    if let Some(m) = applied.as_object_mut() {
        if sub == Some("status") {
            m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "status"));
        } else if status_subresource {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
    }
    applied
}

/// An apply refusal as the API error kube-apiserver answers with (409 lists the conflicting
/// fields as `FieldManagerConflict` causes).
fn apply_error(e: ApplyError) -> ApiError {
    match &e {
        ApplyError::Conflicts(_) => ApiError::new(409, "Conflict", e.to_string())
            .with_details_raw(json!({"causes": e.causes()})),
        ApplyError::Invalid(_) => ApiError::bad_request(e.to_string()),
    }
}

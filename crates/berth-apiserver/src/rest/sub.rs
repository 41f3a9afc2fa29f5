//! The scale subresource (autoscaling/v1 Scale) and pods/binding.

use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::patch::{PatchType, apply_patch};
use super::retry::{Attempt, retry_on_conflict};
use super::write::commit;
use super::{Ctx, json_response, parse_body};
use crate::error::{ApiError, ApiResult};
use crate::object;

fn scale_of(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let paths = ctx.r.scale.as_ref().ok_or_else(ApiError::no_route)?;
    let m = &obj["metadata"];
    let mut status = json!({"replicas": object::get_path(obj, &paths.status_replicas_path).and_then(Value::as_i64).unwrap_or(0)});
    if let Some(sel) = paths
        .label_selector_path
        .as_deref()
        .and_then(|p| object::get_path(obj, p))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(sel);
    }
    Ok(json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                     "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": object::get_path(obj, &paths.spec_replicas_path).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    }))
}

/// GET/PUT/PATCH on `<object>/scale`.
pub async fn scale(ctx: &Ctx, method: &http::Method, body: &Bytes) -> ApiResult<Response> {
    let paths = ctx.r.scale.clone().ok_or_else(ApiError::no_route)?;
    let (key, paths) = (&ctx.key()?, &paths);
    retry_on_conflict(5, &ctx.r, ctx.name(), move || async move {
        let kv = ctx
            .srv
            .store
            .get(key)
            .await?
            .ok_or_else(|| ApiError::not_found(&ctx.r, ctx.name()))?;
        let old = object::decode(&kv, &ctx.r)?;
        let current = scale_of(ctx, &old)?;
        let wanted = match *method {
            http::Method::GET => return Ok(Attempt::Done(json_response(200, &current, &[]))),
            http::Method::PUT => {
                let s = parse_body(body)?;
                if let Some(rv) = s["metadata"]["resourceVersion"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                {
                    if rv != kv.mod_revision.to_string() {
                        return Err(ApiError::conflict(&ctx.r, ctx.name()));
                    }
                }
                s
            }
            http::Method::PATCH => {
                let pt = PatchType::from_content_type(&ctx.content_type())?;
                if matches!(pt, PatchType::Apply | PatchType::Strategic) {
                    let p = parse_body(body)?;
                    let mut out = current.clone();
                    json_patch::merge(&mut out, &p);
                    out
                } else {
                    apply_patch(pt, &current, body)?
                }
            }
            _ => return Err(ApiError::method_not_allowed()),
        };
        let replicas = wanted["spec"]["replicas"].as_i64().ok_or_else(|| {
            ApiError::invalid(
                &ctx.r,
                ctx.name(),
                vec![crate::error::Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.replicas".into(),
                }],
            )
        })?;
        if replicas < 0 {
            return Err(ApiError::invalid(
                &ctx.r,
                ctx.name(),
                vec![crate::error::Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        let mut new = old.clone();
        object::set_path(&mut new, &paths.spec_replicas_path, json!(replicas));
        if new != old {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object::meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        match commit(ctx, key, kv.mod_revision, new, Some("scale"), &old).await {
            Ok(stored) => Ok(Attempt::Done(json_response(
                200,
                &scale_of(ctx, &stored)?,
                &[],
            ))),
            Err(e) if e.code == 409 && *method == http::Method::PATCH => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    })
    .await
}

/// POST `pods/<name>/binding`: assigns the pod to a node (409 if already assigned).
pub async fn binding(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let b = parse_body(body)?;
    if let Some(n) = object::name(&b) {
        if n != ctx.name() {
            return Err(ApiError::bad_request(format!(
                "the name of the binding ({n}) does not match the name of the pod ({})",
                ctx.name()
            )));
        }
    }
    let node = b["target"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target name is required"))?;
    let (key, b) = (&ctx.key()?, &b);
    retry_on_conflict(5, &ctx.r, ctx.name(), move || async move {
        let kv = ctx
            .srv
            .store
            .get(key)
            .await?
            .ok_or_else(|| ApiError::not_found(&ctx.r, ctx.name()))?;
        let old = object::decode(&kv, &ctx.r)?;
        if let Some(cur) = old["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{}\": pod {} is already assigned to node \"{cur}\"",
                    ctx.name(),
                    ctx.name()
                ),
            ));
        }
        if old["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "pod {} is being deleted, cannot be assigned to a host",
                    ctx.name()
                ),
            ));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        if let Some(ann) = b["metadata"]["annotations"].as_object() {
            let meta = object::meta_mut(&mut new);
            let mut merged = meta
                .get("annotations")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            merged.extend(ann.clone());
            meta.insert("annotations".into(), Value::Object(merged));
        }
        let mut conds: Vec<Value> = new["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": object::now()}),
        );
        new["status"]["conditions"] = Value::Array(conds);
        match commit(ctx, key, kv.mod_revision, new, Some("binding"), &old).await {
            Ok(_) => {
                let s = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201});
                Ok(Attempt::Done(json_response(201, &s, &[])))
            }
            Err(e) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    })
    .await
}

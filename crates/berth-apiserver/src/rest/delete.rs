//! DELETE of one object (finalizers, graceful pod deletion, preconditions, propagation) and
//! DELETE of a collection.

use axum::response::Response;
use berth_store::StoreError;
use bytes::Bytes;
use serde_json::{Value, json};

use super::read::{Selectors, list_page};
use super::retry::{Attempt, retry_on_conflict};
use super::{Ctx, json_response, success_status};
use crate::error::{ApiError, ApiResult};
use crate::{crd, gc, object};

/// The parts of DeleteOptions the server honours.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `propagationPolicy` (`Background`, `Foreground`, `Orphan`).
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// From the body (may be empty) and the query.
    pub fn parse(ctx: &Ctx, body: &Bytes) -> ApiResult<Self> {
        let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let mut o = DeleteOptions {
            grace: b["gracePeriodSeconds"].as_i64(),
            propagation: b["propagationPolicy"].as_str().map(String::from),
            uid: b["preconditions"]["uid"].as_str().map(String::from),
            resource_version: b["preconditions"]["resourceVersion"]
                .as_str()
                .map(String::from),
        };
        if let Some(g) = ctx.query.int("gracePeriodSeconds")? {
            o.grace = Some(g);
        }
        if let Some(p) = ctx.query.get("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if b["orphanDependents"].as_bool() == Some(true) || ctx.query.flag("orphanDependents") {
            o.propagation = Some("Orphan".into());
        }
        Ok(o)
    }
}

/// DELETE on an object.
pub async fn delete(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let opts = DeleteOptions::parse(ctx, body)?;
    let (code, body) = delete_one(ctx, ctx.name(), &opts).await?;
    Ok(json_response(code, &body, &[]))
}

/// The grace period of a pod deletion (0 for unscheduled or finished pods).
fn pod_grace(obj: &Value, opts: &DeleteOptions) -> i64 {
    let phase = obj["status"]["phase"].as_str().unwrap_or_default();
    if obj["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
        || matches!(phase, "Succeeded" | "Failed")
    {
        return 0;
    }
    opts.grace
        .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

/// Deletes (or starts deleting) one object by name; returns (code, body).
pub async fn delete_one(ctx: &Ctx, name: &str, opts: &DeleteOptions) -> ApiResult<(u16, Value)> {
    let r = &ctx.r;
    let key = &r.key(ctx.namespace(), name);
    retry_on_conflict(10, r, name, move || async move {
        let kv = ctx
            .srv
            .store
            .get(key)
            .await?
            .ok_or_else(|| ApiError::not_found(r, name))?;
        let obj = object::decode(&kv, r)?;
        if opts
            .uid
            .as_deref()
            .is_some_and(|u| Some(u) != object::meta_str(&obj, "uid"))
            || opts
                .resource_version
                .as_deref()
                .is_some_and(|v| v != kv.mod_revision.to_string())
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed",
                    r.qualified_plural(),
                    name
                ),
            ));
        }
        let mut fins = object::finalizers(&obj);
        match opts.propagation.as_deref() {
            Some("Foreground")
                if !fins.iter().any(|f| f == "foregroundDeletion")
                    && gc::has_dependents(&ctx.srv, &obj).await =>
            {
                fins.push("foregroundDeletion".into())
            }
            Some("Orphan") => gc::orphan_dependents(&ctx.srv, &obj).await,
            _ => {}
        }
        let grace = if r.plural == "pods" && r.builtin {
            pod_grace(&obj, opts)
        } else {
            0
        };
        let already_deleting = obj["metadata"].get("deletionTimestamp").is_some();
        if !fins.is_empty() || grace > 0 {
            if already_deleting && object::finalizers(&obj) == fins && grace > 0 {
                return Ok(Attempt::Done((200, obj)));
            }
            let mut updated = obj.clone();
            let meta = object::meta_mut(&mut updated);
            meta.insert("finalizers".into(), json!(fins));
            if !already_deleting {
                let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if r.has_generation {
                    let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                    meta.insert("generation".into(), json!(g));
                }
            }
            if ctx.query.dry_run() {
                return Ok(Attempt::Done((200, updated)));
            }
            return match ctx
                .srv
                .store
                .update(key, object::encode(&updated, r)?, kv.mod_revision)
                .await
            {
                Ok(kv) => {
                    let stored = object::decode(&kv, r)?;
                    if fins.iter().any(|f| f == "foregroundDeletion") {
                        gc::spawn_foreground(ctx.srv.clone(), r.clone(), stored.clone());
                    }
                    Ok(Attempt::Done((200, stored)))
                }
                Err(StoreError::Conflict { .. }) => Ok(Attempt::Conflict),
                Err(e) => Err(e.into()),
            };
        }
        if ctx.query.dry_run() {
            let status = success_status(r, name, object::meta_str(&obj, "uid"));
            return Ok(Attempt::Done((200, status)));
        }
        match ctx.srv.store.delete(key, kv.mod_revision).await {
            Ok((rev, _)) => {
                let mut last = obj.clone();
                object::set_resource_version(&mut last, rev);
                crd::after_delete(&ctx.srv, r, &last);
                let body = if r.return_deleted_object {
                    last
                } else {
                    success_status(r, name, object::meta_str(&obj, "uid"))
                };
                Ok(Attempt::Done((200, body)))
            }
            Err(StoreError::Conflict { .. }) => Ok(Attempt::Conflict),
            Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(r, name)),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// DELETE on a collection (with selectors).
pub async fn delete_collection(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let opts = DeleteOptions::parse(ctx, body)?;
    let sel = Selectors::from_ctx(ctx)?;
    let page = list_page(ctx, &sel, None).await?;
    let mut items = Vec::new();
    for obj in page.items {
        let name = object::name(&obj).unwrap_or_default().to_string();
        let ns = object::meta_str(&obj, "namespace").map(String::from);
        let sub_ctx = Ctx {
            srv: ctx.srv.clone(),
            r: ctx.r.clone(),
            path: crate::path::ResourcePath {
                namespace: ns,
                name: Some(name.clone()),
                ..ctx.path.clone()
            },
            query: ctx.query.clone(),
            headers: ctx.headers.clone(),
            identity: ctx.identity.clone(),
        };
        match delete_one(&sub_ctx, &name, &opts).await {
            Ok(_) => items.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({"kind": ctx.r.list_kind, "apiVersion": ctx.r.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()}, "items": items});
    Ok(json_response(200, &body, &[]))
}

//! CREATE and UPDATE, and the admission steps every write shares (pruning, field validation,
//! schema and kind validation, server-owned metadata, generation, managedFields).

use axum::response::Response;
use berth_store::StoreError;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Ctx, check_type, json_response, parse_body};
use crate::crd;
use crate::error::{ApiError, ApiResult, Cause};
use crate::object;
use crate::patch::{self, Writer};
use crate::podsecurity;
use crate::query::FieldValidation;
use crate::quota;

/// Prunes, checks unknown fields and validates `obj`; returns Warning texts.
pub fn admit(ctx: &Ctx, obj: &mut Value) -> ApiResult<Vec<String>> {
    let fv = FieldValidation::from_query(&ctx.query)?;
    let mut warnings = Vec::new();
    if let Some(schema) = &ctx.r.schema {
        let unknown = crate::schema::prune(obj, schema);
        if !unknown.is_empty() {
            match fv {
                FieldValidation::Strict => {
                    let list: Vec<String> = unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        ctx.r.kind,
                        ctx.r.version,
                        ctx.r.kind,
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => {
                    warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
                }
                FieldValidation::Ignore => {}
            }
        }
    }
    let name = object::name(obj).unwrap_or_default().to_string();
    let mut causes: Vec<Cause> = Vec::new();
    if let Some(p) = object::name_problem(&name) {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: p,
            field: "metadata.name".into(),
        });
    }
    if let Some(schema) = &ctx.r.schema {
        causes.extend(crate::schema::validate(obj, schema));
    }
    if let Some(v) = ctx.srv.validator(&ctx.r.group, &ctx.r.kind) {
        for c in v(obj) {
            if !causes.iter().any(|x| x.field == c.field) {
                causes.push(c);
            }
        }
    }
    if ctx.r.plural == "customresourcedefinitions" && ctx.r.builtin {
        causes.extend(crd::validate(obj));
    }
    if quota::is_quotas(&ctx.r) {
        causes.extend(quota::validate(obj));
    }
    if causes.is_empty() {
        Ok(warnings)
    } else {
        Err(ApiError::invalid(&ctx.r, &name, causes))
    }
}

/// Fills in namespace/name of a new object from the URL; 400 on a mismatch.
fn place(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let meta = object::meta_mut(obj);
    if ctx.r.namespaced {
        let url_ns = ctx
            .path
            .namespace
            .clone()
            .ok_or_else(|| ApiError::bad_request("a namespace must be given in the URL"))?;
        match meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(ns) if ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

async fn ensure_namespace(ctx: &Ctx) -> ApiResult<()> {
    let Some(ns) = ctx.namespace() else {
        return Ok(());
    };
    if ctx
        .srv
        .store
        .get(&format!("/registry/namespaces/{ns}"))
        .await?
        .is_none()
    {
        return Err(
            ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
                .with_details_raw(json!({"name": ns, "kind": "namespaces"})),
        );
    }
    Ok(())
}

/// POST on a collection.
pub async fn create(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let mut obj = parse_body(body)?;
    check_type(&ctx.r, &mut obj)?;
    place(ctx, &mut obj)?;
    let (code, obj, warnings) = create_object(ctx, obj, "Update").await?;
    Ok(json_response(code, &obj, &warnings))
}

/// Creates `obj` (already type-checked and placed); returns (201, stored object, warnings).
pub async fn create_object(
    ctx: &Ctx,
    mut obj: Value,
    operation: &str,
) -> ApiResult<(u16, Value, Vec<String>)> {
    if object::name(&obj).is_none() {
        match object::meta_str(&obj, "generateName").map(String::from) {
            Some(prefix) => {
                object::meta_mut(&mut obj)
                    .insert("name".into(), json!(object::generate_name(&prefix)));
            }
            None => {
                return Err(ApiError::invalid(
                    &ctx.r,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
        }
    }
    ensure_namespace(ctx).await?;
    if !ctx.r.builtin && ctx.r.status_subresource {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    let warnings = admit(ctx, &mut obj)?;
    crate::nodeauthz::admit_create(&ctx.identity, &ctx.r.group, &ctx.r.plural, &obj)?;
    podsecurity::admit(ctx, None, &obj, None).await?;
    // Held until the object is stored: no other create in the namespace is checked meanwhile.
    let admitted = quota::admit(ctx, &obj).await?;
    default_status(ctx, &mut obj);
    quota::initial_status(ctx, &mut obj).await?;
    let now = object::now();
    let manager = ctx.field_manager();
    {
        let meta = object::meta_mut(&mut obj);
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now));
        if ctx.r.has_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        // An apply that creates the object arrives with its manager's entry already computed.
        if operation != "Apply" {
            meta.remove("managedFields");
        }
    }
    if operation == "Update" {
        // Against an empty object every field is a change: the creator's entry owns them all.
        let w = Writer {
            manager: &manager,
            api_version: &ctx.r.api_version(),
            time: &now,
            subresource: None,
        };
        patch::record_update(
            &json!({}),
            &mut obj,
            w,
            &patch::list_types(&ctx.r.kind, ctx.r.schema.as_ref()),
        );
    }
    if ctx.r.plural == "customresourcedefinitions" && ctx.r.builtin {
        crd::default_and_accept(&mut obj);
    }
    let name = object::name(&obj).unwrap_or_default().to_string();
    let key = ctx.r.key(ctx.namespace(), &name);
    if ctx.query.dry_run() {
        if ctx.srv.store.get(&key).await?.is_some() {
            return Err(ApiError::already_exists(&ctx.r, &name));
        }
        return Ok((201, obj, warnings));
    }
    let kv = match ctx
        .srv
        .store
        .create(&key, object::encode(&obj, &ctx.r)?)
        .await
    {
        Ok(kv) => kv,
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(ApiError::already_exists(&ctx.r, &name));
        }
        Err(e) => return Err(e.into()),
    };
    let stored = object::decode(&kv, &ctx.r)?;
    if let Some(a) = admitted {
        a.commit(&ctx.srv).await;
    }
    crd::after_write(&ctx.srv, &ctx.r, &stored);
    Ok((201, stored, warnings))
}

/// Status a new object of some built-in kinds starts with (like kube-apiserver's strategies).
fn default_status(ctx: &Ctx, obj: &mut Value) {
    if !ctx.r.builtin || !ctx.r.group.is_empty() {
        return;
    }
    if ctx.r.plural == "secrets" && obj["type"].as_str().unwrap_or_default().is_empty() {
        obj["type"] = json!("Opaque");
        return;
    }
    let phase = match ctx.r.plural.as_str() {
        "namespaces" => "Active",
        "pods" => "Pending",
        _ => return,
    };
    if obj["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        if !obj["status"].is_object() {
            obj["status"] = json!({});
        }
        obj["status"]["phase"] = json!(phase);
    }
}

/// Applies the update rules to `new` given the stored `old`: server-owned metadata is kept,
/// status/spec split by subresource, generation bumped on spec changes.
pub fn merge_update(ctx: &Ctx, old: &Value, mut new: Value, sub: Option<&str>) -> ApiResult<Value> {
    let r = &ctx.r;
    if sub == Some("status") {
        // Only status changes through /status.
        let mut merged = old.clone();
        merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if merged["status"].is_null() {
            if let Some(m) = merged.as_object_mut() {
                m.remove("status");
            }
        }
        // Field ownership is the one piece of metadata a status write carries (apply records it).
        if let Some(mf) = new["metadata"].get("managedFields") {
            object::meta_mut(&mut merged).insert("managedFields".into(), mf.clone());
        }
        return Ok(merged);
    }
    if r.status_subresource && !(r.builtin && r.plural == "customresourcedefinitions") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let old_meta = &old["metadata"];
    let new_fins: Vec<String> = object::finalizers(&new);
    if old_meta.get("deletionTimestamp").is_some() {
        let old_fins = object::finalizers(old);
        if let Some(added) = new_fins.iter().find(|f| !old_fins.contains(f)) {
            return Err(ApiError::invalid(
                r,
                ctx.name(),
                vec![Cause {
                    reason: "FieldValueForbidden".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
                    ),
                    field: "metadata.finalizers".into(),
                }],
            ));
        }
    }
    let meta = object::meta_mut(&mut new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
    ] {
        match old_meta.get(f) {
            Some(v) => {
                meta.insert(f.into(), v.clone());
            }
            None => {
                meta.remove(f);
            }
        }
    }
    if meta.get("managedFields").is_none() {
        if let Some(mf) = old_meta.get("managedFields") {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    if r.has_generation
        && object::spec_part(old, r.status_subresource)
            != object::spec_part(&new, r.status_subresource)
    {
        let g = old_meta["generation"].as_i64().unwrap_or(0) + 1;
        object::meta_mut(&mut new).insert("generation".into(), json!(g));
    }
    if r.plural == "customresourcedefinitions" && r.builtin {
        crd::default_and_accept(&mut new);
    }
    Ok(new)
}

/// Writes an updated object with compare-and-swap; completes a pending deletion when the last
/// finalizer is gone. Returns the stored object (or the last state if it was deleted).
pub async fn commit(
    ctx: &Ctx,
    key: &str,
    expected: i64,
    mut obj: Value,
    sub: Option<&str>,
    old: &Value,
) -> ApiResult<Value> {
    let (manager, api_version, now) = (ctx.field_manager(), ctx.r.api_version(), object::now());
    let w = Writer {
        manager: &manager,
        api_version: &api_version,
        time: &now,
        subresource: sub,
    };
    patch::record_update(
        old,
        &mut obj,
        w,
        &patch::list_types(&ctx.r.kind, ctx.r.schema.as_ref()),
    );
    commit_as(ctx, key, expected, obj, old, true).await
}

/// Like [`commit`] but without Update bookkeeping (apply records its own entry).
pub async fn commit_as(
    ctx: &Ctx,
    key: &str,
    expected: i64,
    obj: Value,
    old: &Value,
    _update: bool,
) -> ApiResult<Value> {
    if ctx.query.dry_run() {
        return Ok(obj);
    }
    if patch::unchanged(old, &obj) {
        // No-op writes do not bump the resourceVersion (like kube-apiserver), even though a
        // repeated apply restamps its managedFields entry: the stored object stays as it was.
        return Ok(old.clone());
    }
    let kv = match ctx
        .srv
        .store
        .update(key, object::encode(&obj, &ctx.r)?, expected)
        .await
    {
        Ok(kv) => kv,
        Err(StoreError::Conflict { .. }) => return Err(ApiError::conflict(&ctx.r, ctx.name())),
        Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(&ctx.r, ctx.name())),
        Err(e) => return Err(e.into()),
    };
    let stored = object::decode(&kv, &ctx.r)?;
    // An object being deleted goes once its last finalizer is removed — unless it is in a graceful
    // deletion (a Pod with deletionGracePeriodSeconds > 0), which only its node agent ends, with a
    // DELETE of grace 0 after the containers stopped; status writes meanwhile must not end it.
    let graceful = stored["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0)
        > 0;
    if stored["metadata"].get("deletionTimestamp").is_some()
        && object::finalizers(&stored).is_empty()
        && !graceful
    {
        if let Ok((rev, _)) = ctx.srv.store.delete(key, kv.mod_revision).await {
            let mut last = stored.clone();
            object::set_resource_version(&mut last, rev);
            crd::after_delete(&ctx.srv, &ctx.r, &last);
            return Ok(last);
        }
    }
    crd::after_write(&ctx.srv, &ctx.r, &stored);
    Ok(stored)
}

/// PUT on an object (or its status subresource).
pub async fn update(ctx: &Ctx, body: &Bytes, sub: Option<&str>) -> ApiResult<Response> {
    let mut new = parse_body(body)?;
    check_type(&ctx.r, &mut new)?;
    if object::name(&new) != Some(ctx.name()) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            object::name(&new).unwrap_or_default(),
            ctx.name()
        )));
    }
    place(ctx, &mut new)?;
    let key = ctx.key()?;
    let Some(kv) = ctx.srv.store.get(&key).await? else {
        if ctx.r.create_on_update && sub.is_none() {
            let (code, obj, warnings) = create_object(ctx, new, "Update").await?;
            return Ok(json_response(code, &obj, &warnings));
        }
        return Err(ApiError::not_found(&ctx.r, ctx.name()));
    };
    let old = object::decode(&kv, &ctx.r)?;
    match object::meta_str(&new, "resourceVersion") {
        Some("0") | None if !ctx.r.builtin => {
            return Err(ApiError::invalid(
                &ctx.r,
                ctx.name(),
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: 0x0: must be specified for an update".into(),
                    field: "metadata.resourceVersion".into(),
                }],
            ));
        }
        Some(rv) if rv != "0" && rv != kv.mod_revision.to_string() => {
            return Err(ApiError::conflict(&ctx.r, ctx.name()));
        }
        _ => {}
    }
    let mut merged = merge_update(ctx, &old, new, sub)?;
    let warnings = admit(ctx, &mut merged)?;
    podsecurity::admit(ctx, Some(&old), &merged, sub).await?;
    let stored = commit(ctx, &key, kv.mod_revision, merged, sub, &old).await?;
    Ok(json_response(200, &stored, &warnings))
}

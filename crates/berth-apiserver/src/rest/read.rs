//! GET of one object and LIST of a collection (selectors, limit/continue, resourceVersion).

use axum::response::Response;
use base64::Engine;
use berth_store::RangeOptions;
use chrono::Utc;
use serde_json::{Value, json};

use super::{Ctx, json_response};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::selector::{FieldSelector, LabelSelector};
use crate::table::{self, IncludeObject};

/// GET of one object.
pub async fn get(ctx: &Ctx) -> ApiResult<Response> {
    let obj = load(ctx).await?.0;
    let body = if ctx.wants_table() {
        let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
        table::table(
            table::columns_for(&ctx.r),
            std::slice::from_ref(&obj),
            meta,
            include_object(ctx)?,
            Utc::now(),
        )
    } else {
        obj
    };
    Ok(json_response(200, &body, &[]))
}

/// What Table rows carry (`?includeObject=`); 400 for an unknown value.
pub fn include_object(ctx: &Ctx) -> ApiResult<IncludeObject> {
    let v = ctx.query.get("includeObject");
    IncludeObject::parse(v).ok_or_else(|| {
        ApiError::bad_request(format!("includeObject: Unsupported value: \"{}\": supported values: \"None\", \"Metadata\", \"Object\"", v.unwrap_or_default()))
    })
}

/// Reads the object named in the URL with its mod revision; 404 when absent.
pub async fn load(ctx: &Ctx) -> ApiResult<(Value, i64)> {
    let key = ctx.key()?;
    let kv = ctx
        .srv
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(&ctx.r, ctx.name()))?;
    Ok((object::decode(&kv, &ctx.r)?, kv.mod_revision))
}

/// The selectors of a list or watch request.
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Parses both selectors from the query (400 on errors).
    pub fn from_ctx(ctx: &Ctx) -> ApiResult<Self> {
        Ok(Selectors {
            labels: LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(
                ctx.query.get("fieldSelector").unwrap_or_default(),
                &ctx.r,
            )?,
        })
    }

    /// Whether an object matches both.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// Whether they select everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields == FieldSelector::default()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// A page of matching objects at one revision.
pub struct Page {
    /// Matching objects, served form.
    pub items: Vec<Value>,
    /// The snapshot revision.
    pub revision: i64,
    /// The continue token, if more keys remain.
    pub continue_token: Option<String>,
    /// Keys remaining after this page (only meaningful without selectors).
    pub remaining: Option<usize>,
}

/// Reads one page of the collection.
pub async fn list_page(ctx: &Ctx, sel: &Selectors, limit: Option<usize>) -> ApiResult<Page> {
    let prefix = ctx.r.collection_prefix(ctx.namespace());
    let mut opts = RangeOptions {
        limit,
        ..Default::default()
    };
    if let Some(tok) = ctx.query.get("continue") {
        let t = decode_continue(tok)?;
        opts.revision = Some(t.rv);
        opts.start_after = Some(t.start);
    } else if ctx.query.get("resourceVersionMatch") == Some("Exact") {
        let rv = ctx.query.int("resourceVersion")?.ok_or_else(|| {
            ApiError::bad_request("resourceVersionMatch=Exact needs a resourceVersion")
        })?;
        opts.revision = Some(rv);
    }
    let res = ctx.srv.store.range(&prefix, opts.clone()).await.map_err(|e| match e {
        berth_store::StoreError::Compacted { .. } if opts.start_after.is_some() => ApiError::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ),
        other => other.into(),
    })?;
    let mut items = Vec::new();
    for kv in &res.kvs {
        let obj = object::decode(kv, &ctx.r)?;
        if sel.matches(&obj) {
            items.push(obj);
        }
    }
    let continue_token = match (res.more, res.kvs.last()) {
        (true, Some(last)) => Some(encode_continue(res.revision, &last.key)),
        _ => None,
    };
    // Exact only on the first page; later pages do not know how many keys came before.
    let remaining = (opts.start_after.is_none() && continue_token.is_some())
        .then(|| res.count.saturating_sub(res.kvs.len()));
    Ok(Page {
        items,
        revision: res.revision,
        continue_token,
        remaining,
    })
}

/// LIST of a collection.
pub async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let sel = Selectors::from_ctx(ctx)?;
    let limit = ctx
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let page = list_page(ctx, &sel, limit).await?;
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
        if sel.is_empty() {
            if let Some(rem) = page.remaining {
                meta["remainingItemCount"] = json!(rem);
            }
        }
    }
    let body = if ctx.wants_table() {
        table::table(
            table::columns_for(&ctx.r),
            &page.items,
            meta,
            include_object(ctx)?,
            Utc::now(),
        )
    } else {
        json!({"kind": ctx.r.list_kind, "apiVersion": ctx.r.api_version(), "metadata": meta, "items": page.items})
    };
    Ok(json_response(200, &body, &[]))
}

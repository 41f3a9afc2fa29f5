//! GET of one object and LIST of a collection (selectors, limit/continue, resourceVersion).
//!
//! A JSON list is streamed ([`stream_list`]): each stored object is decoded, filtered and
//! serialized as the client reads, so a list of large objects never exists as one big document.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_store::{KeyValue, RangeOptions};
use chrono::Utc;
use serde_json::{Value, json};

use super::{Ctx, json_response};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::resources::ResourceInfo;
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

/// One page of stored entries, not yet decoded or filtered.
pub struct RawPage {
    /// Stored entries of the page, in key order.
    pub kvs: Vec<KeyValue>,
    /// The snapshot revision.
    pub revision: i64,
    /// The continue token, if more keys remain.
    pub continue_token: Option<String>,
    /// Keys remaining after this page (only meaningful without selectors).
    pub remaining: Option<usize>,
}

/// Reads one page of the collection's stored entries.
pub async fn list_raw(ctx: &Ctx, limit: Option<usize>) -> ApiResult<RawPage> {
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
    let continue_token = match (res.more, res.kvs.last()) {
        (true, Some(last)) => Some(encode_continue(res.revision, &last.key)),
        _ => None,
    };
    // Exact only on the first page; later pages do not know how many keys came before.
    let remaining = (opts.start_after.is_none() && continue_token.is_some())
        .then(|| res.count.saturating_sub(res.kvs.len()));
    Ok(RawPage {
        kvs: res.kvs,
        revision: res.revision,
        continue_token,
        remaining,
    })
}

/// Reads one page of the collection, decoded and filtered.
pub async fn list_page(ctx: &Ctx, sel: &Selectors, limit: Option<usize>) -> ApiResult<Page> {
    let raw = list_raw(ctx, limit).await?;
    let mut items = Vec::new();
    for kv in &raw.kvs {
        let obj = object::decode(kv, &ctx.r)?;
        if sel.matches(&obj) {
            items.push(obj);
        }
    }
    Ok(Page {
        items,
        revision: raw.revision,
        continue_token: raw.continue_token,
        remaining: raw.remaining,
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
    let raw = list_raw(ctx, limit).await?;
    let mut meta = json!({"resourceVersion": raw.revision.to_string()});
    if let Some(c) = &raw.continue_token {
        meta["continue"] = json!(c);
        if sel.is_empty() {
            if let Some(rem) = raw.remaining {
                meta["remainingItemCount"] = json!(rem);
            }
        }
    }
    if !ctx.wants_table() {
        return Ok(stream_list(ctx.r.clone(), sel, raw.kvs, meta));
    }
    let mut items = Vec::new();
    for kv in &raw.kvs {
        let obj = object::decode(kv, &ctx.r)?;
        if sel.matches(&obj) {
            items.push(obj);
        }
    }
    let body = table::table(
        table::columns_for(&ctx.r),
        &items,
        meta,
        include_object(ctx)?,
        Utc::now(),
    );
    Ok(json_response(200, &body, &[]))
}

/// A JSON list written as a stream: the head (`kind`, `apiVersion`, `metadata`, `"items":[`),
/// then the matching objects serialized as the client reads, then `]}`. Only the stored bytes of
/// the page and one decoded object are in memory at a time.
fn stream_list(r: Arc<ResourceInfo>, sel: Selectors, kvs: Vec<KeyValue>, meta: Value) -> Response {
    let head = json!({"kind": r.list_kind, "apiVersion": r.api_version(), "metadata": meta});
    // `{"kind":..,"metadata":{..}}` without its closing brace, then the items array.
    let mut head = head.to_string();
    head.pop();
    head.push_str(",\"items\":[");
    let items = ListItems {
        r,
        sel,
        kvs: kvs.into_iter(),
        first: true,
    };
    let chunks = std::iter::once(Ok(bytes::Bytes::from(head)))
        .chain(items)
        .chain(std::iter::once(Ok(bytes::Bytes::from_static(b"]}"))));
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// Serialized items gathered into one chunk before it is handed to the connection (fewer, larger
/// writes than one per object).
const LIST_CHUNK: usize = 64 * 1024;

/// The items of a streamed list, comma-separated, in chunks of about [`LIST_CHUNK`] bytes.
struct ListItems {
    r: Arc<ResourceInfo>,
    sel: Selectors,
    kvs: std::vec::IntoIter<KeyValue>,
    first: bool,
}

impl Iterator for ListItems {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut chunk = Vec::new();
        while chunk.len() < LIST_CHUNK {
            let Some(kv) = self.kvs.next() else { break };
            let obj = match object::decode(&kv, &self.r) {
                Ok(obj) => obj,
                Err(e) => {
                    // The head is already sent: all that is left is to end the response early.
                    tracing::warn!(key = kv.key, error = %e, "undecodable object ends a list");
                    return Some(Err(std::io::Error::other(e.message)));
                }
            };
            if !self.sel.matches(&obj) {
                continue;
            }
            if !self.first {
                chunk.push(b',');
            }
            self.first = false;
            if let Err(e) = serde_json::to_writer(&mut chunk, &obj) {
                return Some(Err(std::io::Error::other(e)));
            }
        }
        (!chunk.is_empty()).then(|| Ok(bytes::Bytes::from(chunk)))
    }
}

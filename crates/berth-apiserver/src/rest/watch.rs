//! WATCH: a chunked stream of one-line JSON events (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR).
//!
//! Starting points: no resourceVersion or "0" (synthetic ADDED for current state, then live),
//! a revision N (every change after N), or a streaming list (`sendInitialEvents=true`: ADDED for
//! the snapshot, a BOOKMARK marked `k8s.io/initial-events-end`, then live). An expired revision is
//! reported in-stream as an ERROR event with a 410 Status, which makes kube-rs relist.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use berth_store::{RangeOptions, StoreError, WatchEvent};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Ctx;
use super::read::Selectors;
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::table;

/// Where the watch starts.
enum Start {
    /// Synthetic ADDED for the current state, then live; `bookmark_end` marks a streaming list.
    Snapshot {
        bookmark_end: bool,
        at_least: Option<i64>,
    },
    /// Every change after this revision.
    After(i64),
}

fn start_of(ctx: &Ctx) -> ApiResult<Start> {
    let q = &ctx.query;
    let rv = q.get("resourceVersion");
    if q.flag("sendInitialEvents") {
        if q.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError {
                code: 422,
                reason: "Invalid",
                message: "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
                details: Some(json!({"group":"meta.k8s.io","kind":"ListOptions","causes":[{"reason":"FieldValueForbidden","field":"resourceVersionMatch","message":"Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"}]})),
            });
        }
        let at_least = match rv {
            None | Some("0") => None,
            Some(_) => q.int("resourceVersion")?,
        };
        return Ok(Start::Snapshot {
            bookmark_end: true,
            at_least,
        });
    }
    match rv {
        None | Some("0") => Ok(Start::Snapshot {
            bookmark_end: false,
            at_least: None,
        }),
        Some(_) => Ok(Start::After(q.int("resourceVersion")?.unwrap_or(0))),
    }
}

/// Answers a watch request.
pub async fn watch(ctx: Ctx) -> ApiResult<Response> {
    let sel = Selectors::from_ctx(&ctx)?;
    let start = start_of(&ctx)?;
    if ctx.wants_table() {
        super::read::include_object(&ctx)?;
    }
    let timeout = ctx
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::select! {
            _ = &mut deadline => {}
            _ = run(&ctx, &sel, start, &tx) => {}
        }
    });
    let body =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(ApiError::internal)
}

/// Sends one event line; `false` once the client is gone.
async fn send(tx: &mpsc::Sender<Bytes>, ctx: &Ctx, typ: &str, obj: Value) -> bool {
    let obj = if ctx.wants_table() && matches!(typ, "ADDED" | "MODIFIED" | "DELETED") {
        // includeObject was checked when the watch started.
        let include = super::read::include_object(ctx).unwrap_or_default();
        table::watch_event_table(
            table::columns_for(&ctx.r),
            &obj,
            include,
            chrono::Utc::now(),
        )
    } else {
        obj
    };
    let mut line = json!({"type": typ, "object": obj}).to_string();
    line.push('\n');
    tx.send(Bytes::from(line)).await.is_ok()
}

fn bookmark(ctx: &Ctx, rev: i64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"apiVersion": ctx.r.api_version(), "kind": ctx.r.kind, "metadata": meta})
}

async fn send_error(tx: &mpsc::Sender<Bytes>, ctx: &Ctx, err: ApiError) {
    send(tx, ctx, "ERROR", err.status()).await;
}

async fn run(ctx: &Ctx, sel: &Selectors, start: Start, tx: &mpsc::Sender<Bytes>) {
    let prefix = ctx.r.collection_prefix(ctx.namespace());
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let from = match start {
        Start::After(rev) => {
            // A revision the store has never reached means the client saw a different (e.g. lost)
            // history: make it relist, as for an expired revision.
            match ctx.srv.store.current_revision().await {
                Ok(cur) if rev > cur => {
                    return send_error(
                        tx,
                        ctx,
                        ApiError::expired(format!(
                            "too large resource version: {rev} (current {cur})"
                        )),
                    )
                    .await;
                }
                Ok(_) => rev,
                Err(e) => return send_error(tx, ctx, e.into()).await,
            }
        }
        Start::Snapshot {
            bookmark_end,
            at_least,
        } => match initial_events(ctx, sel, &prefix, tx, at_least).await {
            Ok(Some(rev)) => {
                if bookmark_end && !send(tx, ctx, "BOOKMARK", bookmark(ctx, rev, true)).await {
                    return;
                }
                rev
            }
            Ok(None) => return,
            Err(e) => return send_error(tx, ctx, e).await,
        },
    };
    let mut stream = match ctx.srv.store.watch(&prefix, from).await {
        Ok(s) => s,
        Err(e) => return send_error(tx, ctx, e.into()).await,
    };
    let mut last = from;
    let mut tick = tokio::time::interval(ctx.srv.options.bookmark_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(ev)) => {
                    last = ev.revision();
                    if !forward(ctx, sel, ev, tx).await {
                        return;
                    }
                }
                Some(Err(StoreError::WatcherLagged)) => {
                    return send_error(tx, ctx, ApiError::expired(format!("too old resource version: {last}: watcher fell behind"))).await;
                }
                Some(Err(e)) => return send_error(tx, ctx, e.into()).await,
                None => return,
            },
            _ = tick.tick(), if bookmarks => {
                if !send(tx, ctx, "BOOKMARK", bookmark(ctx, last, false)).await {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// Sends ADDED for the current matching objects; returns the snapshot revision (`None` if the
/// client went away).
async fn initial_events(
    ctx: &Ctx,
    sel: &Selectors,
    prefix: &str,
    tx: &mpsc::Sender<Bytes>,
    at_least: Option<i64>,
) -> ApiResult<Option<i64>> {
    if let Some(min) = at_least {
        let cur = ctx.srv.store.current_revision().await?;
        if min > cur {
            return Err(ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {min}, current: {cur}"),
            ));
        }
    }
    let res = ctx.srv.store.range(prefix, RangeOptions::default()).await?;
    for kv in &res.kvs {
        let obj = object::decode(kv, &ctx.r)?;
        if sel.matches(&obj) && !send(tx, ctx, "ADDED", obj).await {
            return Ok(None);
        }
    }
    Ok(Some(res.revision))
}

/// Turns a store event into a watch event, honouring selectors on both the old and new state.
async fn forward(ctx: &Ctx, sel: &Selectors, ev: WatchEvent, tx: &mpsc::Sender<Bytes>) -> bool {
    let decoded = |kv: &berth_store::KeyValue| object::decode(kv, &ctx.r).ok();
    match ev {
        WatchEvent::Put { kv, prev } => {
            let Some(new) = decoded(&kv) else { return true };
            let old_matched = prev
                .as_ref()
                .and_then(decoded)
                .is_some_and(|o| sel.matches(&o));
            match (old_matched, sel.matches(&new)) {
                (_, true) => {
                    send(tx, ctx, if old_matched { "MODIFIED" } else { "ADDED" }, new).await
                }
                (true, false) => send(tx, ctx, "DELETED", new).await,
                (false, false) => true,
            }
        }
        WatchEvent::Delete { prev, revision } => {
            let Some(mut old) = decoded(&prev) else {
                return true;
            };
            if !sel.matches(&old) {
                return true;
            }
            object::set_resource_version(&mut old, revision);
            send(tx, ctx, "DELETED", old).await
        }
    }
}

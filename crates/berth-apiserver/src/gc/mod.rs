//! Garbage collection: objects whose owners (by `ownerReferences` uid) are gone are deleted,
//! objects of a deleted namespace are removed, and the Orphan / Foreground propagation policies
//! are carried out.
//!
//! Two paths lead to the same per-dependent step ([`collect`]): a store watch follows deletions as
//! they happen (prompt), and a full [`sweep`] of the store — at start, after the watch lags, and
//! every [`Options::gc_interval`](crate::state::Options) — finds whatever the watch could not see:
//! owners deleted while the server was down or crashed before the watch acted, and foreground
//! deletions a crash interrupted ([`foreground`]). Since the sweep works from what is stored, no
//! timing of a crash leaves a dependent behind for longer than one interval.

pub mod collect;
pub mod foreground;
pub mod sweep;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use berth_store::{KeyValue, RangeOptions, WatchEvent};
use futures::StreamExt;
use serde_json::Value;

use crate::state::ApiServer;

pub use foreground::spawn_foreground;

/// The distinct storage prefixes of all served resources (events are served twice, stored once).
fn prefixes(srv: &ApiServer) -> Vec<(String, bool)> {
    let mut seen = BTreeSet::new();
    srv.registry
        .all()
        .into_iter()
        .filter(|r| seen.insert(r.storage_prefix.clone()))
        .map(|r| (r.storage_prefix.clone(), r.namespaced))
        .collect()
}

/// The owner uids an object's `ownerReferences` name.
fn owner_uids(v: &Value) -> Vec<&str> {
    v["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["uid"].as_str())
        .collect()
}

/// Stored objects whose ownerReferences name `owner`'s uid.
async fn dependents(srv: &ApiServer, owner: &Value) -> Vec<(KeyValue, Value)> {
    let Some(uid) = owner["metadata"]["uid"].as_str() else {
        return Vec::new();
    };
    let ns = owner["metadata"]["namespace"].as_str();
    let mut out = Vec::new();
    for (prefix, namespaced) in prefixes(srv) {
        let p = match (namespaced, ns) {
            (true, Some(ns)) => format!("{prefix}/{ns}/"),
            _ => format!("{prefix}/"),
        };
        let Ok(res) = srv.store.range(&p, RangeOptions::default()).await else {
            continue;
        };
        for kv in res.kvs {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                if owner_uids(&v).contains(&uid) {
                    out.push((kv, v));
                }
            }
        }
    }
    out
}

/// Whether anything is owned by `owner`.
pub async fn has_dependents(srv: &ApiServer, owner: &Value) -> bool {
    !dependents(srv, owner).await.is_empty()
}

/// Strips `owner` from the ownerReferences of its dependents (propagationPolicy=Orphan).
pub async fn orphan_dependents(srv: &ApiServer, owner: &Value) {
    let uid = owner["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (kv, mut v) in dependents(srv, owner).await {
        if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|o| o["uid"].as_str() != Some(&uid));
        }
        if let Ok(bytes) = serde_json::to_vec(&v) {
            if let Err(e) = srv.store.update(&kv.key, bytes, kv.mod_revision).await {
                tracing::warn!(key = %kv.key, error = %e, "orphaning dependent");
            }
        }
    }
}

/// Releases every dependent of `owner` (deleted, or about to be): each is collected, or only
/// loses its reference to `owner` when another owner remains.
pub(crate) async fn delete_dependents(srv: &ApiServer, owner: &Value) {
    let Some(uid) = owner["metadata"]["uid"].as_str() else {
        return;
    };
    let gone = HashSet::from([uid.to_string()]);
    for (kv, _) in dependents(srv, owner).await {
        collect::release(srv, &kv.key, &gone).await;
    }
}

/// Deletes everything stored in namespace `ns`.
async fn purge_namespace(srv: &ApiServer, ns: &str) {
    for (prefix, namespaced) in prefixes(srv) {
        if !namespaced {
            continue;
        }
        let Ok(res) = srv
            .store
            .range(&format!("{prefix}/{ns}/"), RangeOptions::default())
            .await
        else {
            continue;
        };
        for kv in res.kvs {
            if let Err(e) = srv.store.delete(&kv.key, kv.mod_revision).await {
                tracing::debug!(key = %kv.key, error = %e, "purging namespace");
            }
        }
    }
}

/// Runs the collector until the store closes: follows deletions, and sweeps periodically.
pub async fn run(srv: Arc<ApiServer>) {
    tokio::join!(follow(srv.clone()), sweep::periodically(srv));
}

/// Follows deletions through a watch. Each (re)start of the watch is followed by a full sweep
/// at or after the watch's first revision, so nothing deleted before it (while the server was
/// down, or while the watch lagged) is missed.
async fn follow(srv: Arc<ApiServer>) {
    loop {
        let from = match srv.store.current_revision().await {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut stream = match srv.store.watch("/registry/", from).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector cannot watch");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        sweep::sweep(&srv).await;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Delete { prev, .. }) => owner_deleted(&srv, &prev).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collector watch ended; restarting");
                    break;
                }
            }
        }
    }
}

/// Collects what the object just deleted (`prev`, its last version) owned.
async fn owner_deleted(srv: &ApiServer, prev: &KeyValue) {
    let Ok(owner) = serde_json::from_slice::<Value>(&prev.value) else {
        return;
    };
    if prev.key.starts_with("/registry/namespaces/") {
        if let Some(ns) = owner["metadata"]["name"].as_str() {
            purge_namespace(srv, ns).await;
        }
    }
    delete_dependents(srv, &owner).await;
}

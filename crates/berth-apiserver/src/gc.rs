//! Garbage collection: dependents (by `ownerReferences`) of deleted owners are deleted in the
//! background, objects of a deleted namespace are removed, and the Orphan / Foreground
//! propagation policies are carried out.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_store::{KeyValue, RangeOptions, StoreError, WatchEvent};
use futures::StreamExt;
use serde_json::Value;

use crate::resources::ResourceInfo;
use crate::rest::retry::{Attempt, retry};
use crate::state::ApiServer;

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

/// The grace period a collected pod gets: running on a node means its agent must stop it first
/// (like a user's DELETE), so it is only marked; `None` = delete at once.
fn pod_grace(key: &str, v: &Value) -> Option<i64> {
    if !key.starts_with("/registry/pods/") {
        return None;
    }
    let phase = v["status"]["phase"].as_str().unwrap_or_default();
    let scheduled = !v["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty();
    (scheduled && !matches!(phase, "Succeeded" | "Failed"))
        .then(|| {
            v["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
                .max(0)
        })
        .filter(|g| *g > 0)
}

/// How often a dependent written meanwhile (a status update, a scheduler binding) is read again
/// before the collector gives up on it until the next pass.
const DEPENDENT_ATTEMPTS: usize = 5;

/// Deletes every dependent of `owner`. Dependents with finalizers, and pods still running on a
/// node, get a deletionTimestamp instead (their finalizer holders or agents finish the job).
async fn delete_dependents(srv: &ApiServer, owner: &Value) {
    for (kv, _) in dependents(srv, owner).await {
        let key = kv.key;
        // Each attempt reads the dependent afresh: one written since the listing fails the
        // revision check, and without a retry it would never be collected.
        let outcome = retry(DEPENDENT_ATTEMPTS, || collect_one(srv, &key)).await;
        match outcome {
            Ok(Some(())) => {}
            Ok(None) => tracing::debug!(%key, "garbage collecting dependent: still changing"),
            Err(e) => tracing::debug!(%key, error = %e, "garbage collecting dependent"),
        }
    }
}

/// Deletes (or marks for deletion) the dependent at `key` at the revision just read.
async fn collect_one(srv: &ApiServer, key: &str) -> Result<Attempt<()>, StoreError> {
    let Some(kv) = srv.store.get(key).await? else {
        return Ok(Attempt::Done(()));
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) else {
        return Ok(Attempt::Done(()));
    };
    let has_finalizers = v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let grace = pod_grace(key, &v);
    let result = if has_finalizers || grace.is_some() {
        if v["metadata"].get("deletionTimestamp").is_some() {
            return Ok(Attempt::Done(()));
        }
        let when = chrono::Utc::now() + chrono::Duration::seconds(grace.unwrap_or(0));
        v["metadata"]["deletionTimestamp"] =
            Value::String(when.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        v["metadata"]["deletionGracePeriodSeconds"] = Value::from(grace.unwrap_or(0));
        let Ok(bytes) = serde_json::to_vec(&v) else {
            return Ok(Attempt::Done(()));
        };
        srv.store
            .update(key, bytes, kv.mod_revision)
            .await
            .map(|_| ())
    } else {
        srv.store.delete(key, kv.mod_revision).await.map(|_| ())
    };
    match result {
        Ok(()) | Err(StoreError::NotFound { .. }) => Ok(Attempt::Done(())),
        Err(StoreError::Conflict { .. }) => Ok(Attempt::Conflict),
        Err(e) => Err(e),
    }
}

/// Foreground deletion: delete dependents, wait until they are gone, then drop the
/// `foregroundDeletion` finalizer (which completes the owner's deletion).
pub fn spawn_foreground(srv: Arc<ApiServer>, r: Arc<ResourceInfo>, owner: Value) {
    tokio::spawn(async move {
        delete_dependents(&srv, &owner).await;
        for _ in 0..600 {
            if !has_dependents(&srv, &owner).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let name = owner["metadata"]["name"].as_str().unwrap_or_default();
        let key = r.key(owner["metadata"]["namespace"].as_str(), name);
        for _ in 0..10 {
            let Ok(Some(kv)) = srv.store.get(&key).await else {
                return;
            };
            let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) else {
                return;
            };
            if let Some(f) = v["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != "foregroundDeletion");
            }
            let empty = v["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
            let res = if empty {
                srv.store.delete(&key, kv.mod_revision).await.map(|_| ())
            } else {
                match serde_json::to_vec(&v) {
                    Ok(b) => srv.store.update(&key, b, kv.mod_revision).await.map(|_| ()),
                    Err(_) => return,
                }
            };
            if res.is_ok() {
                return;
            }
        }
    });
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

/// Runs the collector until the store closes: follows deletions from the current revision.
pub async fn run(srv: Arc<ApiServer>) {
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
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Delete { prev, .. }) => {
                    let Ok(owner) = serde_json::from_slice::<Value>(&prev.value) else {
                        continue;
                    };
                    if prev.key.starts_with("/registry/namespaces/") {
                        if let Some(ns) = owner["metadata"]["name"].as_str() {
                            purge_namespace(&srv, ns).await;
                        }
                    }
                    delete_dependents(&srv, &owner).await;
                }
                Ok(_) => {}
                Err(e) => {
                    // Lagged: rescan from now on (dependents of owners deleted meanwhile are
                    // found because their owner uid no longer exists — checked on the next pass).
                    tracing::warn!(error = %e, "garbage collector watch ended; restarting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_running_scheduled_pods_are_collected_gracefully() {
        let running = json!({"spec":{"nodeName":"n1","terminationGracePeriodSeconds":5},"status":{"phase":"Running"}});
        assert_eq!(pod_grace("/registry/pods/default/p", &running), Some(5));
        let pending = json!({"spec":{},"status":{"phase":"Pending"}});
        assert_eq!(pod_grace("/registry/pods/default/p", &pending), None);
        let done = json!({"spec":{"nodeName":"n1"},"status":{"phase":"Succeeded"}});
        assert_eq!(pod_grace("/registry/pods/default/p", &done), None);
        assert_eq!(pod_grace("/registry/configmaps/default/p", &running), None);
    }
}

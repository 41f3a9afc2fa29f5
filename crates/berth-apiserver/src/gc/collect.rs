//! The one step of collection, shared by the watch, the sweep and foreground deletion: a
//! dependent whose owners are all gone is deleted (pods still running on a node, and objects with
//! finalizers, are only marked); one with an owner left only loses the references to the gone
//! ones, as in Kubernetes.

use std::collections::HashSet;

use berth_store::StoreError;
use serde_json::Value;

use crate::rest::retry::{Attempt, retry};
use crate::state::ApiServer;

/// How often a dependent written meanwhile (a status update, a scheduler binding) is read again
/// before the collector gives up on it until the next pass.
const DEPENDENT_ATTEMPTS: usize = 5;

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

/// What to do with a dependent given the uids of owners known to be gone.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// No reference names a gone owner (or it has none left): leave it.
    Keep,
    /// Every owner is gone: collect it.
    Collect,
    /// Some owners remain: drop the references to the gone ones.
    Unlink,
}

fn verdict(v: &Value, gone: &HashSet<String>) -> Verdict {
    let owners = super::owner_uids(v);
    let dead = owners.iter().filter(|u| gone.contains(**u)).count();
    match dead {
        0 => Verdict::Keep,
        d if d == owners.len() => Verdict::Collect,
        _ => Verdict::Unlink,
    }
}

/// Collects or unlinks the dependent at `key` (read afresh) whose owners in `gone` no longer
/// exist; retried while the dependent is written meanwhile.
pub(crate) async fn release(srv: &ApiServer, key: &str, gone: &HashSet<String>) {
    // Each attempt reads the dependent afresh: one written since the listing fails the revision
    // check, and without a retry it would never be collected.
    match retry(DEPENDENT_ATTEMPTS, || release_once(srv, key, gone)).await {
        Ok(Some(())) => {}
        Ok(None) => tracing::debug!(%key, "garbage collecting dependent: still changing"),
        Err(e) => tracing::debug!(%key, error = %e, "garbage collecting dependent"),
    }
}

/// One attempt of [`release`] at the revision just read.
async fn release_once(
    srv: &ApiServer,
    key: &str,
    gone: &HashSet<String>,
) -> Result<Attempt<()>, StoreError> {
    let Some(kv) = srv.store.get(key).await? else {
        return Ok(Attempt::Done(()));
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) else {
        return Ok(Attempt::Done(()));
    };
    let result = match verdict(&v, gone) {
        Verdict::Keep => return Ok(Attempt::Done(())),
        Verdict::Collect => {
            let Some(write) = deletion(key, &mut v) else {
                return Ok(Attempt::Done(()));
            };
            match write {
                Write::Update(bytes) => srv.store.update(key, bytes, kv.mod_revision).await,
                Write::Delete => srv
                    .store
                    .delete(key, kv.mod_revision)
                    .await
                    .map(|(_, kv)| kv),
            }
        }
        Verdict::Unlink => {
            if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|o| !o["uid"].as_str().is_some_and(|u| gone.contains(u)));
            }
            let Ok(bytes) = serde_json::to_vec(&v) else {
                return Ok(Attempt::Done(()));
            };
            srv.store.update(key, bytes, kv.mod_revision).await
        }
    };
    match result {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(Attempt::Done(())),
        Err(StoreError::Conflict { .. }) => Ok(Attempt::Conflict),
        Err(e) => Err(e),
    }
}

/// The store write that deletes a collected object.
enum Write {
    /// Mark it (deletionTimestamp): finalizer holders or the node's agent finish the job.
    Update(Vec<u8>),
    /// Remove it now.
    Delete,
}

/// How to delete the collected object `v` at `key`; `None` when it is already being deleted.
fn deletion(key: &str, v: &mut Value) -> Option<Write> {
    let has_finalizers = v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let grace = pod_grace(key, v);
    if !has_finalizers && grace.is_none() {
        return Some(Write::Delete);
    }
    if v["metadata"].get("deletionTimestamp").is_some() {
        return None;
    }
    let when = chrono::Utc::now() + chrono::Duration::seconds(grace.unwrap_or(0));
    v["metadata"]["deletionTimestamp"] =
        Value::String(when.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    v["metadata"]["deletionGracePeriodSeconds"] = Value::from(grace.unwrap_or(0));
    serde_json::to_vec(v).ok().map(Write::Update)
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

    #[test]
    fn a_dependent_is_collected_only_when_every_owner_is_gone() {
        let gone = HashSet::from(["a".to_string()]);
        let owned = |uids: &[&str]| {
            let refs: Vec<Value> = uids.iter().map(|u| json!({"uid": u})).collect();
            json!({"metadata": {"ownerReferences": refs}})
        };
        assert_eq!(verdict(&owned(&["a"]), &gone), Verdict::Collect);
        assert_eq!(verdict(&owned(&["a", "b"]), &gone), Verdict::Unlink);
        assert_eq!(verdict(&owned(&["b"]), &gone), Verdict::Keep);
        assert_eq!(verdict(&owned(&[]), &gone), Verdict::Keep);
    }
}

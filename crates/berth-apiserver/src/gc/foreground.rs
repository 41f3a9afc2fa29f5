//! Foreground deletion: an owner marked with the `foregroundDeletion` finalizer stays (with its
//! deletionTimestamp) until its dependents are gone; then the finalizer is dropped, which
//! completes its deletion. [`spawn_foreground`] carries this out right after the DELETE; the
//! [`sweep`](super::sweep) finishes deletions a crash interrupted.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::resources::ResourceInfo;
use crate::state::ApiServer;

/// The finalizer that holds an owner until its dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";

/// How long [`spawn_foreground`] waits for the dependents before leaving the rest to the sweep.
const WAIT: Duration = Duration::from_secs(60);

/// Foreground deletion of `owner` (just marked): delete its dependents, wait until they are
/// gone, then drop the `foregroundDeletion` finalizer.
pub fn spawn_foreground(srv: Arc<ApiServer>, r: Arc<ResourceInfo>, owner: Value) {
    tokio::spawn(async move {
        super::delete_dependents(&srv, &owner).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while super::has_dependents(&srv, &owner).await {
            if tokio::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let name = owner["metadata"]["name"].as_str().unwrap_or_default();
        finish(&srv, &r.key(owner["metadata"]["namespace"].as_str(), name)).await;
    });
}

/// Drops the `foregroundDeletion` finalizer of the object at `key` (deleting it when no other
/// finalizer is left).
pub(crate) async fn finish(srv: &ApiServer, key: &str) {
    for _ in 0..10 {
        let Ok(Some(kv)) = srv.store.get(key).await else {
            return;
        };
        let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) else {
            return;
        };
        if let Some(f) = v["metadata"]["finalizers"].as_array_mut() {
            f.retain(|x| x != FOREGROUND);
        }
        let empty = v["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let res = if empty {
            srv.store.delete(key, kv.mod_revision).await.map(|_| ())
        } else {
            match serde_json::to_vec(&v) {
                Ok(b) => srv.store.update(key, b, kv.mod_revision).await.map(|_| ()),
                Err(_) => return,
            }
        };
        if res.is_ok() {
            return;
        }
    }
}

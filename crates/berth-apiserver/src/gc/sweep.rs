//! The full sweep: one consistent read of the whole store (at one revision) indexes every
//! object's uid, which objects have owners, and which are being deleted in the foreground; then
//! every object whose owners no longer exist is collected ([`collect::release`]), and interrupted
//! foreground deletions are carried on. Only uids and keys are kept, never whole objects; the
//! store is read one resource at a time.

use std::collections::HashSet;
use std::sync::Arc;

use berth_store::{RangeOptions, Revision, StoreError};
use serde::Deserialize;
use serde_json::json;

use super::{collect, foreground};
use crate::state::ApiServer;

/// The parts of a stored object the sweep looks at.
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    metadata: Meta,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    uid: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerRef>>,
    deletion_timestamp: Option<String>,
    finalizers: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct OwnerRef {
    uid: Option<String>,
}

/// An object with owners: its key and the uids its ownerReferences name.
struct Owned {
    key: String,
    owners: Vec<String>,
}

/// An object waiting for its dependents (deletionTimestamp and the `foregroundDeletion`
/// finalizer).
struct Waiting {
    key: String,
    uid: String,
    namespace: Option<String>,
}

/// What the sweep knows of the store at one revision.
#[derive(Default)]
struct Index {
    /// The uid of every stored object.
    live: HashSet<String>,
    owned: Vec<Owned>,
    waiting: Vec<Waiting>,
}

impl Index {
    /// Reads every served resource's objects at the current revision.
    async fn read(srv: &ApiServer) -> Result<Index, StoreError> {
        let at = srv.store.current_revision().await?;
        let mut index = Index::default();
        for (prefix, _) in super::prefixes(srv) {
            index.read_prefix(srv, &format!("{prefix}/"), at).await?;
        }
        Ok(index)
    }

    /// Reads one resource's objects at revision `at`. A whole prefix per request: a store serves
    /// a past revision by rebuilding the prefix's view, so pages would rebuild it once each.
    async fn read_prefix(
        &mut self,
        srv: &ApiServer,
        prefix: &str,
        at: Revision,
    ) -> Result<(), StoreError> {
        let opts = RangeOptions {
            revision: Some(at),
            ..RangeOptions::default()
        };
        for kv in srv.store.range(prefix, opts).await?.kvs {
            if let Ok(stored) = serde_json::from_slice::<Stored>(&kv.value) {
                self.add(&kv.key, stored.metadata);
            }
        }
        Ok(())
    }

    fn add(&mut self, key: &str, meta: Meta) {
        let Some(uid) = meta.uid else { return };
        let owners: Vec<String> = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.uid)
            // A reference without a uid names no object: nothing to find gone.
            .filter(|u| !u.is_empty())
            .collect();
        if !owners.is_empty() {
            self.owned.push(Owned {
                key: key.to_string(),
                owners,
            });
        }
        let foreground = meta
            .finalizers
            .is_some_and(|f| f.iter().any(|f| f == foreground::FOREGROUND));
        if foreground && meta.deletion_timestamp.is_some() {
            self.waiting.push(Waiting {
                key: key.to_string(),
                uid: uid.clone(),
                namespace: meta.namespace,
            });
        }
        self.live.insert(uid);
    }

    /// Owner uids some object names that no stored object has. Uids are never reused (the
    /// server assigns them), so an owner absent at the index's revision is gone for good.
    fn gone(&self) -> HashSet<String> {
        self.owned
            .iter()
            .flat_map(|o| &o.owners)
            .filter(|u| !self.live.contains(*u))
            .cloned()
            .collect()
    }

    /// The keys of the objects that name `uid` as an owner.
    fn dependents_of<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a str> {
        self.owned
            .iter()
            .filter(move |o| o.owners.iter().any(|u| u == uid))
            .map(|o| o.key.as_str())
    }
}

/// One full pass over the store.
pub async fn sweep(srv: &ApiServer) {
    let index = match Index::read(srv).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "garbage collector sweep could not read the store");
            return;
        }
    };
    let gone = index.gone();
    let orphans: Vec<&Owned> = index
        .owned
        .iter()
        .filter(|o| o.owners.iter().any(|u| gone.contains(u)))
        .collect();
    if !orphans.is_empty() {
        tracing::info!(
            objects = orphans.len(),
            "garbage collector: collecting objects whose owners are gone"
        );
    }
    for o in orphans {
        collect::release(srv, &o.key, &gone).await;
    }
    for w in &index.waiting {
        carry_on_foreground(srv, &index, w).await;
    }
}

/// Releases the dependents of an owner waiting in the foreground, and completes its deletion
/// once none is left.
async fn carry_on_foreground(srv: &ApiServer, index: &Index, w: &Waiting) {
    let owner = HashSet::from([w.uid.clone()]);
    for key in index.dependents_of(&w.uid) {
        collect::release(srv, key, &owner).await;
    }
    let stub = json!({"metadata": {"uid": w.uid, "namespace": w.namespace}});
    if !super::has_dependents(srv, &stub).await {
        foreground::finish(srv, &w.key).await;
    }
}

/// Sweeps every [`Options::gc_interval`](crate::state::Options) until the task is dropped.
pub async fn periodically(srv: Arc<ApiServer>) {
    loop {
        tokio::time::sleep(srv.options.gc_interval).await;
        sweep(&srv).await;
    }
}

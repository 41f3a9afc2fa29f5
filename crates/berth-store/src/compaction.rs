//! Automatic compaction: keeps history bounded without anyone having to remember it.
//!
//! K3s's kine experience (k8s-api.md 8.4) is that history grows without bound when compaction
//! is left to chance, so the server runs this loop. It holds only a weak reference, so it stops by
//! itself once the store is dropped, and a failed round is logged and retried next interval rather
//! than wedging compaction for good.

use std::sync::Arc;
use std::time::Duration;

use crate::{Revision, Store};

/// Every `interval`, compacts history to `current_revision - keep_revisions` (when that is newer
/// than what is already compacted) and vacuums the file. Must be called inside a tokio runtime. The task ends when the
/// store is dropped; abort the handle to stop it earlier.
pub fn spawn_auto_compaction<S: Store + ?Sized>(
    store: &Arc<S>,
    interval: Duration,
    keep_revisions: Revision,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(store);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(store) = weak.upgrade() else { break };
            if let Err(e) = compact_once(store.as_ref(), keep_revisions).await {
                tracing::warn!(error = %e, "automatic compaction failed; retrying next interval");
            }
        }
        tracing::debug!("automatic compaction stopped: store dropped");
    })
}

/// One compaction round; returns the revision compacted to, if any.
pub async fn compact_once<S: Store + ?Sized>(
    store: &S,
    keep_revisions: Revision,
) -> crate::Result<Option<Revision>> {
    let target = store.current_revision().await? - keep_revisions.max(0);
    compact_and_vacuum(store, target).await
}

/// Compacts history through `target` (when that is newer than what is already compacted), then
/// vacuums the store so the file shrinks by what compaction freed. Returns the revision compacted
/// to, if any. The one compaction step of every periodic compactor.
pub async fn compact_and_vacuum<S: Store + ?Sized>(
    store: &S,
    target: Revision,
) -> crate::Result<Option<Revision>> {
    if target <= store.compacted_revision().await? {
        return Ok(None);
    }
    store.compact(target).await?;
    tracing::debug!(revision = target, "compacted store history");
    store.vacuum().await?;
    Ok(Some(target))
}

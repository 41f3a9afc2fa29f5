//! The watch stream: replayed history followed by live events, with no gap and no duplicate.
//!
//! [`RedbStore::watch`](crate::RedbStore) subscribes to the writer's broadcast BEFORE it reads
//! history, so every write committed after the history snapshot is in the subscription. Live
//! events at or below the snapshot's revision were already replayed and are skipped.

use std::collections::VecDeque;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::writer::Batch;
use crate::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// The state the stream carries between items.
struct WatchState {
    prefix: String,
    /// Events ready to hand out: first the replayed history, then live ones.
    ready: VecDeque<WatchEvent>,
    live: broadcast::Receiver<Batch>,
    /// Live events at or below this revision have been handed out already (or were never asked for).
    floor: Revision,
    finished: bool,
}

/// Builds the stream from replayed events, the revision the replay covers, and the subscription.
pub(crate) fn stream(
    prefix: String,
    replay: Vec<WatchEvent>,
    covered: Revision,
    live: broadcast::Receiver<Batch>,
) -> WatchStream {
    let state = WatchState {
        prefix,
        ready: replay.into(),
        live,
        floor: covered,
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        let item = st.next().await?;
        Some((item, st))
    }))
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            match self.live.recv().await {
                Ok(batch) => self.accept(&batch),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(prefix = %self.prefix, missed, "watcher lagged; dropping it");
                    return Some(Err(self.finish(StoreError::WatcherLagged)));
                }
                Err(RecvError::Closed) => return Some(Err(self.finish(StoreError::Closed))),
            }
        }
    }

    /// Queues the batch's events under the prefix that are newer than what was handed out.
    fn accept(&mut self, batch: &Batch) {
        let floor = self.floor;
        let fresh = batch
            .iter()
            .filter(|e| e.revision() > floor && e.key().starts_with(&self.prefix));
        self.ready.extend(fresh.cloned());
        if let Some(last) = batch.last() {
            self.floor = floor.max(last.revision());
        }
    }

    fn finish(&mut self, err: StoreError) -> StoreError {
        self.finished = true;
        err
    }
}

//! The single writer of a [`RedbStore`](crate::RedbStore): group commit.
//!
//! Callers send write requests over a channel. One OS thread takes every request that is waiting,
//! applies them in order inside ONE redb write transaction (so each compare-and-swap sees the
//! writes earlier in the batch), commits once with `Durability::Immediate` (one fsync for the whole
//! batch), then publishes the batch's events to watchers and answers every caller. Because only
//! this thread assigns revisions, revisions have no gaps and events are published in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use redb::{Durability, ReadableTable, Table};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec::{decode_value, encode_event, encode_value};
use crate::redb_store::{HISTORY, KV, META, META_COMPACTED, META_REVISION, SharedDb, backend};
use crate::{KeyValue, Result, Revision, StoreError, WatchEvent};

/// At most this many requests go into one transaction, so one commit cannot grow without bound.
const MAX_BATCH: usize = 1024;

/// The events of one committed batch, shared by every watcher.
pub(crate) type Batch = Arc<[WatchEvent]>;

/// Revisions the writer publishes for lock-free reads of `current_revision` and friends.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The revision of the last committed write.
    pub revision: AtomicI64,
    /// The revision history is compacted through.
    pub compacted: AtomicI64,
    /// Bytes of history compaction removed since the last vacuum (what a vacuum could reclaim).
    pub reclaimable: AtomicU64,
}

/// One write a caller asks for.
#[derive(Debug)]
pub(crate) enum Op {
    /// Create the key if it is absent.
    Create { key: String, value: Vec<u8> },
    /// Replace the key if its modification revision is `expected`.
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    /// Delete the key if its modification revision is `expected`.
    Delete { key: String, expected: Revision },
    /// Drop history at and below `revision`.
    Compact { revision: Revision },
}

/// What a successful [`Op`] did: the event of a write, or nothing for a compaction.
pub(crate) type Outcome = Option<WatchEvent>;

/// A write request with the channel its answer goes back on.
pub(crate) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub db: SharedDb,
    pub shared: Arc<Shared>,
    pub requests: mpsc::Receiver<Request>,
    pub events: broadcast::Sender<Batch>,
}

impl Writer {
    /// Serves requests until every sender is gone (the store was dropped).
    pub fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        tracing::debug!("store writer stopped");
    }

    /// Applies and commits one batch, then publishes and answers.
    fn commit_batch(&mut self, batch: Vec<Request>) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        match self.apply(ops) {
            Ok(results) => {
                let events: Vec<WatchEvent> = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok().cloned().flatten())
                    .collect();
                if !events.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.events.send(Batch::from(events));
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up (dropped its future) no longer needs the answer.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store write transaction failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(e.to_string())));
                }
            }
        }
    }

    /// Runs `ops` in one transaction. The outer error fails the whole batch (nothing committed);
    /// inner errors are per-request compare-and-swap failures.
    fn apply(&mut self, ops: Vec<Op>) -> Result<Vec<Result<Outcome>>> {
        // Shared with readers; only a vacuum holds the database exclusively (and pauses writes).
        let db = self.db.blocking_read();
        let mut txn = db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Immediate).map_err(backend)?;
        let mut state = BatchState {
            revision: self.shared.revision.load(Ordering::SeqCst),
            compacted: self.shared.compacted.load(Ordering::SeqCst),
            dirty: false,
            freed: 0,
        };
        let mut results = Vec::with_capacity(ops.len());
        {
            let mut kv = txn.open_table(KV).map_err(backend)?;
            let mut history = txn.open_table(HISTORY).map_err(backend)?;
            for op in ops {
                results.push(state.apply_one(&mut kv, &mut history, op)?);
            }
            if state.dirty {
                let mut meta = txn.open_table(META).map_err(backend)?;
                meta.insert(META_REVISION, state.revision)
                    .map_err(backend)?;
                meta.insert(META_COMPACTED, state.compacted)
                    .map_err(backend)?;
            }
        }
        if !state.dirty {
            // Every request failed its check: skip the fsync.
            txn.abort().map_err(backend)?;
            return Ok(results);
        }
        txn.commit().map_err(backend)?;
        self.shared.revision.store(state.revision, Ordering::SeqCst);
        self.shared
            .compacted
            .store(state.compacted, Ordering::SeqCst);
        self.shared
            .reclaimable
            .fetch_add(state.freed, Ordering::SeqCst);
        Ok(results)
    }
}

/// Revisions as they evolve inside one batch.
struct BatchState {
    revision: Revision,
    compacted: Revision,
    /// Whether anything was written (whether the transaction must be committed).
    dirty: bool,
    /// Bytes of history entries compaction removed in this batch.
    freed: u64,
}

type KvTable<'t> = Table<'t, &'static str, &'static [u8]>;
type HistoryTable<'t> = Table<'t, i64, &'static [u8]>;

impl BatchState {
    fn apply_one(
        &mut self,
        kv: &mut KvTable<'_>,
        history: &mut HistoryTable<'_>,
        op: Op,
    ) -> Result<Result<Outcome>> {
        match op {
            Op::Create { key, value } => {
                if let Some(current) = current(kv, &key)? {
                    return Ok(Err(StoreError::AlreadyExists { key, current }));
                }
                let rev = self.next_revision();
                let kv_new = KeyValue {
                    key,
                    value,
                    create_revision: rev,
                    mod_revision: rev,
                };
                self.record(
                    kv,
                    history,
                    WatchEvent::Put {
                        kv: kv_new,
                        prev: None,
                    },
                )
                .map(Ok)
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let prev = match check(kv, &key, expected)? {
                    Ok(prev) => prev,
                    Err(e) => return Ok(Err(e)),
                };
                let rev = self.next_revision();
                let kv_new = KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: rev,
                };
                self.record(
                    kv,
                    history,
                    WatchEvent::Put {
                        kv: kv_new,
                        prev: Some(prev),
                    },
                )
                .map(Ok)
            }
            Op::Delete { key, expected } => {
                let prev = match check(kv, &key, expected)? {
                    Ok(prev) => prev,
                    Err(e) => return Ok(Err(e)),
                };
                let revision = self.next_revision();
                self.record(kv, history, WatchEvent::Delete { prev, revision })
                    .map(Ok)
            }
            Op::Compact { revision } => self.compact(history, revision),
        }
    }

    fn next_revision(&mut self) -> Revision {
        self.revision += 1;
        self.dirty = true;
        self.revision
    }

    /// Writes the event's effect on the latest-value index and appends it to history.
    fn record(
        &mut self,
        kv: &mut KvTable<'_>,
        history: &mut HistoryTable<'_>,
        event: WatchEvent,
    ) -> Result<Outcome> {
        match &event {
            WatchEvent::Put { kv: new, .. } => {
                let stored = encode_value(new.create_revision, new.mod_revision, &new.value);
                kv.insert(new.key.as_str(), stored.as_slice())
                    .map_err(backend)?;
            }
            WatchEvent::Delete { prev, .. } => {
                kv.remove(prev.key.as_str()).map_err(backend)?;
            }
        }
        history
            .insert(event.revision(), encode_event(&event).as_slice())
            .map_err(backend)?;
        Ok(Some(event))
    }

    /// Drops history at and below `revision`. Compacting at or below the compacted revision again
    /// is a no-op, so periodic compactors may race each other harmlessly.
    fn compact(
        &mut self,
        history: &mut HistoryTable<'_>,
        revision: Revision,
    ) -> Result<Result<Outcome>> {
        if revision > self.revision {
            return Ok(Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            }));
        }
        if revision <= self.compacted {
            return Ok(Ok(None));
        }
        let freed = &mut self.freed;
        history
            .retain_in(..=revision, |_, event| {
                *freed += event.len() as u64;
                false
            })
            .map_err(backend)?;
        self.compacted = revision;
        self.dirty = true;
        Ok(Ok(None))
    }
}

/// Reads the latest value of `key` inside the write transaction (including this batch's writes).
fn current(kv: &KvTable<'_>, key: &str) -> Result<Option<KeyValue>> {
    let stored = kv
        .get(key)
        .map_err(backend)?
        .map(|g| decode_value(g.value()))
        .transpose()?;
    Ok(stored.map(|s| s.into_kv(key.to_string())))
}

/// The compare-and-swap check of update and delete: the key exists with mod revision `expected`.
fn check(kv: &KvTable<'_>, key: &str, expected: Revision) -> Result<Result<KeyValue>> {
    Ok(match current(kv, key)? {
        None => Err(StoreError::NotFound {
            key: key.to_string(),
        }),
        Some(cur) if cur.mod_revision != expected => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            current: cur,
        }),
        Some(cur) => Ok(cur),
    })
}

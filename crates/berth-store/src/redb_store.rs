//! The embedded backend: [`RedbStore`], a [`Store`] in one redb file.
//!
//! Three tables: `kv` holds the latest value of every live key (so a list at the current revision
//! is one index range), `history` holds one entry per revision (put or delete, with the previous
//! value) until compaction, and `meta` holds the current and compacted revisions. All writes go
//! through the group-commit [`writer`](crate::writer); reads use redb's MVCC snapshots and never
//! wait for the writer.
//!
//! Space: compaction deletes history entries, and redb reuses the freed pages but never gives them
//! back to the file system. [`Store::vacuum`] does (redb's `Database::compact`), which needs the
//! database to itself: the database sits behind a read-write lock that every read snapshot and
//! every write batch holds shared, and the vacuum holds exclusively. While it runs (seconds for a
//! store of a few hundred MB in a debug build), reads and writes wait; so it runs only once
//! compactions have removed at least 4 MiB of history since the last vacuum. redb's page cache is
//! set explicitly ([`StoreOptions::cache_size`]): its default of 1 GiB could keep whatever large
//! objects once passed through it resident long after they were deleted.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{RwLock, broadcast, mpsc, oneshot};

use crate::codec::{decode_event, decode_value, event_key};
use crate::writer::{Batch, Op, Outcome, Request, Shared, Writer};
use crate::{
    KeyValue, RangeOptions, RangeResult, Result, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// Latest value per live key: key -> (create revision, mod revision, value).
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// One entry per revision until compaction: revision -> encoded event.
pub(crate) const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history");
/// Store-wide numbers.
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// `meta` key of the current revision.
pub(crate) const META_REVISION: &str = "revision";
/// `meta` key of the compacted revision.
pub(crate) const META_COMPACTED: &str = "compacted";

/// How many pending write requests may queue before callers wait (backpressure).
const REQUEST_QUEUE: usize = 8192;

/// Tuning of a [`RedbStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many committed write batches a watcher may fall behind before it is dropped with
    /// [`StoreError::WatcherLagged`] (and must re-list). Default 4096.
    pub watch_buffer: usize,
    /// Bytes of redb's page cache. Default 8 MiB: reads are served from the OS page cache as
    /// well, and a bigger cache only holds on to memory after large objects are gone.
    pub cache_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            watch_buffer: 4096,
            cache_size: 8 * 1024 * 1024,
        }
    }
}

/// A vacuum runs only once compaction has removed this much history since the last one: it
/// rewrites the file with reads and writes paused, which small amounts of churn are not worth.
const VACUUM_MIN: u64 = 4 * 1024 * 1024;

/// At most this many redb compaction passes per vacuum.
const VACUUM_PASSES: usize = 16;

/// The database, shared by readers and the writer, exclusive to a vacuum.
pub(crate) type SharedDb = Arc<RwLock<Database>>;

/// Maps any redb error to [`StoreError::Backend`].
pub(crate) fn backend(e: impl Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The redb-backed store. Cheap to clone (all clones share one database and one writer).
/// Dropping the last clone stops the writer and closes the file, so the path can be reopened.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: SharedDb,
    shared: Arc<Shared>,
    /// `None` only while dropping.
    requests: Option<mpsc::Sender<Request>>,
    events: broadcast::Sender<Batch>,
    writer: Option<std::thread::JoinHandle<()>>,
    path: std::path::PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop; joining it releases its handle on the file.
        self.requests.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field(
                "revision",
                &self.inner.shared.revision.load(Ordering::SeqCst),
            )
            .field(
                "compacted",
                &self.inner.shared.compacted.load(Ordering::SeqCst),
            )
            .finish()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if it does not exist. Fails if another
    /// process (or another open store in this process) holds the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Like [`RedbStore::open`], with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(path.as_ref())
            .map_err(backend)?;
        let shared = Arc::new(init_tables(&db)?);
        let db = Arc::new(RwLock::new(db));
        let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let writer = Writer {
            db: db.clone(),
            shared: shared.clone(),
            requests: rx,
            events: events.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || writer.run())
            .map_err(backend)?;
        tracing::debug!(path = %path.as_ref().display(), revision = shared.revision.load(Ordering::SeqCst), "opened store");
        Ok(RedbStore {
            inner: Arc::new(Inner {
                db,
                shared,
                requests: Some(requests),
                events,
                writer: Some(writer),
                path: path.as_ref().to_path_buf(),
            }),
        })
    }

    /// Sends one write to the writer and waits until it is committed (or refused).
    async fn write(&self, op: Op) -> Result<Outcome> {
        let requests = self.inner.requests.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(Request { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read against a fresh snapshot on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T> + Send + 'static,
    {
        // Held until the snapshot is gone, so a vacuum never finds a read transaction open.
        let db = self.inner.db.clone().read_owned().await;
        tokio::task::spawn_blocking(move || f(&Snapshot::begin(&db)?))
            .await
            .map_err(backend)?
    }

    /// The size of the store's file in bytes.
    pub fn file_size(&self) -> Result<u64> {
        std::fs::metadata(&self.inner.path)
            .map(|m| m.len())
            .map_err(backend)
    }
}

/// Creates the tables if needed and reads the revisions back.
fn init_tables(db: &Database) -> Result<Shared> {
    let txn = db.begin_write().map_err(backend)?;
    let shared = {
        txn.open_table(KV).map_err(backend)?;
        txn.open_table(HISTORY).map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let shared = Shared::default();
        shared
            .revision
            .store(meta_get(&meta, META_REVISION)?, Ordering::SeqCst);
        shared
            .compacted
            .store(meta_get(&meta, META_COMPACTED)?, Ordering::SeqCst);
        shared
    };
    txn.commit().map_err(backend)?;
    Ok(shared)
}

fn meta_get(meta: &impl ReadableTable<&'static str, i64>, key: &str) -> Result<i64> {
    Ok(meta
        .get(key)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(0))
}

/// One consistent read view: the tables and the revisions as of one redb read transaction.
struct Snapshot {
    kv: ReadOnlyTable<&'static str, &'static [u8]>,
    history: ReadOnlyTable<i64, &'static [u8]>,
    revision: Revision,
    compacted: Revision,
}

impl Snapshot {
    fn begin(db: &Database) -> Result<Self> {
        let txn = db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        Ok(Snapshot {
            kv: txn.open_table(KV).map_err(backend)?,
            history: txn.open_table(HISTORY).map_err(backend)?,
            revision: meta_get(&meta, META_REVISION)?,
            compacted: meta_get(&meta, META_COMPACTED)?,
        })
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let stored = self
            .kv
            .get(key)
            .map_err(backend)?
            .map(|g| decode_value(g.value()))
            .transpose()?;
        Ok(stored.map(|s| s.into_kv(key.to_string())))
    }

    fn range(&self, prefix: &str, opts: &RangeOptions) -> Result<RangeResult> {
        let at = opts.revision.unwrap_or(self.revision);
        if at > self.revision {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: self.revision,
            });
        }
        if at <= self.compacted && at != self.revision {
            return Err(StoreError::Compacted {
                requested: at,
                compacted: self.compacted,
            });
        }
        if at == self.revision {
            self.range_current(prefix, opts)
        } else {
            self.range_past(prefix, opts, at)
        }
    }

    /// The fast path: an index range over the latest values.
    fn range_current(&self, prefix: &str, opts: &RangeOptions) -> Result<RangeResult> {
        let start = match opts.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = opts.limit.unwrap_or(usize::MAX);
        let mut kvs = Vec::new();
        let mut more = false;
        for item in self
            .kv
            .range::<&str>((start, Bound::Unbounded))
            .map_err(backend)?
        {
            let (k, v) = item.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(decode_value(v.value())?.into_kv(key.to_string()));
        }
        let count = self.count_current(prefix)?;
        Ok(RangeResult {
            kvs,
            revision: self.revision,
            more,
            count,
        })
    }

    /// Counts the live keys under `prefix` (keys only; values are not decoded).
    fn count_current(&self, prefix: &str) -> Result<usize> {
        let mut count = 0;
        for item in self.kv.range::<&str>(prefix..).map_err(backend)? {
            let (k, _) = item.map_err(backend)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// The rare path: start from the latest values and undo history newer than `at`.
    fn range_past(&self, prefix: &str, opts: &RangeOptions, at: Revision) -> Result<RangeResult> {
        let mut view = BTreeMap::new();
        for item in self.kv.range::<&str>(prefix..).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            view.insert(
                key.to_string(),
                decode_value(v.value())?.into_kv(key.to_string()),
            );
        }
        for item in self
            .history
            .range((Bound::Excluded(at), Bound::Unbounded))
            .map_err(backend)?
            .rev()
        {
            let (_, bytes) = item.map_err(backend)?;
            if !event_key(bytes.value())?.starts_with(prefix) {
                continue;
            }
            match decode_event(bytes.value())? {
                WatchEvent::Put {
                    kv,
                    prev: Some(prev),
                } => view.insert(kv.key, prev),
                WatchEvent::Put { kv, prev: None } => view.remove(&kv.key),
                WatchEvent::Delete { prev, .. } => view.insert(prev.key.clone(), prev),
            };
        }
        let count = view.len();
        let mut rest = view.into_values().filter(|kv| {
            opts.start_after
                .as_deref()
                .is_none_or(|after| kv.key.as_str() > after)
        });
        let limit = opts.limit.unwrap_or(usize::MAX);
        let kvs: Vec<KeyValue> = rest.by_ref().take(limit).collect();
        let more = rest.next().is_some();
        Ok(RangeResult {
            kvs,
            revision: at,
            more,
            count,
        })
    }

    /// History entries under `prefix` with revisions in `(after, self.revision]`.
    fn history_after(&self, prefix: &str, after: Revision) -> Result<Vec<WatchEvent>> {
        if after < self.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        let mut events = Vec::new();
        for item in self
            .history
            .range((Bound::Excluded(after), Bound::Unbounded))
            .map_err(backend)?
        {
            let (_, bytes) = item.map_err(backend)?;
            if event_key(bytes.value())?.starts_with(prefix) {
                events.push(decode_event(bytes.value())?);
            }
        }
        Ok(events)
    }
}

/// The event a successful put-like write returns (the writer always sends one back).
fn written(outcome: Outcome) -> Result<WatchEvent> {
    outcome.ok_or_else(|| StoreError::Backend("writer returned no event for a write".into()))
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |s| s.get(&key)).await
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let prefix = prefix.to_string();
        self.read(move |s| s.range(&prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        match written(
            self.write(Op::Create {
                key: key.to_string(),
                value,
            })
            .await?,
        )? {
            WatchEvent::Put { kv, .. } => Ok(kv),
            WatchEvent::Delete { .. } => {
                Err(StoreError::Backend("create produced a delete".into()))
            }
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        match written(
            self.write(Op::Update {
                key: key.to_string(),
                value,
                expected,
            })
            .await?,
        )? {
            WatchEvent::Put { kv, .. } => Ok(kv),
            WatchEvent::Delete { .. } => {
                Err(StoreError::Backend("update produced a delete".into()))
            }
        }
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(Revision, KeyValue)> {
        match written(
            self.write(Op::Delete {
                key: key.to_string(),
                expected,
            })
            .await?,
        )? {
            WatchEvent::Delete { prev, revision } => Ok((revision, prev)),
            WatchEvent::Put { .. } => Err(StoreError::Backend("delete produced a put".into())),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe first: every write committed after the snapshot below is then in `live`.
        let live = self.inner.events.subscribe();
        let p = prefix.to_string();
        let (replay, covered) = self
            .read(move |s| Ok((s.history_after(&p, after)?, s.revision)))
            .await?;
        Ok(crate::watch::stream(
            prefix.to_string(),
            replay,
            covered.max(after),
            live,
        ))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.shared.revision.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.shared.compacted.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn vacuum(&self) -> Result<bool> {
        let before = self.file_size()?;
        // Only worth pausing reads and writes when compaction freed a good part of the file.
        let reclaimable = self.inner.shared.reclaimable.load(Ordering::SeqCst);
        if reclaimable < VACUUM_MIN {
            return Ok(false);
        }
        self.inner.shared.reclaimable.store(0, Ordering::SeqCst);
        let db = self.inner.db.clone();
        let compacted = tokio::task::spawn_blocking(move || {
            // Waits for every open snapshot and the current write batch; then both wait for it.
            let mut db = db.blocking_write();
            // One call moves what it can; more calls move pages freed by the previous one.
            let mut compacted = false;
            for _ in 0..VACUUM_PASSES {
                if !db.compact().map_err(backend)? {
                    break;
                }
                compacted = true;
            }
            Ok::<_, StoreError>(compacted)
        })
        .await
        .map_err(backend)??;
        tracing::debug!(
            before,
            after = self.file_size().ok(),
            compacted,
            "vacuumed the store file"
        );
        Ok(compacted)
    }
}

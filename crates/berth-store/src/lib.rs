//! `berth-store`: a revisioned key-value store with watch, shaped like etcd's KV API.
//!
//! Every write bumps one global revision by exactly one. Each key remembers the revision that
//! created it and the revision that last modified it; writes are compare-and-swap on that
//! modification revision, which is what the API server's optimistic concurrency
//! (`metadata.resourceVersion`) is built on. A watch replays history from any retained revision and
//! then follows live writes, in revision order, each event carrying the previous value.
//!
//! The API server only ever sees the [`Store`] trait, so an etcd backend can replace the embedded one.
//!
//! The embedded backend is [`RedbStore`] (one redb file, group-committed durable writes; see its
//! module for the layout), and [`spawn_auto_compaction`] keeps its history bounded and its file
//! small ([`compact_and_vacuum`]: compaction, then [`Store::vacuum`]).
//! `cargo run --release -p berth-store --example store_bench` prints a micro figure of its write
//! throughput and latency.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

use std::pin::Pin;

use futures::Stream;

mod codec;
mod compaction;
mod mem_store;
mod redb_store;
mod watch;
mod writer;

pub use compaction::{compact_and_vacuum, compact_once, spawn_auto_compaction};
pub use mem_store::MemStore;
pub use redb_store::{RedbStore, StoreOptions};

/// A global store revision. Starts at 0 for an empty store; the first write has revision 1.
pub type Revision = i64;

/// One key with its value and revisions, as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes (the API server stores JSON).
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// Options for [`Store::range`].
#[derive(Debug, Clone, Default)]
pub struct RangeOptions {
    /// Read the state as of this revision (`None` = the current revision). A revision at or below
    /// the compacted revision is [`StoreError::Compacted`] (unless it is the current revision, which is
    /// always readable); one above the current revision is [`StoreError::FutureRevision`].
    pub revision: Option<Revision>,
    /// Return at most this many keys (`None` = all). `more` in the result says whether keys remain.
    pub limit: Option<usize>,
    /// Start strictly after this key (for paging with `continue` tokens).
    pub start_after: Option<String>,
}

/// The answer of [`Store::range`].
#[derive(Debug, Clone)]
pub struct RangeResult {
    /// The keys under the prefix, in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at (the current revision unless one was asked for).
    pub revision: Revision,
    /// Whether more keys under the prefix follow the last one returned.
    pub more: bool,
    /// How many keys the prefix holds in total at that revision (ignoring limit and start_after).
    pub count: usize,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated. `prev` is its value before this write, if it existed.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`. `prev` is the value it had.
    Delete { prev: KeyValue, revision: Revision },
}

impl WatchEvent {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A live stream of watch events in revision order. It ends with an error if the watcher fell too
/// far behind ([`StoreError::WatcherLagged`]) or the store closed.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Errors of the store. Compare-and-swap failures carry what is there now, so callers can report it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists { key: String, current: KeyValue },
    /// The key does not exist (update or delete of a missing key).
    #[error("key {key} not found")]
    NotFound { key: String },
    /// `update`/`delete` expected another modification revision.
    #[error("key {key} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: KeyValue,
    },
    /// The revision asked for has been compacted away.
    #[error("revision {requested} has been compacted (compacted through {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision asked for is newer than the store's current revision.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A watcher did not keep up with the write rate and was dropped; it must re-list.
    #[error("watcher fell behind and was dropped")]
    WatcherLagged,
    /// The store is shut down.
    #[error("store is closed")]
    Closed,
    /// The backend failed (I/O, corruption, ...).
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store with watch. Implementations must be safe to share across tasks;
/// every acknowledged write must be durable (survive kill -9 of the process).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Reads the keys that start with `prefix`, in key order.
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult>;

    /// Creates `key` if it does not exist. Returns the new key's revisions.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces `key` if its modification revision is still `expected`.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key` if its modification revision is still `expected`. Returns the deletion revision
    /// and the value that was deleted.
    async fn delete(&self, key: &str, expected: Revision) -> Result<(Revision, KeyValue)>;

    /// Streams every change to keys under `prefix` with a revision greater than `after`, first from
    /// history, then live. `after` below the compacted revision is [`StoreError::Compacted`].
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The current (latest) revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The revision through which history has been compacted (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Discards history at and below `revision` (current values are kept).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Gives the space of deleted values and compacted history back to the file system; reads
    /// and writes wait while it runs. Returns whether anything was reclaimed. Backends without a
    /// file have nothing to do.
    async fn vacuum(&self) -> Result<bool> {
        Ok(false)
    }
}

//! A small in-memory [`Store`], optionally backed by an append-only log file.
//!
//! It keeps every write in a history log (until compaction) so reads at old revisions and watches
//! from old revisions behave like the durable backend. With [`MemStore::open_logged`] every write
//! is appended to a JSON-lines file and fsynced before it is acknowledged, and the file is replayed
//! on open — a simple durable stand-in until the redb backend is wired in.

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_store::{
    KeyValue, RangeOptions, RangeResult, Result, Revision, Store, StoreError, WatchEvent, WatchStream,
};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// One write in the history: the key's value after the write (`None` = deleted).
#[derive(Clone)]
struct Entry {
    revision: Revision,
    key: String,
    value: Option<KeyValue>,
    prev: Option<KeyValue>,
}

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    current: BTreeMap<String, KeyValue>,
    history: Vec<Entry>,
}

/// An in-memory revisioned store.
pub struct MemStore {
    state: Mutex<State>,
    events: broadcast::Sender<WatchEvent>,
    log: Option<Mutex<std::fs::File>>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore { state: Mutex::new(State::default()), events: broadcast::channel(4096).0, log: None }
    }
}

/// One line of the write log.
#[derive(serde::Serialize, serde::Deserialize)]
struct LogRecord {
    /// The write's revision (or the compaction revision).
    rev: Revision,
    key: String,
    /// Hex of the new value; `None` = deleted (or a compaction record when `compact`).
    value: Option<String>,
    #[serde(default)]
    create_rev: Revision,
    #[serde(default)]
    compact: bool,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens (replaying) or creates a store persisted in the log file at `path`.
    pub fn open_logged(path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::BufRead;
        let mut store = MemStore::default();
        if let Ok(f) = std::fs::File::open(path) {
            let st = store.state.get_mut().unwrap_or_else(|e| e.into_inner());
            for line in std::io::BufReader::new(f).lines() {
                let line = line?;
                // A torn last line (crash mid-append) was never acknowledged: stop there.
                let Ok(rec) = serde_json::from_str::<LogRecord>(&line) else { break };
                Self::replay(st, rec);
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        store.log = Some(Mutex::new(file));
        Ok(store)
    }

    fn replay(st: &mut State, rec: LogRecord) {
        if rec.compact {
            st.compacted = rec.rev;
            st.history.retain(|e| e.revision > rec.rev);
            return;
        }
        st.revision = rec.rev;
        let prev = st.current.get(&rec.key).cloned();
        let value = rec.value.and_then(|h| hex::decode(h).ok()).map(|value| KeyValue {
            key: rec.key.clone(),
            value,
            create_revision: rec.create_rev,
            mod_revision: rec.rev,
        });
        match &value {
            Some(kv) => st.current.insert(rec.key.clone(), kv.clone()),
            None => st.current.remove(&rec.key),
        };
        st.history.push(Entry { revision: rec.rev, key: rec.key, value, prev });
    }

    /// Appends a record and fsyncs it (no-op without a log).
    fn persist(&self, rec: &LogRecord) -> Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        use std::io::Write;
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = serde_json::to_vec(rec).map_err(|e| StoreError::Backend(e.to_string()))?;
        line.push(b'\n');
        f.write_all(&line).and_then(|_| f.sync_data()).map_err(|e| StoreError::Backend(e.to_string()))
    }

    fn persist_write(&self, rev: Revision, key: &str, kv: Option<&KeyValue>) -> Result<()> {
        if self.log.is_none() {
            return Ok(());
        }
        self.persist(&LogRecord {
            rev,
            key: key.to_string(),
            value: kv.map(|kv| hex::encode(&kv.value)),
            create_rev: kv.map(|kv| kv.create_revision).unwrap_or(0),
            compact: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Mutations below never panic half-way, so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, st: &mut State, key: &str, value: Option<KeyValue>, prev: Option<KeyValue>) {
        let revision = st.revision;
        st.history.push(Entry { revision, key: key.to_string(), value: value.clone(), prev: prev.clone() });
        let ev = match (value, prev) {
            (Some(kv), prev) => WatchEvent::Put { kv, prev },
            (None, Some(prev)) => WatchEvent::Delete { prev, revision },
            (None, None) => return,
        };
        // No receivers is fine.
        let _ = self.events.send(ev);
    }

    fn event_of(e: &Entry) -> Option<WatchEvent> {
        match (&e.value, &e.prev) {
            (Some(kv), prev) => Some(WatchEvent::Put { kv: kv.clone(), prev: prev.clone() }),
            (None, Some(prev)) => Some(WatchEvent::Delete { prev: prev.clone(), revision: e.revision }),
            (None, None) => None,
        }
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().current.get(key).cloned())
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let st = self.lock();
        let at = opts.revision.unwrap_or(st.revision);
        if opts.revision.is_some() && at <= st.compacted && at != st.revision {
            return Err(StoreError::Compacted { requested: at, compacted: st.compacted });
        }
        if at > st.revision {
            return Err(StoreError::FutureRevision { requested: at, current: st.revision });
        }
        let mut view: BTreeMap<String, KeyValue> = st.current.clone();
        // Undo writes after `at`, newest first.
        for e in st.history.iter().rev().take_while(|e| e.revision > at) {
            match &e.prev {
                Some(p) => view.insert(e.key.clone(), p.clone()),
                None => view.remove(&e.key),
            };
        }
        let all: Vec<KeyValue> =
            view.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect();
        let count = all.len();
        let after: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| opts.start_after.as_deref().is_none_or(|s| kv.key.as_str() > s))
            .collect();
        let limit = opts.limit.unwrap_or(usize::MAX);
        let more = after.len() > limit;
        Ok(RangeResult { kvs: after.into_iter().take(limit).collect(), revision: at, more, count })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut st = self.lock();
        if let Some(cur) = st.current.get(key) {
            return Err(StoreError::AlreadyExists { key: key.into(), current: cur.clone() });
        }
        let rev = st.revision + 1;
        let kv = KeyValue { key: key.into(), value, create_revision: rev, mod_revision: rev };
        self.persist_write(rev, key, Some(&kv))?;
        st.revision = rev;
        st.current.insert(key.into(), kv.clone());
        self.record(&mut st, key, Some(kv.clone()), None);
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let mut st = self.lock();
        let Some(cur) = st.current.get(key).cloned() else {
            return Err(StoreError::NotFound { key: key.into() });
        };
        if cur.mod_revision != expected {
            return Err(StoreError::Conflict { key: key.into(), expected, current: cur });
        }
        let rev = st.revision + 1;
        let kv = KeyValue { key: key.into(), value, create_revision: cur.create_revision, mod_revision: rev };
        self.persist_write(rev, key, Some(&kv))?;
        st.revision = rev;
        st.current.insert(key.into(), kv.clone());
        self.record(&mut st, key, Some(kv.clone()), Some(cur));
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(Revision, KeyValue)> {
        let mut st = self.lock();
        let Some(cur) = st.current.get(key).cloned() else {
            return Err(StoreError::NotFound { key: key.into() });
        };
        if cur.mod_revision != expected {
            return Err(StoreError::Conflict { key: key.into(), expected, current: cur });
        }
        let rev = st.revision + 1;
        self.persist_write(rev, key, None)?;
        st.revision = rev;
        st.current.remove(key);
        self.record(&mut st, key, None, Some(cur.clone()));
        Ok((rev, cur))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe under the lock so no write falls between the replay and the live feed.
        let st = self.lock();
        if after < st.compacted {
            return Err(StoreError::Compacted { requested: after, compacted: st.compacted });
        }
        let rx = self.events.subscribe();
        let backlog: Vec<Result<WatchEvent>> = st
            .history
            .iter()
            .filter(|e| e.revision > after && e.key.starts_with(prefix))
            .filter_map(Self::event_of)
            .map(Ok)
            .collect();
        let last = st.revision.max(after);
        drop(st);
        let prefix = prefix.to_string();
        let live = BroadcastStream::new(rx).filter_map(move |r| {
            let prefix = prefix.clone();
            async move {
                match r {
                    Ok(ev) if ev.revision() > last && ev.key().starts_with(&prefix) => Some(Ok(ev)),
                    Ok(_) => None,
                    Err(_) => Some(Err(StoreError::WatcherLagged)),
                }
            }
        });
        Ok(Box::pin(futures::stream::iter(backlog).chain(live)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut st = self.lock();
        if revision > st.compacted {
            let target = revision.min(st.revision);
            self.persist(&LogRecord { rev: target, key: String::new(), value: None, create_rev: 0, compact: true })?;
            st.compacted = target;
            let c = st.compacted;
            st.history.retain(|e| e.revision > c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logged_store_survives_reopen_with_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.log");
        {
            let s = MemStore::open_logged(&path).unwrap();
            let a = s.create("/k/a", b"1".to_vec()).await.unwrap();
            s.update("/k/a", b"2".to_vec(), a.mod_revision).await.unwrap();
            let b = s.create("/k/b", b"x".to_vec()).await.unwrap();
            s.delete("/k/b", b.mod_revision).await.unwrap();
            assert!(matches!(s.update("/k/a", b"3".to_vec(), a.mod_revision).await, Err(StoreError::Conflict { .. })));
        }
        let s = MemStore::open_logged(&path).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), 4);
        let a = s.get("/k/a").await.unwrap().unwrap();
        assert_eq!((a.value.as_slice(), a.create_revision, a.mod_revision), (&b"2"[..], 1, 2));
        assert!(s.get("/k/b").await.unwrap().is_none());
        // History replays: a watch from revision 1 sees the update, create and delete.
        let evs: Vec<Revision> = s.watch("/k/", 1).await.unwrap().take(3).map(|e| e.unwrap().revision()).collect().await;
        assert_eq!(evs, vec![2, 3, 4]);
        s.compact(3).await.unwrap();
        drop(s);
        let s = MemStore::open_logged(&path).unwrap();
        assert!(matches!(s.watch("/k/", 1).await, Err(StoreError::Compacted { .. })));
        let old = s.range("/k/", RangeOptions { revision: Some(2), ..Default::default() }).await;
        assert!(matches!(old, Err(StoreError::Compacted { .. })));
    }
}

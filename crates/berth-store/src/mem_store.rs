//! An in-memory [`Store`]: the same semantics as the durable backend (history until compaction,
//! reads at old revisions, watches from old revisions, compare-and-swap), nothing on disk. For
//! `berth server --ephemeral` and for tests of code that needs a store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{
    KeyValue, RangeOptions, RangeResult, Result, Revision, Store, StoreError, WatchEvent,
    WatchStream,
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
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            state: Mutex::new(State::default()),
            events: broadcast::channel(4096).0,
        }
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Mutations below never panic half-way, so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, st: &mut State, key: &str, value: Option<KeyValue>, prev: Option<KeyValue>) {
        let revision = st.revision;
        st.history.push(Entry {
            revision,
            key: key.to_string(),
            value: value.clone(),
            prev: prev.clone(),
        });
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
            (Some(kv), prev) => Some(WatchEvent::Put {
                kv: kv.clone(),
                prev: prev.clone(),
            }),
            (None, Some(prev)) => Some(WatchEvent::Delete {
                prev: prev.clone(),
                revision: e.revision,
            }),
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
            return Err(StoreError::Compacted {
                requested: at,
                compacted: st.compacted,
            });
        }
        if at > st.revision {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: st.revision,
            });
        }
        let mut view: BTreeMap<String, KeyValue> = st.current.clone();
        // Undo writes after `at`, newest first.
        for e in st.history.iter().rev().take_while(|e| e.revision > at) {
            match &e.prev {
                Some(p) => view.insert(e.key.clone(), p.clone()),
                None => view.remove(&e.key),
            };
        }
        let all: Vec<KeyValue> = view
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        let count = all.len();
        let after: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| {
                opts.start_after
                    .as_deref()
                    .is_none_or(|s| kv.key.as_str() > s)
            })
            .collect();
        let limit = opts.limit.unwrap_or(usize::MAX);
        let more = after.len() > limit;
        Ok(RangeResult {
            kvs: after.into_iter().take(limit).collect(),
            revision: at,
            more,
            count,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut st = self.lock();
        if let Some(cur) = st.current.get(key) {
            return Err(StoreError::AlreadyExists {
                key: key.into(),
                current: cur.clone(),
            });
        }
        let rev = st.revision + 1;
        let kv = KeyValue {
            key: key.into(),
            value,
            create_revision: rev,
            mod_revision: rev,
        };
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
            return Err(StoreError::Conflict {
                key: key.into(),
                expected,
                current: cur,
            });
        }
        let rev = st.revision + 1;
        let kv = KeyValue {
            key: key.into(),
            value,
            create_revision: cur.create_revision,
            mod_revision: rev,
        };
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
            return Err(StoreError::Conflict {
                key: key.into(),
                expected,
                current: cur,
            });
        }
        let rev = st.revision + 1;
        st.revision = rev;
        st.current.remove(key);
        self.record(&mut st, key, None, Some(cur.clone()));
        Ok((rev, cur))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe under the lock so no write falls between the replay and the live feed.
        let st = self.lock();
        if after < st.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: st.compacted,
            });
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
    use futures::StreamExt;

    #[tokio::test]
    async fn history_watch_and_compaction_behave_like_the_durable_store() {
        let s = MemStore::new();
        let a = s.create("/k/a", b"1".to_vec()).await.unwrap();
        s.update("/k/a", b"2".to_vec(), a.mod_revision)
            .await
            .unwrap();
        let b = s.create("/k/b", b"x".to_vec()).await.unwrap();
        s.delete("/k/b", b.mod_revision).await.unwrap();
        assert!(matches!(
            s.update("/k/a", b"3".to_vec(), a.mod_revision).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(s.current_revision().await.unwrap(), 4);
        let old = s
            .range(
                "/k/",
                RangeOptions {
                    revision: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(old.kvs.len(), 1);
        assert_eq!(old.kvs[0].value, b"1");
        let evs: Vec<Revision> = s
            .watch("/k/", 1)
            .await
            .unwrap()
            .take(3)
            .map(|e| e.unwrap().revision())
            .collect()
            .await;
        assert_eq!(evs, vec![2, 3, 4]);
        s.compact(3).await.unwrap();
        assert!(matches!(
            s.watch("/k/", 1).await,
            Err(StoreError::Compacted { .. })
        ));
    }
}

//! Behaviour of the redb store as the API server sees it through the `Store` trait.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_store::{RangeOptions, RedbStore, Store, StoreError, StoreOptions, WatchEvent};
use futures::StreamExt;

fn open(dir: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(dir.path().join("store.redb")).unwrap()
}

fn keys(r: &berth_store::RangeResult) -> Vec<&str> {
    r.kvs.iter().map(|kv| kv.key.as_str()).collect()
}

#[tokio::test]
async fn compare_and_swap_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = s.create("/k/a", b"1".to_vec()).await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));

    match s.create("/k/a", b"other".to_vec()).await {
        Err(StoreError::AlreadyExists { current, .. }) => assert_eq!(current, a),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match s.update("/k/a", b"2".to_vec(), 7).await {
        Err(StoreError::Conflict {
            expected: 7,
            current,
            ..
        }) => assert_eq!(current, a),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(
        s.update("/k/missing", b"x".to_vec(), 1).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete("/k/missing", 1).await,
        Err(StoreError::NotFound { .. })
    ));
    // Failed writes do not consume revisions.
    assert_eq!(s.current_revision().await.unwrap(), 1);

    let a2 = s.update("/k/a", b"2".to_vec(), 1).await.unwrap();
    assert_eq!(
        (a2.create_revision, a2.mod_revision, a2.value.as_slice()),
        (1, 2, &b"2"[..])
    );
    // The old revision no longer matches.
    assert!(matches!(
        s.delete("/k/a", 1).await,
        Err(StoreError::Conflict { .. })
    ));
    let (rev, prev) = s.delete("/k/a", 2).await.unwrap();
    assert_eq!((rev, prev), (3, a2));
    assert_eq!(s.get("/k/a").await.unwrap(), None);

    // Re-creating a deleted key starts a new life.
    let a3 = s.create("/k/a", b"3".to_vec()).await.unwrap();
    assert_eq!((a3.create_revision, a3.mod_revision), (4, 4));
    assert_eq!(s.get("/k/a").await.unwrap(), Some(a3));
}

#[tokio::test]
async fn concurrent_creates_of_one_key_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create("/race", vec![i]).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.current_revision().await.unwrap(), 1);
}

#[tokio::test]
async fn range_by_prefix_with_limit_paging_count_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for k in ["/r/pods/b", "/r/pods/a", "/r/pods/c", "/r/podsx/z", "/r/a"] {
        s.create(k, k.as_bytes().to_vec()).await.unwrap();
    }
    let all = s.range("/r/pods/", RangeOptions::default()).await.unwrap();
    assert_eq!(keys(&all), ["/r/pods/a", "/r/pods/b", "/r/pods/c"]);
    assert_eq!((all.count, all.more, all.revision), (3, false, 5));

    let page1 = s
        .range(
            "/r/pods/",
            RangeOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (keys(&page1), page1.more, page1.count),
        (vec!["/r/pods/a", "/r/pods/b"], true, 3)
    );
    let next = RangeOptions {
        limit: Some(2),
        start_after: Some("/r/pods/b".into()),
        ..Default::default()
    };
    let page2 = s.range("/r/pods/", next).await.unwrap();
    assert_eq!(
        (keys(&page2), page2.more, page2.count),
        (vec!["/r/pods/c"], false, 3)
    );

    // Change the prefix, then read it as it was at revision 5.
    let b = s.get("/r/pods/b").await.unwrap().unwrap();
    s.update("/r/pods/b", b"new".to_vec(), b.mod_revision)
        .await
        .unwrap();
    s.delete("/r/pods/a", 2).await.unwrap();
    s.create("/r/pods/d", b"d".to_vec()).await.unwrap();
    let now = s.range("/r/pods/", RangeOptions::default()).await.unwrap();
    assert_eq!(keys(&now), ["/r/pods/b", "/r/pods/c", "/r/pods/d"]);
    assert_eq!(now.kvs[0].value, b"new");

    let old = s
        .range(
            "/r/pods/",
            RangeOptions {
                revision: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&old), ["/r/pods/a", "/r/pods/b", "/r/pods/c"]);
    assert_eq!((old.revision, old.count), (5, 3));
    assert_eq!(old.kvs[1].value, b"/r/pods/b");
    assert_eq!(old.kvs[1].mod_revision, 1);
    let old_page = RangeOptions {
        revision: Some(6),
        limit: Some(1),
        start_after: Some("/r/pods/a".into()),
    };
    let old_page = s.range("/r/pods/", old_page).await.unwrap();
    assert_eq!(
        (keys(&old_page), old_page.more, old_page.count),
        (vec!["/r/pods/b"], true, 3)
    );
    assert_eq!(old_page.kvs[0].value, b"new");

    assert!(matches!(
        s.range(
            "/r/",
            RangeOptions {
                revision: Some(99),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::FutureRevision {
            requested: 99,
            current: 8
        })
    ));
    s.compact(6).await.unwrap();
    assert!(matches!(
        s.range(
            "/r/",
            RangeOptions {
                revision: Some(5),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::Compacted {
            requested: 5,
            compacted: 6
        })
    ));
    let at7 = s
        .range(
            "/r/pods/",
            RangeOptions {
                revision: Some(7),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&at7), ["/r/pods/b", "/r/pods/c"]);
    // Compaction keeps current values.
    assert_eq!(
        s.range("/r/pods/", RangeOptions::default())
            .await
            .unwrap()
            .count,
        3
    );
}

#[tokio::test]
async fn watch_events_carry_previous_values_and_respect_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut w = s.watch("/w/", 0).await.unwrap();
    let a = s.create("/w/a", b"1".to_vec()).await.unwrap();
    s.create("/other", b"x".to_vec()).await.unwrap();
    let a2 = s
        .update("/w/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    s.delete("/w/a", a2.mod_revision).await.unwrap();

    assert_eq!(
        w.next().await.unwrap().unwrap(),
        WatchEvent::Put {
            kv: a.clone(),
            prev: None
        }
    );
    assert_eq!(
        w.next().await.unwrap().unwrap(),
        WatchEvent::Put {
            kv: a2.clone(),
            prev: Some(a)
        }
    );
    assert_eq!(
        w.next().await.unwrap().unwrap(),
        WatchEvent::Delete {
            prev: a2,
            revision: 4
        }
    );
}

/// Writers run while a watch starts from a past revision: the watch must deliver every revision
/// after its start exactly once, in order, across the switch from history to live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_replays_history_then_live_in_order_with_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..20 {
        s.create(&format!("/c/pre-{i}"), vec![]).await.unwrap();
    }
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    let key = format!("/c/w{w}-{i}");
                    let kv = s.create(&key, b"v".to_vec()).await.unwrap();
                    s.update(&key, b"v2".to_vec(), kv.mod_revision)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    // Start watching while the writers are busy, from a revision in the past.
    tokio::task::yield_now().await;
    let start = 10;
    let mut w = s.watch("/c/", start).await.unwrap();
    for t in writers {
        t.await.unwrap();
    }
    let last = s.current_revision().await.unwrap();
    assert_eq!(last, 20 + (WRITERS * PER_WRITER * 2) as i64);
    let mut expected = start + 1;
    while expected <= last {
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!(ev.revision(), expected, "gap or duplicate in watch stream");
        expected += 1;
    }
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..5 {
        s.create(&format!("/x/{i}"), vec![]).await.unwrap();
    }
    assert!(matches!(
        s.compact(9).await,
        Err(StoreError::FutureRevision {
            requested: 9,
            current: 5
        })
    ));
    s.compact(3).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
    assert!(matches!(
        s.watch("/x/", 2).await,
        Err(StoreError::Compacted {
            requested: 2,
            compacted: 3
        })
    ));
    // Watching from exactly the compacted revision still works: history after it is kept.
    let mut w = s.watch("/x/", 3).await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().revision(), 4);
    assert_eq!(w.next().await.unwrap().unwrap().revision(), 5);
    // Compacting again at or below is harmless.
    s.compact(2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_dropped_with_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open_with(
        dir.path().join("s.redb"),
        StoreOptions {
            watch_buffer: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let mut slow = s.watch("/l/", 0).await.unwrap();
    for i in 0..12 {
        s.create(&format!("/l/{i}"), vec![]).await.unwrap();
    }
    let mut seen = Vec::new();
    let err = loop {
        match slow.next().await {
            Some(Ok(ev)) => seen.push(ev.revision()),
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    assert!(matches!(err, StoreError::WatcherLagged), "{err}");
    assert!(
        slow.next().await.is_none(),
        "stream must end after the lag error"
    );
    assert!(seen.len() < 12);
}

#[tokio::test]
async fn reopening_keeps_values_revisions_history_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        let a = s.create("/p/a", b"1".to_vec()).await.unwrap();
        s.update("/p/a", b"2".to_vec(), a.mod_revision)
            .await
            .unwrap();
        s.create("/p/b", b"b".to_vec()).await.unwrap();
        s.compact(1).await.unwrap();
        s.delete("/p/b", 3).await.unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), 4);
    assert_eq!(s.compacted_revision().await.unwrap(), 1);
    let a = s.get("/p/a").await.unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.mod_revision),
        (&b"2"[..], 1, 2)
    );
    assert_eq!(s.get("/p/b").await.unwrap(), None);
    let revs: Vec<i64> = s
        .watch("/p/", 1)
        .await
        .unwrap()
        .take(3)
        .map(|e| e.unwrap().revision())
        .collect()
        .await;
    assert_eq!(revs, [2, 3, 4]);
    // New writes continue the revision sequence.
    assert_eq!(s.create("/p/c", vec![]).await.unwrap().mod_revision, 5);
}

#[tokio::test]
async fn the_file_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(&dir);
    assert!(RedbStore::open(dir.path().join("store.redb")).is_err());
}

#[tokio::test]
async fn dropping_the_store_ends_its_watches() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut w = s.watch("/", 0).await.unwrap();
    drop(s);
    assert!(matches!(w.next().await, Some(Err(StoreError::Closed))));
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn auto_compaction_keeps_the_newest_revisions_and_stops_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    for i in 0..10 {
        s.create(&format!("/a/{i}"), vec![]).await.unwrap();
    }
    let task = berth_store::spawn_auto_compaction(&s, Duration::from_millis(20), 3);
    // Wait (bounded, not timed) for a round to run.
    for _ in 0..3000 {
        if s.compacted_revision().await.unwrap() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.compacted_revision().await.unwrap(), 7);
    assert!(matches!(
        s.watch("/a/", 6).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        s.range("/a/", RangeOptions::default()).await.unwrap().count,
        10
    );
    drop(s);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("compaction task must stop")
        .unwrap();
}

/// Large values written and deleted leave the file big until compaction plus vacuum, after
/// which it shrinks back, while reads and writes keep working.
#[tokio::test]
async fn compaction_and_vacuum_shrink_the_file_after_large_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create("/small/keep", b"kept".to_vec()).await.unwrap();
    let empty = s.file_size().unwrap();
    let mut revs = Vec::new();
    for i in 0..20 {
        let kv = s
            .create(&format!("/big/{i}"), vec![b'x'; 1024 * 1024])
            .await
            .unwrap();
        revs.push(kv.mod_revision);
    }
    for (i, rev) in revs.iter().enumerate() {
        s.delete(&format!("/big/{i}"), *rev).await.unwrap();
    }
    let grown = s.file_size().unwrap();
    assert!(
        grown > 20 * 1024 * 1024,
        "file {grown} bytes after 20 MiB of writes"
    );

    let current = s.current_revision().await.unwrap();
    let compacted = berth_store::compact_and_vacuum(&s, current).await.unwrap();
    assert_eq!(compacted, Some(current));
    let shrunk = s.file_size().unwrap();
    assert!(
        shrunk < grown / 4 && shrunk < empty + 4 * 1024 * 1024,
        "file {shrunk} bytes after vacuum (was {grown}, {empty} before the big values)"
    );
    assert_eq!(s.get("/small/keep").await.unwrap().unwrap().value, b"kept");
    s.create("/small/after", b"1".to_vec()).await.unwrap();
    assert_eq!(
        s.range("/small/", RangeOptions::default())
            .await
            .unwrap()
            .count,
        2
    );
    // Nothing left to compact: no second vacuum.
    assert_eq!(
        berth_store::compact_and_vacuum(&s, current).await.unwrap(),
        None
    );
}

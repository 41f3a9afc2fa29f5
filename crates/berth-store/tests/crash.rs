//! Durability: every acknowledged write survives kill -9 of the writing process.
//!
//! The test re-runs its own binary as a child (the ignored `crash_child` test, selected by name and
//! given the database path in an env var). The child writes from many tasks at once and prints one
//! line per acknowledged write; the parent kills it with SIGKILL mid-burst, reopens the file and
//! checks every acknowledged write is there, with a gap-free revision sequence.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use berth_store::{RangeOptions, RedbStore, Store};

const DB_ENV: &str = "BERTH_STORE_CRASH_DB";
const WRITERS: usize = 16;

/// The child half: writes until killed. Ignored so that a normal test run skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill9_loses_no_acknowledged_write"]
async fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store = RedbStore::open(path).unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/w{w:02}/{i:08}");
                    let kv = store.create(&key, key.as_bytes().to_vec()).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {key} {}", kv.mod_revision).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn kill9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = BTreeMap::new();
    // Kill once a good number of writes are acknowledged, i.e. in the middle of the burst.
    while acked.len() < 400 {
        let line = lines.next().expect("child exited before the kill").unwrap();
        if let Some((key, rev)) = parse_ack(&line) {
            acked.insert(key, rev);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already written to the pipe are acknowledgements too.
    for line in lines {
        if let Some((key, rev)) = parse_ack(&line.unwrap()) {
            acked.insert(key, rev);
        }
    }

    let store = RedbStore::open(&path).unwrap();
    for (key, rev) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
        assert_eq!(kv.value, key.as_bytes());
    }
    // Every write was a create of a new key, so the keys' revisions must be exactly 1..=current.
    let current = store.current_revision().await.unwrap();
    let all = store
        .range("/crash/", RangeOptions::default())
        .await
        .unwrap();
    let mut revs: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
    revs.sort_unstable();
    assert_eq!(revs, (1..=current).collect::<Vec<_>>());
    assert!(current >= acked.len() as i64);
    // The store keeps working after recovery.
    assert_eq!(
        store
            .create("/crash/after", vec![])
            .await
            .unwrap()
            .mod_revision,
        current + 1
    );
}

fn parse_ack(line: &str) -> Option<(String, i64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
}

//! A micro figure for the store alone (no HTTP): durable creates with 1, 16 and 64 concurrent
//! writers, with latency percentiles, and list/range of the written keys.
//!
//! `cargo run --release -p berth-store --example store_bench [writes-per-level]`
//! The database goes in a temporary directory that is removed afterwards.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_store::{RangeOptions, RedbStore, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(4000);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(RedbStore::open(dir.path().join("bench.redb"))?);
    println!(
        "durable creates ({total} per level, 1 KiB values), goal: > 5000 writes/s, p99 < 5 ms"
    );
    println!(
        "{:>8} {:>10} {:>9} {:>9}",
        "writers", "writes/s", "p50", "p99"
    );
    for writers in [1usize, 16, 64] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for i in 0..total / writers {
                        let t = Instant::now();
                        store
                            .create(&format!("/bench/{writers}/{w}/{i}"), vec![7u8; 1024])
                            .await?;
                        lat.push(t.elapsed());
                    }
                    Ok::<_, berth_store::StoreError>(lat)
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        let wall = started.elapsed();
        lat.sort_unstable();
        let pct = |q: usize| {
            lat.get((lat.len() * q / 100).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{writers:>8} {:>10.0} {:>9} {:>9}",
            lat.len() as f64 / wall.as_secs_f64(),
            ms(pct(50)),
            ms(pct(99))
        );
    }
    let started = Instant::now();
    let all = store.range("/bench/", RangeOptions::default()).await?;
    println!(
        "range of {} keys at the current revision: {}",
        all.kvs.len(),
        ms(started.elapsed())
    );
    let started = Instant::now();
    let page = store
        .range(
            "/bench/",
            RangeOptions {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await?;
    println!(
        "range limit 500 (count {}): {}",
        page.count,
        ms(started.elapsed())
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1000.0)
}

//! Waiting for what a test expects to happen: one poll loop for every e2e test.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::server::TestServer;

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(200);

/// Polls `f` until it yields a value, panicking with `what` once `within` has passed.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(within, f).await {
        Some(v) => v,
        None => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// As [`eventually`], with the tail of `server`'s log in the panic message (what the server
/// did instead is usually the first thing one needs).
pub async fn eventually_logged<T, F, Fut>(
    server: &TestServer,
    what: &str,
    within: Duration,
    f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(within, f).await {
        Some(v) => v,
        None => {
            let log = server.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "timed out after {within:?} waiting for {what}; server log tail:\n{}",
                tail.join("\n")
            )
        }
    }
}

/// Polls `f` until it yields a value or `within` has passed.
pub async fn poll<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

//! Fixtures shared by berth-agent's integration tests; each test binary includes this module with
//! `mod support;` and uses what it needs (hence `dead_code` allowed: no binary uses all of it).
//!
//! - [`harness`]: `main` of the `harness = false` binaries that are also the runtime's shim;
//! - [`registry`]: Debian's docker-registry on loopback and the busybox test image;
//! - [`cri`]: berth's CRI runtime in-process, images, sandboxes and containers through CRI;
//! - [`api`]: an in-process API server over the in-memory store;
//! - [`probe`]: starting probe loops and reading their updates;
//! - [`relay`]: a TCP relay that plays a network link the test can cut;
//! - here: loopback ports, polling, the leftover-mounts check.

#![allow(dead_code)]

pub mod api;
pub mod cri;
pub mod harness;
pub mod probe;
pub mod registry;
pub mod relay;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// The loopback address every test listens and connects on.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `N` distinct free loopback ports (all held while picking, so they differ).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind(SocketAddr::new(LOCALHOST, 0)).expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("free port").port())
}

/// A tokio listener on a free loopback port, and its address.
pub async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// Polls `check` every `every` until it returns true; panics with `failure` once `patience` has
/// passed without, so a broken component fails the test instead of hanging it.
pub async fn eventually(
    patience: Duration,
    every: Duration,
    failure: &str,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + patience;
    while !check().await {
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(every).await;
    }
}

/// Asserts that nothing is mounted under `dir` any more (a test's runtime root, after teardown).
pub fn assert_no_leftover_mounts(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(dir.to_str().expect("utf8")),
        "leftover mounts:\n{mounts}"
    );
}

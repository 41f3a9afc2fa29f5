//! Helpers for end-to-end tests: locating the `berth` binary and running it, and the peers
//! (docker-registry, skopeo, runc), as a user would.
//!
//! One module per concern, each owned by the part it serves:
//! - [`server`]: a `berth server` under test (`TestServer`, also as a whole node);
//! - [`cluster`]: a server and several nodes under test (`TestCluster`, on the launcher
//!   `berth up --nodes` uses);
//! - [`node`]: names, ports and teardown of a node under test;
//! - [`events`]: Kubernetes Events a test waits for;
//! - [`fake`]: Nodes registered by a test that runs no agent;
//! - [`http`]: a minimal HTTP client for requests through service ports;
//! - [`kubectl`]: kubectl against a test server, asserting success or failure;
//! - [`peer`]: Debian's `docker-registry` and `skopeo` as peers (berth-testkit's, re-exported);
//! - [`registry`]: a `berth registry` under test;
//! - [`umoci`]: OCI layouts made by `umoci`, an independent producer;
//! - [`runtime`]: a `berth runtime` under test (test images come from `berth_testkit::busybox`);
//! - [`wait`]: the one poll loop tests wait with;
//! - [`workload`]: the ModelServices tests run.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cluster;
pub mod events;
pub mod fake;
pub mod http;
pub mod kubectl;
pub mod node;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod umoci;
pub mod wait;
pub mod workload;

use std::path::PathBuf;

pub use berth_testkit::{free_port, peer};

/// The `berth` binary under test: `$BERTH_BIN`, else `target/<profile>/berth` beside the test
/// executable (cargo puts test executables in `target/<profile>/deps/`).
pub fn berth_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("berth");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p berth` first (or set BERTH_BIN)",
        bin.display()
    );
    bin
}

/// The root of the source checkout (for manifests and examples used by tests).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the repository root")
        .to_path_buf()
}

//! `berth-testkit`: test images shared by tests and benchmarks, never linked into the product
//! crates (they take it as a dev-dependency; `berth-bench` and the e2e suite as a dependency).
//!
//! - [`busybox`]: a busybox OCI image layout built from Debian's busybox-static, the image every
//!   container test runs.
//! - [`synthetic`]: images of random, incompressible layers, for transfer tests and benchmarks.
//! - [`harness`]: `main` of the `harness = false` test binaries (shim dispatch, libtest-like runs).
//! - [`cri`]: berth's CRI runtime served in-process on a Unix socket, with a client.
//! - [`peer`]: the peers berth is tested and benchmarked against: Debian's `docker-registry` and
//!   `skopeo`.
//! - [`hostile`]: layers that try to write or delete outside the unpack root, for the tests of
//!   every caller of berth-oci's unpacker.
//! - here: free loopback ports.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod busybox;
pub mod cri;
pub mod harness;
pub mod hostile;
pub mod peer;
pub mod synthetic;

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`: the digest form OCI manifests and configs name blobs by.
fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests and benchmarks).
pub fn try_free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// [`try_free_port`] for tests: panics if no port can be bound.
pub fn free_port() -> u16 {
    try_free_port().expect("bind 127.0.0.1:0")
}

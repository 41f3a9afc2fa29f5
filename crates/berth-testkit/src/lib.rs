//! `berth-testkit`: test images shared by tests and benchmarks, never linked into the product
//! crates (they take it as a dev-dependency; `berth-bench` and the e2e suite as a dependency).
//!
//! - [`busybox`]: a busybox OCI image layout built from Debian's busybox-static, the image every
//!   container test runs.
//! - [`synthetic`]: images of random, incompressible layers, for transfer tests and benchmarks.

pub mod busybox;
pub mod synthetic;

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`: the digest form OCI manifests and configs name blobs by.
fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The image architecture of this machine, as OCI configs spell it (`amd64`, `arm64`).
fn host_arch() -> &'static str {
    berth_image::manifest::host_arch()
}

//! `berth-bench`: the benchmarks behind `berth bench`, each printing figures for berth beside a
//! peer measured in the same run.
//!
//! - [`api`]: the Kubernetes API as a client sees it (a `berth server` child).
//! - [`registry`]: registry push/pull throughput against Debian's `docker-registry`.
//! - [`image`]: `berth push`/`pull` against `skopeo copy`.
//! - [`runtime`]: container start through berth's CRI socket against `runc run`.
//! - [`pods`]: pod startup on a whole in-process node, beside `runc run -d`.
//!
//! The crate is linked into the `berth` binary: benchmarks that run berth as a child process
//! (`berth server`, `berth registry`, `berth runtime`, `berth push`) run
//! [`std::env::current_exe`], which is that binary. The one thing only the binary can do, start
//! `berth server` in its own process, it lends through [`Host`].
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

use clap::Subcommand;

pub mod api;
pub mod failover;
mod host;
pub mod image;
pub mod pods;
mod proc;
pub mod registry;
pub mod runtime;
mod stats;

pub use host::{Host, StartedServer};

/// Arguments of `berth bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// API server: create/update/get latency and throughput, large lists, watch fan-out.
    Api(api::Args),
    /// Registry: push/pull throughput of berth's registry against Debian's docker-registry.
    Registry(registry::Args),
    /// Image client: `berth push`/`pull` against `skopeo copy`.
    Image(image::Args),
    /// Runtime: container start through berth's CRI socket against `runc run` and `ctr run`.
    Runtime(runtime::Args),
    /// Pods: apply -> N Ready and per-Pod startup latency on an in-process node, beside `runc run`.
    Pods(pods::Args),
    /// Failover: node death -> all replicas Ready elsewhere, p50/p99 on a three-node cluster.
    Failover(failover::Args),
}

/// Runs `berth bench`; `host` starts the in-process server `berth bench pods` needs and tells
/// when the user asks to stop.
pub fn run(args: Args, host: &dyn Host) -> anyhow::Result<()> {
    match args.what {
        What::Api(a) => api::run(a),
        What::Registry(a) => registry::run(a),
        What::Image(a) => image::run(a),
        What::Runtime(a) => runtime::run(a),
        What::Pods(a) => pods::run(a, host),
        What::Failover(a) => failover::run(a, host),
    }
}

/// Runs `fut` to completion on a new multi-threaded tokio runtime (the binary's `main` has none).
fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Runtime::new()?.block_on(fut))
}

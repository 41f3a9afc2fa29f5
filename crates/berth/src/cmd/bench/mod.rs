//! `berth bench`: benchmarks that print figures for berth beside a peer measured in the same run.

use clap::Subcommand;

mod api;
mod image;
mod pods;
mod registry;
mod runtime;

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
}

/// Runs `berth bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Api(a) => api::run(a),
        What::Registry(a) => registry::run(a),
        What::Image(a) => image::run(a),
        What::Runtime(a) => runtime::run(a),
        What::Pods(a) => pods::run(a),
    }
}

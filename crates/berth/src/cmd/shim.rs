//! `berth shim`: the per-container supervisor the runtime starts (hidden; not for people).

use std::path::PathBuf;

use berth_runtime::shim::{self, ShimConfig};

/// Arguments of `berth shim`.
#[derive(clap::Args)]
pub struct Args {
    /// Container id.
    #[arg(long)]
    id: String,
    /// OCI bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// CRI log file.
    #[arg(long)]
    log_path: PathBuf,
    /// Directory for the pid and exit files.
    #[arg(long)]
    state_dir: PathBuf,
    /// OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// OCI runtime state root.
    #[arg(long)]
    runtime_root: PathBuf,
    /// The container's cgroups path (OOM detection).
    #[arg(long)]
    cgroup_path: Option<String>,
}

/// Runs `berth shim` (synchronously: the shim must stay single-threaded until it forks runc).
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ShimConfig {
        id: args.id,
        bundle: args.bundle,
        log_path: args.log_path,
        state_dir: args.state_dir,
        runtime: args.runtime,
        runtime_root: args.runtime_root,
        cgroup_path: args.cgroup_path,
    };
    shim::run(&cfg)?;
    Ok(())
}

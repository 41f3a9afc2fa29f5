//! `berth shim`: the per-container supervisor started by the runtime (see
//! `berth_runtime::shim`). Runs without tokio: it forks, so it must stay single-threaded until
//! the container is created.

use std::path::PathBuf;

use berth_runtime::shim::{self, ShimConfig};

/// Arguments of `berth shim` (written by the container manager, not by people).
#[derive(clap::Args)]
pub struct Args {
    /// Container id (the OCI runtime's id too).
    #[arg(long)]
    id: String,
    /// OCI bundle directory holding config.json.
    #[arg(long)]
    bundle: PathBuf,
    /// Directory for shim.pid, init.pid, exit.json and shim.log.
    #[arg(long)]
    state_dir: PathBuf,
    /// The container's CRI log file.
    #[arg(long)]
    log_path: PathBuf,
    /// OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// The OCI runtime's --root.
    #[arg(long)]
    runtime_root: PathBuf,
    /// linux.cgroupsPath of the container (to detect OOM kills).
    #[arg(long)]
    cgroups_path: Option<String>,
}

/// Runs `berth shim`: returns once the container is created; the supervisor lives on detached.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Plain stderr logging: before the fork this reaches the caller, after it the shim log.
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).try_init();
    let cfg = ShimConfig {
        id: args.id,
        bundle: args.bundle,
        state_dir: args.state_dir,
        log_path: args.log_path,
        runtime: args.runtime,
        runtime_root: args.runtime_root,
        cgroups_path: args.cgroups_path,
    };
    shim::run(&cfg)?;
    Ok(())
}

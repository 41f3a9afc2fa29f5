//! `berth shim`: the per-container supervisor the runtime starts (hidden; not for people).
//! Its flags are written and parsed by `berth_runtime::shim` (one format for both sides).

use berth_runtime::shim::{self, ShimConfig};

/// Arguments of `berth shim`: `--id ID --bundle DIR --log-path FILE --state-dir DIR
/// --runtime RUNC --runtime-root DIR [--cgroup-path PATH]`.
#[derive(clap::Args)]
pub struct Args {
    /// The shim flags, passed through to `ShimConfig::from_args`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    raw: Vec<String>,
}

/// Runs `berth shim` (synchronously: the shim must stay single-threaded until it forks runc).
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ShimConfig::from_args(args.raw).map_err(anyhow::Error::msg)?;
    shim::run(&cfg)?;
    Ok(())
}

/// Arguments of `berth oci-runtime RUNTIME ARGS...` (hidden): runs the OCI runtime with the
/// view of cgroups it needs (see `berth_runtime::ociruntime::command_via`).
#[derive(clap::Args)]
pub struct OciArgs {
    /// The OCI runtime binary.
    runtime: std::path::PathBuf,
    /// Its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

/// Runs `berth oci-runtime`: replaces this process with the OCI runtime (returns only on error).
pub fn oci_runtime(a: OciArgs) -> anyhow::Result<()> {
    let err = berth_runtime::ociruntime::exec_with_private_view(&a.runtime, &a.args);
    Err(anyhow::anyhow!("running {}: {err}", a.runtime.display()))
}

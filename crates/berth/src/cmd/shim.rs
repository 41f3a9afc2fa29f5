//! `berth shim`.

/// Arguments of `berth shim`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth shim`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth shim` is not available in this build yet")
}

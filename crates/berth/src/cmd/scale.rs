//! `berth scale`.

/// Arguments of `berth scale`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth scale`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth scale` is not available in this build yet")
}

//! `berth crd`.

/// Arguments of `berth crd`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth crd`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth crd` is not available in this build yet")
}

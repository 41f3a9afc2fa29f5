//! `berth registry`.

/// Arguments of `berth registry`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth registry`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth registry` is not available in this build yet")
}

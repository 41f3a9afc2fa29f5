//! `berth bench registry`.

/// Arguments of `berth bench registry`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth bench registry`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth bench registry` is not available in this build yet")
}

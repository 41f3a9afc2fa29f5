//! `berth runtime`.

/// Arguments of `berth runtime`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth runtime`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth runtime` is not available in this build yet")
}

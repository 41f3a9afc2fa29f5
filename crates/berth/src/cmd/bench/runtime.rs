//! `berth bench runtime`.

/// Arguments of `berth bench runtime`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth bench runtime`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth bench runtime` is not available in this build yet")
}

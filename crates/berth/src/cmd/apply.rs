//! `berth apply`.

/// Arguments of `berth apply`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth apply`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth apply` is not available in this build yet")
}

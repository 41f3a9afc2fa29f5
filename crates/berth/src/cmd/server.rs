//! `berth server`.

/// Arguments of `berth server`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth server`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth server` is not available in this build yet")
}

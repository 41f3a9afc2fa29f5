//! `berth delete`.

/// Arguments of `berth delete`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth delete`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth delete` is not available in this build yet")
}

//! `berth get`.

/// Arguments of `berth get`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth get`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth get` is not available in this build yet")
}

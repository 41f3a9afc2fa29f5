//! `berth describe`.

/// Arguments of `berth describe`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth describe`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth describe` is not available in this build yet")
}

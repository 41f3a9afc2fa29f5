//! `berth bench api`.

/// Arguments of `berth bench api`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth bench api`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth bench api` is not available in this build yet")
}

//! `berth bench image`.

/// Arguments of `berth bench image`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth bench image`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`berth bench image` is not available in this build yet")
}

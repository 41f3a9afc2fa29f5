//! `berth down`: stops everything `berth up` started from a data dir and removes what it made
//! (containers, network namespaces, bridges, routes, mounts, cgroups) with the launcher's one
//! teardown, [`berth_launch::down`]. The data dir's state files stay.

use std::path::PathBuf;

use anyhow::Context as _;

/// Arguments of `berth down`.
#[derive(clap::Args)]
pub struct Args {
    /// The data dir `berth up` ran with (default: as `berth up`'s).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs `berth down`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = args
        .data_dir
        .unwrap_or_else(super::server::default_data_dir);
    let report = berth_launch::down(&dir)
        .with_context(|| format!("taking down what runs from {}", dir.display()))?;
    println!("berth down: {}", dir.display());
    for line in report.to_string().lines() {
        println!("  {line}");
    }
    Ok(())
}

//! `berth crd`: prints the ModelService CustomResourceDefinition, for installing berth's API into
//! another Kubernetes cluster (`berth crd | kubectl apply -f -`).

use std::io::Write;

use anyhow::Context;

/// Arguments of `berth crd`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `berth crd`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    let yaml = berth_api::crd_yaml().context("serializing the CRD")?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

//! `berth scale`: sets the replicas of a ModelService (or any kind with a scale subresource)
//! through its scale subresource, like `kubectl scale`.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::client::connect::ConnArgs;
use crate::client::discovery::Catalog;
use crate::client::errors::explain;
use crate::client::target;

/// Arguments of `berth scale`.
#[derive(clap::Args)]
pub struct Args {
    /// KIND NAME or KIND/NAME, e.g. `ms churn-model`.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: i32,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `berth scale`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(scale(args))?
}

async fn scale(args: Args) -> anyhow::Result<()> {
    if args.replicas < 0 {
        anyhow::bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let targets = target::parse(&args.targets)?;
    let conn = args.conn.connect().await?;
    let catalog = Catalog::load(&conn.client).await?;
    let mut failed = Vec::new();
    for t in targets {
        let kind = catalog.find(&t.kind)?;
        if !kind.subresources.iter().any(|s| s == "scale") {
            anyhow::bail!(
                "{} cannot be scaled (it has no scale subresource)",
                kind.ar.plural
            );
        }
        if t.names.is_empty() {
            anyhow::bail!("resource(s) were provided, but no name was specified");
        }
        let api: Api<DynamicObject> = if kind.namespaced {
            Api::namespaced_with(conn.client.clone(), &conn.namespace, &kind.ar)
        } else {
            Api::all_with(conn.client.clone(), &kind.ar)
        };
        let patch = json!({"spec": {"replicas": args.replicas}});
        let params = PatchParams {
            field_manager: Some("berth-scale".into()),
            ..Default::default()
        };
        for name in &t.names {
            match api.patch_scale(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => println!("{}/{name} scaled", kind.object_prefix()),
                Err(e) => failed.push(explain(e)),
            }
        }
    }
    super::get::finish(failed)
}

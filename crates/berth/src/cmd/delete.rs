//! `berth delete`: deletes objects named on the command line (`KIND NAME...`, `KIND/NAME`) or in
//! manifests (`-f`), prints `kind.group "name" deleted` like kubectl, and by default waits until
//! each object is really gone (finalizers and garbage collection may take a moment).

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject};

use crate::client::connect::{Conn, ConnArgs};
use crate::client::discovery::{Catalog, Kind};
use crate::client::errors::{explain, is_not_found};
use crate::client::{manifest, target};

/// Arguments of `berth delete`.
#[derive(clap::Args)]
pub struct Args {
    /// KIND NAME... or KIND/NAME... (omit with -f).
    pub targets: Vec<String>,
    /// Files or directories of manifests naming the objects, or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// Descend into subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Wait until the objects are gone (`--wait=false` returns at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// How long to wait, e.g. `30s`, `2m` (plain numbers are seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Delete the objects of KIND matching this label selector (instead of names).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of KIND in the namespace.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Parses `90`, `30s`, `2m`, `1h` (no days: kubectl's `--timeout` takes none).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    berth_api::duration::parse(s)
}

/// One object to delete.
struct Item<'a> {
    kind: &'a Kind,
    namespace: Option<String>,
    name: String,
}

/// Runs `berth delete`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(delete(args))?
}

async fn delete(args: Args) -> anyhow::Result<()> {
    if args.files.is_empty() == args.targets.is_empty() {
        anyhow::bail!("give either -f FILENAME or KIND NAME..., not both or neither");
    }
    let docs = if args.files.is_empty() {
        Vec::new()
    } else {
        manifest::read_all(&args.files, args.recursive, "delete")?
    };
    let conn = args.conn.connect().await?;
    let catalog = Catalog::load(&conn.client).await?;
    let items = if docs.is_empty() {
        items_from_args(&args, &conn, &catalog).await?
    } else {
        items_from_docs(&docs, &conn, &catalog)?
    };
    if items.is_empty() {
        eprintln!("No resources found");
    }
    let mut failed = Vec::new();
    let mut deleted = Vec::new();
    for item in &items {
        let api = api_for(&conn.client, item);
        match api.delete(&item.name, &DeleteParams::default()).await {
            Ok(either) => {
                let uid = either.left().and_then(|o| o.metadata.uid);
                println!("{} \"{}\" deleted", item.kind.object_prefix(), item.name);
                deleted.push((item, api, uid));
            }
            Err(e) if is_not_found(&e) && args.ignore_not_found => {}
            Err(e) => failed.push(explain(e)),
        }
    }
    if args.wait {
        let deadline = Instant::now() + args.timeout;
        for (item, api, uid) in &deleted {
            if let Err(e) = wait_gone(api, &item.name, uid.as_deref(), deadline).await {
                failed.push(e);
            }
        }
    }
    super::get::finish(failed)
}

async fn items_from_args<'a>(
    args: &Args,
    conn: &Conn,
    catalog: &'a Catalog,
) -> anyhow::Result<Vec<Item<'a>>> {
    let mut items = Vec::new();
    for t in target::parse(&args.targets)? {
        let kind = catalog.find(&t.kind)?;
        let namespace = kind.namespaced.then(|| conn.namespace.clone());
        let by_query = args.selector.is_some() || args.all;
        let names = match (t.names.is_empty(), by_query) {
            (false, false) => t.names,
            (true, true) => {
                list_names(conn, kind, namespace.as_deref(), args.selector.as_deref()).await?
            }
            (true, false) => anyhow::bail!("resource(s) were provided, but no name was specified"),
            (false, true) => {
                anyhow::bail!("name cannot be provided when a selector or --all is specified")
            }
        };
        items.extend(names.into_iter().map(|name| Item {
            kind,
            namespace: namespace.clone(),
            name,
        }));
    }
    Ok(items)
}

/// The names of the objects of `kind` matching `selector` (all of them when `None`).
async fn list_names(
    conn: &Conn,
    kind: &Kind,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let api = api_for(
        &conn.client,
        &Item {
            kind,
            namespace: namespace.map(String::from),
            name: String::new(),
        },
    );
    let mut lp = kube::api::ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let list = api.list(&lp).await.map_err(explain)?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect())
}

fn items_from_docs<'a>(
    docs: &[manifest::Doc],
    conn: &Conn,
    catalog: &'a Catalog,
) -> anyhow::Result<Vec<Item<'a>>> {
    docs.iter()
        .map(|doc| {
            let kind = catalog.by_gvk(doc.api_version(), doc.kind())?;
            let namespace = kind
                .namespaced
                .then(|| doc.namespace().unwrap_or(&conn.namespace).to_string());
            Ok(Item {
                kind,
                namespace,
                name: doc.name().to_string(),
            })
        })
        .collect()
}

fn api_for(client: &kube::Client, item: &Item<'_>) -> Api<DynamicObject> {
    match &item.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &item.kind.ar),
        None => Api::all_with(client.clone(), &item.kind.ar),
    }
}

/// Polls until the object is absent (or replaced by a new one with another uid).
async fn wait_gone(
    api: &Api<DynamicObject>,
    name: &str,
    uid: Option<&str>,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        match api.get_opt(name).await.map_err(explain)? {
            None => return Ok(()),
            Some(o) if uid.is_some() && o.metadata.uid.as_deref() != uid => return Ok(()),
            Some(_) if Instant::now() >= deadline => {
                anyhow::bail!(
                    "timed out waiting for \"{name}\" to be deleted (it may have finalizers)"
                )
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}

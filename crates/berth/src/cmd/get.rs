//! `berth get`: lists or shows objects as the server's Table (the columns each kind declares),
//! or as YAML/JSON/names, optionally watching for changes.

use crate::client;

use std::io::Write;

use anyhow::Context;
use futures::StreamExt;
use kube::Resource;
use kube::api::{DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::core::Request;
use serde_json::{Value, json};

use client::connect::{Conn, ConnArgs};
use client::discovery::{Catalog, Kind};
use client::errors::explain;
use client::table::{self, TABLE_ACCEPT, Table};

/// Output formats of `berth get`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The table with priority columns too.
    Wide,
    /// Objects as YAML.
    Yaml,
    /// Objects as JSON.
    Json,
    /// `kind.group/name` per object.
    Name,
}

/// Arguments of `berth get`.
#[derive(clap::Args)]
pub struct Args {
    /// KIND [NAME...] or KIND/NAME... (kinds by plural, singular, short name or Kind).
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Label selector, e.g. `app=churn-model`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Do not print the header line.
    #[arg(long)]
    pub no_headers: bool,
    /// Keep metadata.managedFields in YAML/JSON output.
    #[arg(long)]
    pub show_managed_fields: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `berth get`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(get(args))?
}

/// What one command prints for one kind.
struct Query<'a> {
    conn: &'a Conn,
    kind: &'a Kind,
    names: Vec<String>,
    namespace: Option<String>,
    /// Several kinds in one command: names get a `kind.group/` prefix.
    several: bool,
}

impl Query<'_> {
    /// The collection URL (`/apis/G/V/namespaces/NS/PLURAL`).
    fn url(&self) -> String {
        DynamicObject::url_path(&self.kind.ar, self.namespace.as_deref())
    }

    fn list_params(&self, selector: Option<&str>) -> ListParams {
        let mut lp = ListParams::default();
        if let Some(s) = selector {
            lp = lp.labels(s);
        }
        lp
    }
}

async fn get(args: Args) -> anyhow::Result<()> {
    let targets = client::target::parse(&args.targets)?;
    let conn = args.conn.connect().await?;
    let catalog = Catalog::load(&conn.client).await?;
    let mut failed = Vec::new();
    let mut printed_any = false;
    let mut kinds = Vec::new();
    for target in &targets {
        // `get cm,ms` lists several kinds.
        for name in target.kind.split(',').filter(|n| !n.is_empty()) {
            kinds.extend(
                catalog
                    .find_many(name)?
                    .into_iter()
                    .map(|k| (k, target.names.clone())),
            );
        }
    }
    let several = kinds.len() > 1;
    if several && args.watch {
        anyhow::bail!("you may only specify a single resource type with --watch");
    }
    for (kind, names) in kinds {
        let namespace = match (kind.namespaced, args.all_namespaces && names.is_empty()) {
            (true, false) => Some(conn.namespace.clone()),
            _ => None,
        };
        let q = Query {
            conn: &conn,
            kind,
            names,
            namespace,
            several,
        };
        let (printed, errs) = match args.output {
            Some(Output::Yaml | Output::Json | Output::Name) => print_objects(&q, &args).await?,
            _ => print_table(&q, &args, printed_any).await?,
        };
        printed_any |= printed;
        failed.extend(errs);
    }
    if !printed_any && failed.is_empty() && args.output != Some(Output::Name) && !args.watch {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", conn.namespace);
        }
    }
    finish(failed)
}

/// Prints the errors of objects that could not be read; fails when there were any.
pub fn finish(failed: Vec<anyhow::Error>) -> anyhow::Result<()> {
    let Some(last) = failed.len().checked_sub(1) else {
        return Ok(());
    };
    for e in &failed[..last] {
        eprintln!("{e:#}");
    }
    let mut failed = failed;
    Err(failed.remove(last))
}

/// Fetches the Table for the query (one request per named object, else one list).
async fn fetch_table(
    q: &Query<'_>,
    selector: Option<&str>,
) -> anyhow::Result<(Table, Vec<anyhow::Error>)> {
    let request = Request::new(q.url());
    if q.names.is_empty() {
        let mut req = request.list(&q.list_params(selector))?;
        req.headers_mut().insert("accept", TABLE_ACCEPT.parse()?);
        let t: Table = q.conn.client.request(req).await.map_err(explain)?;
        return Ok((t, Vec::new()));
    }
    let mut merged = Table::default();
    let mut errs = Vec::new();
    for name in &q.names {
        let mut req = request.get(name, &Default::default())?;
        req.headers_mut().insert("accept", TABLE_ACCEPT.parse()?);
        match q.conn.client.request::<Table>(req).await {
            Ok(t) => {
                merged.column_definitions = t.column_definitions;
                merged.rows.extend(t.rows);
                merged.metadata = t.metadata;
            }
            Err(e) => errs.push(explain(e)),
        }
    }
    Ok((merged, errs))
}

async fn print_table(
    q: &Query<'_>,
    args: &Args,
    after_other_table: bool,
) -> anyhow::Result<(bool, Vec<anyhow::Error>)> {
    let (mut t, errs) = fetch_table(q, args.selector.as_deref()).await?;
    if q.several {
        table::prefix_names(&mut t, &q.kind.object_prefix());
    }
    if after_other_table && !t.rows.is_empty() {
        println!();
    }
    let opts = table::Options {
        wide: args.output == Some(Output::Wide),
        namespace: q.namespace.is_none() && q.kind.namespaced,
    };
    let mut lines = Vec::new();
    if !args.no_headers && (!t.rows.is_empty() || args.watch) {
        lines.push(table::header(&t, opts));
    }
    lines.extend(table::rows(&t, opts));
    let widths = table::widths(&lines);
    let mut out = std::io::stdout().lock();
    for line in &lines {
        writeln!(out, "{}", table::format_line(line, &widths))?;
    }
    out.flush()?;
    drop(out);
    if args.watch {
        let rv = t.metadata["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        watch_rows(q, args, &rv, opts, widths).await?;
    }
    Ok((!t.rows.is_empty(), errs))
}

/// Streams one table row per change, aligned with the rows already printed.
async fn watch_rows(
    q: &Query<'_>,
    args: &Args,
    rv: &str,
    opts: table::Options,
    mut widths: Vec<usize>,
) -> anyhow::Result<()> {
    watch(q, args, rv, true, |obj| {
        let t: Table = serde_json::from_value(obj).context("decoding a watched Table")?;
        for row in table::rows(&t, opts) {
            let grown = table::widths(std::slice::from_ref(&row));
            widths = widths
                .iter()
                .zip(grown.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| *a.max(b))
                .collect();
            println!("{}", table::format_line(&row, &widths));
        }
        Ok(())
    })
    .await
}

/// Watches the query's objects from `rv` (as Tables when `tables`), calling `on_object` per
/// added, modified or deleted object; reconnects when the server ends a watch.
async fn watch(
    q: &Query<'_>,
    args: &Args,
    rv: &str,
    tables: bool,
    mut on_object: impl FnMut(Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut wp = WatchParams::default().timeout(290);
    if let Some(s) = &args.selector {
        wp = wp.labels(s);
    }
    if let [name] = q.names.as_slice() {
        wp = wp.fields(&format!("metadata.name={name}"));
    }
    let mut rv = rv.to_string();
    loop {
        let mut req = Request::new(q.url()).watch(&wp, &rv)?;
        if tables {
            req.headers_mut().insert("accept", TABLE_ACCEPT.parse()?);
        }
        let stream = q
            .conn
            .client
            .request_events::<Value>(req)
            .await
            .map_err(explain)?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let obj = match event.map_err(explain)? {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(e) => anyhow::bail!("watch: {}", e.message),
            };
            if let Some(v) = resource_version(&obj) {
                rv = v;
            }
            on_object(obj)?;
        }
    }
}

/// The resourceVersion of a watched object or one-row Table.
fn resource_version(obj: &Value) -> Option<String> {
    let from_row = || obj["rows"][0]["object"]["metadata"]["resourceVersion"].as_str();
    obj["metadata"]["resourceVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
        .or_else(from_row)
        .map(String::from)
}

/// Prints objects as YAML, JSON or names (with `-w`, one document per object and change).
async fn print_objects(q: &Query<'_>, args: &Args) -> anyhow::Result<(bool, Vec<anyhow::Error>)> {
    let (mut objects, errs, rv) = fetch_objects(q, args.selector.as_deref()).await?;
    for o in &mut objects {
        tidy(q, o, args);
    }
    let single = q.names.len() == 1 && objects.len() == 1;
    let text = match args.output {
        _ if args.watch => objects
            .iter()
            .map(|o| render_one(q, args, o))
            .collect::<Result<String, _>>()?,
        Some(Output::Name) => objects
            .iter()
            .map(|o| render_one(q, args, o))
            .collect::<Result<String, _>>()?,
        Some(Output::Json) if single => render_one(q, args, &objects[0])?,
        Some(Output::Json) => serde_json::to_string_pretty(&as_list(objects.clone()))? + "\n",
        _ if single => serde_yaml::to_string(&objects[0])?,
        _ => serde_yaml::to_string(&as_list(objects.clone()))?,
    };
    print!("{text}");
    if args.watch {
        watch(q, args, &rv, false, |mut obj| {
            tidy(q, &mut obj, args);
            print!("{}", render_one(q, args, &obj)?);
            Ok(())
        })
        .await?;
    }
    Ok((!objects.is_empty(), errs))
}

/// Hides managedFields (unless asked for) and fills in apiVersion and kind (list items may
/// omit them).
fn tidy(q: &Query<'_>, obj: &mut Value, args: &Args) {
    obj["apiVersion"] = json!(q.kind.ar.api_version);
    obj["kind"] = json!(q.kind.ar.kind);
    if !args.show_managed_fields
        && let Some(meta) = obj["metadata"].as_object_mut()
    {
        meta.remove("managedFields");
    }
}

/// One object in the chosen format; YAML documents start with `---` when watching.
fn render_one(q: &Query<'_>, args: &Args, obj: &Value) -> anyhow::Result<String> {
    Ok(match args.output {
        Some(Output::Name) => {
            format!(
                "{}/{}\n",
                q.kind.object_prefix(),
                obj["metadata"]["name"].as_str().unwrap_or("")
            )
        }
        Some(Output::Json) => serde_json::to_string_pretty(obj)? + "\n",
        _ if args.watch => format!("---\n{}", serde_yaml::to_string(obj)?),
        _ => serde_yaml::to_string(obj)?,
    })
}

/// Objects as JSON, with apiVersion and kind filled in (lists may omit them per item).
async fn fetch_objects(
    q: &Query<'_>,
    selector: Option<&str>,
) -> anyhow::Result<(Vec<Value>, Vec<anyhow::Error>, String)> {
    let request = Request::new(q.url());
    let mut objects = Vec::new();
    let mut errs = Vec::new();
    let mut rv = String::from("0");
    if q.names.is_empty() {
        let list: Value = q
            .conn
            .client
            .request(request.list(&q.list_params(selector))?)
            .await
            .map_err(explain)?;
        objects.extend(list["items"].as_array().cloned().unwrap_or_default());
        rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
    }
    for name in &q.names {
        match q
            .conn
            .client
            .request::<Value>(request.get(name, &Default::default())?)
            .await
        {
            Ok(o) => {
                // Watching named objects starts after the newest of them.
                if let Some(v) = resource_version(&o).filter(|v| newer(v, &rv)) {
                    rv = v;
                }
                objects.push(o);
            }
            Err(e) => errs.push(explain(e)),
        }
    }
    Ok((objects, errs, rv))
}

/// Whether resourceVersion `a` is newer than `b` (berth's are store revisions, so numeric).
fn newer(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a > b,
        _ => true,
    }
}

fn as_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

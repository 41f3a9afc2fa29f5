//! `berth apply`: server-side apply (field manager `berth`) of every object in the given
//! manifests, reporting each as `created`, `configured` or `unchanged` like kubectl.
//!
//! All manifests are read and every kind resolved before anything is sent, so malformed YAML
//! or an unknown kind changes nothing.

use kube::api::{Api, DynamicObject, Patch, PatchParams};

use crate::client::connect::ConnArgs;
use crate::client::discovery::{Catalog, Kind};
use crate::client::errors::explain;
use crate::client::manifest::{self, Doc};

/// The field manager berth's applies own fields as.
pub const FIELD_MANAGER: &str = "berth";

/// Arguments of `berth apply`.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories of manifests, or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Descend into subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Take ownership of fields other managers own (e.g. replicas changed by `berth scale`).
    #[arg(long)]
    pub force_conflicts: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist.
    Created,
    /// It existed and changed.
    Configured,
    /// It existed and the apply changed nothing (its resourceVersion did not move).
    Unchanged,
}

impl Outcome {
    /// Decides from the resourceVersion before (None: absent) and after the apply.
    pub fn from_versions(before: Option<&str>, after: Option<&str>) -> Outcome {
        match before {
            None => Outcome::Created,
            Some(b) if Some(b) == after => Outcome::Unchanged,
            Some(_) => Outcome::Configured,
        }
    }

    /// The word kubectl prints.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Runs `berth apply`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(apply(args))?
}

async fn apply(args: Args) -> anyhow::Result<()> {
    let docs = manifest::read_all(&args.files, args.recursive, "apply")?;
    let conn = args.conn.connect().await?;
    let catalog = Catalog::load(&conn.client).await?;
    // Resolve everything first: an unknown kind anywhere stops the whole apply.
    let mut plan = Vec::new();
    for doc in &docs {
        let kind = catalog.by_gvk(doc.api_version(), doc.kind()).map_err(|e| {
            anyhow::anyhow!("resource mapping not found for name: \"{}\" from \"{}\": {e}\nensure CRDs are installed first", doc.name(), doc.source)
        })?;
        let namespace = namespace_for(doc, kind, &conn.namespace, conn.namespace_explicit)?;
        plan.push((doc, kind, namespace));
    }
    let params = PatchParams {
        force: args.force_conflicts,
        ..PatchParams::apply(FIELD_MANAGER)
    };
    let mut failed = Vec::new();
    for (doc, kind, namespace) in plan {
        match apply_one(&conn.client, doc, kind, namespace.as_deref(), &params).await {
            Ok(outcome) => println!("{}/{} {}", kind.object_prefix(), doc.name(), outcome.word()),
            Err(e) if e.to_string().starts_with("Error from server (Conflict): Apply failed") => failed.push(anyhow::anyhow!(
                "{e}\nThe fields above are owned by other managers (e.g. `berth scale`); re-run with --force-conflicts to take them over."
            )),
            Err(e) => failed.push(e),
        }
    }
    super::get::finish(failed)
}

/// The namespace an object goes to: its own, else `-n`/the context's; an object naming another
/// namespace than an explicit `-n` is refused like kubectl does.
fn namespace_for(
    doc: &Doc,
    kind: &Kind,
    current: &str,
    explicit: bool,
) -> anyhow::Result<Option<String>> {
    if !kind.namespaced {
        return Ok(None);
    }
    match doc.namespace() {
        Some(ns) if explicit && ns != current => anyhow::bail!(
            "the namespace from the provided object \"{ns}\" does not match the namespace \"{current}\". You must pass '--namespace={ns}' to perform this operation."
        ),
        Some(ns) => Ok(Some(ns.to_string())),
        None => Ok(Some(current.to_string())),
    }
}

async fn apply_one(
    client: &kube::Client,
    doc: &Doc,
    kind: &Kind,
    namespace: Option<&str>,
    params: &PatchParams,
) -> anyhow::Result<Outcome> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.ar),
        None => Api::all_with(client.clone(), &kind.ar),
    };
    let before = api.get_opt(doc.name()).await.map_err(explain)?;
    let mut body = doc.obj.clone();
    // Server-side apply bodies must not carry a resourceVersion of a stale copy.
    if let Some(meta) = body["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let after = api
        .patch(doc.name(), params, &Patch::Apply(&body))
        .await
        .map_err(explain)?;
    let rv_before = before
        .as_ref()
        .and_then(|o| o.metadata.resource_version.as_deref());
    let outcome = Outcome::from_versions(rv_before, after.metadata.resource_version.as_deref());
    // A server may record a no-op apply (fresh managedFields timestamps, a new resourceVersion);
    // the object itself did not change, which is what "unchanged" tells the user.
    if outcome == Outcome::Configured && before.as_ref().map(content) == Some(content(&after)) {
        return Ok(Outcome::Unchanged);
    }
    Ok(outcome)
}

/// The object without bookkeeping that changes on every write.
fn content(obj: &DynamicObject) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_follows_resource_versions() {
        assert_eq!(Outcome::from_versions(None, Some("5")), Outcome::Created);
        assert_eq!(
            Outcome::from_versions(Some("5"), Some("5")),
            Outcome::Unchanged
        );
        assert_eq!(
            Outcome::from_versions(Some("5"), Some("7")),
            Outcome::Configured
        );
        assert_eq!(Outcome::Configured.word(), "configured");
    }
}

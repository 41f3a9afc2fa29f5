//! `berth rollout status`: follow a ModelService's rollout like `kubectl rollout status
//! deployment/NAME`, printing a line whenever the progress changes (from a watch, not polling) and
//! exiting 0 once every replica runs the current spec and is available.

use std::time::Duration;

use berth_api::ModelService;
use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::client::connect::ConnArgs;
use crate::client::errors::explain;
use crate::client::target;

/// Arguments of `berth rollout`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Watch a ModelService's rollout until it finishes (`berth rollout status ms/NAME`).
    Status(StatusArgs),
}

/// Arguments of `berth rollout status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// `ms/NAME`, or `ms NAME`.
    #[arg(required = true, num_args = 1..=2)]
    pub targets: Vec<String>,
    /// Give up after this long (e.g. 90s, 5m); 0 waits forever.
    #[arg(long, default_value = "0s", value_parser = berth_api::duration::parse)]
    pub timeout: Duration,
    /// Keep watching until the rollout finishes; `--watch=false` prints the state once.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub watch: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `berth rollout`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Status(a) => crate::rt::block_on(status(a))?,
    }
}

/// Where a rollout stands, as `kubectl rollout status` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Still going; the line to print.
    Waiting(String),
    /// Every replica runs the current spec and is available.
    Done(String),
    /// The controller reported `Progressing=False` (e.g. ProgressDeadlineExceeded).
    Failed(String),
}

/// Judges a ModelService's rollout from its spec, generation and status.
pub fn progress(ms: &ModelService) -> Progress {
    let name = ms.metadata.name.as_deref().unwrap_or_default();
    let Some(status) = &ms.status else {
        return Progress::Waiting("Waiting for rollout spec update to be observed...".into());
    };
    let generation = ms.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("Waiting for rollout spec update to be observed...".into());
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing" && c.status == "False")
    {
        let reason = c.reason.as_deref().unwrap_or("Unknown");
        let message = c.message.as_deref().unwrap_or_default();
        return Progress::Failed(format!(
            "modelservice \"{name}\" rollout failed ({reason}): {message}"
        ));
    }
    let want = ms.spec.replicas;
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Progress::Waiting(format!(
            "Waiting for rollout to finish: {updated} out of {want} new replicas have been updated..."
        ));
    }
    if total > updated {
        return Progress::Waiting(format!(
            "Waiting for rollout to finish: {} old replicas are pending termination...",
            total - updated
        ));
    }
    if available < updated || ready < updated {
        return Progress::Waiting(format!(
            "Waiting for rollout to finish: {} of {updated} updated replicas are available...",
            available.min(ready)
        ));
    }
    Progress::Done(format!("modelservice \"{name}\" successfully rolled out"))
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let name = target_name(&args.targets)?;
    let conn = args.conn.connect().await?;
    let api: Api<ModelService> = Api::namespaced(conn.client.clone(), &conn.namespace);
    // Fail fast (like kubectl) when it does not exist, instead of waiting for it to appear.
    let current = api.get(&name).await.map_err(explain)?;
    if !args.watch {
        return match progress(&current) {
            Progress::Failed(m) => anyhow::bail!("{m}"),
            Progress::Waiting(m) | Progress::Done(m) => {
                println!("{m}");
                Ok(())
            }
        };
    }
    let follow = follow(api, name.clone());
    if args.timeout.is_zero() {
        return follow.await;
    }
    tokio::time::timeout(args.timeout, follow)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "timed out waiting for the condition (modelservice \"{name}\", {:?})",
                args.timeout
            )
        })?
}

/// Watches the ModelService, printing each new progress line, until done, failed or deleted.
async fn follow(api: Api<ModelService>, name: String) -> anyhow::Result<()> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut last = String::new();
    while let Some(event) = events.next().await {
        let ms = match event {
            Ok(watcher::Event::Apply(ms) | watcher::Event::InitApply(ms)) => ms,
            Ok(watcher::Event::Delete(_)) => anyhow::bail!("modelservice \"{name}\" was deleted"),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            // The backoff retries; a transient error only delays the next line.
            Err(e) => {
                tracing::debug!(error = %e, "watch error");
                continue;
            }
        };
        match progress(&ms) {
            Progress::Done(m) => {
                println!("{m}");
                return Ok(());
            }
            Progress::Failed(m) => anyhow::bail!("{m}"),
            Progress::Waiting(m) if m != last => {
                println!("{m}");
                last = m;
            }
            Progress::Waiting(_) => {}
        }
    }
    anyhow::bail!("the watch of modelservice \"{name}\" ended")
}

/// The ModelService name from `ms/NAME` or `ms NAME` (other kinds have no rollout here).
fn target_name(args: &[String]) -> anyhow::Result<String> {
    let targets = target::parse(args)?;
    let [t] = targets.as_slice() else {
        anyhow::bail!("rollout status takes exactly one ModelService");
    };
    let kind = t.kind.to_ascii_lowercase();
    let known = [
        "ms",
        "modelservice",
        "modelservices",
        "modelservice.berth.dev",
        "modelservices.berth.dev",
    ];
    anyhow::ensure!(
        known.contains(&kind.as_str()),
        "no rollout for {:?}: only ModelServices (ms/NAME) have rollouts",
        t.kind
    );
    match t.names.as_slice() {
        [n] => Ok(n.clone()),
        [] => anyhow::bail!("required resource name not specified (e.g. ms/churn-model)"),
        _ => anyhow::bail!("rollout status takes exactly one ModelService"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{ModelServiceCondition, ModelServiceStatus};

    fn ms(generation: i64, want: i32, status: Option<ModelServiceStatus>) -> ModelService {
        let mut ms: ModelService = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
            "metadata": {"name": "m", "generation": generation},
            "spec": {"image": "x:1", "replicas": want}
        }))
        .unwrap();
        ms.status = status;
        ms
    }

    fn st(observed: i64, total: i32, updated: i32, ready: i32) -> ModelServiceStatus {
        ModelServiceStatus {
            observed_generation: Some(observed),
            replicas: Some(total),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            ..Default::default()
        }
    }

    #[test]
    fn stale_generation_waits_for_observation() {
        let p = progress(&ms(3, 3, Some(st(2, 3, 3, 3))));
        assert_eq!(
            p,
            Progress::Waiting("Waiting for rollout spec update to be observed...".into())
        );
    }

    #[test]
    fn each_phase_has_its_line() {
        let updating = progress(&ms(2, 3, Some(st(2, 4, 1, 3))));
        assert_eq!(
            updating,
            Progress::Waiting(
                "Waiting for rollout to finish: 1 out of 3 new replicas have been updated..."
                    .into()
            )
        );
        let old = progress(&ms(2, 3, Some(st(2, 4, 3, 3))));
        assert_eq!(
            old,
            Progress::Waiting(
                "Waiting for rollout to finish: 1 old replicas are pending termination...".into()
            )
        );
        let avail = progress(&ms(2, 3, Some(st(2, 3, 3, 1))));
        assert_eq!(
            avail,
            Progress::Waiting(
                "Waiting for rollout to finish: 1 of 3 updated replicas are available...".into()
            )
        );
        let done = progress(&ms(2, 3, Some(st(2, 3, 3, 3))));
        assert_eq!(
            done,
            Progress::Done("modelservice \"m\" successfully rolled out".into())
        );
    }

    #[test]
    fn progressing_false_fails() {
        let mut s = st(2, 3, 1, 1);
        s.conditions.push(ModelServiceCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("too slow".into()),
            ..Default::default()
        });
        let Progress::Failed(m) = progress(&ms(2, 3, Some(s))) else {
            panic!("not failed")
        };
        assert!(m.contains("ProgressDeadlineExceeded"), "{m}");
    }

    #[test]
    fn targets_and_durations() {
        assert_eq!(target_name(&["ms/churn".into()]).unwrap(), "churn");
        assert_eq!(
            target_name(&["modelservice".into(), "churn".into()]).unwrap(),
            "churn"
        );
        assert!(target_name(&["pods/x".into()]).is_err());
        assert_eq!(
            berth_api::duration::parse("5m").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            berth_api::duration::parse("90").unwrap(),
            Duration::from_secs(90)
        );
        assert!(berth_api::duration::parse("soon").is_err());
    }
}

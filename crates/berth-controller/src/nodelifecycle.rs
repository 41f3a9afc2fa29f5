//! The node lifecycle controller: a node whose Lease (`kube-node-lease/<node>`) has not been
//! renewed within the grace period is marked `Ready=Unknown` and its Pods are deleted, so the
//! ModelService controller replaces them and the scheduler places them on live nodes.
//!
//! Nodes that never had a Lease are left alone: without a heartbeat there is nothing to judge.
//! Staleness counts from the controller's own start at the earliest, so restarting the server
//! after a long stop does not evict every Pod before the agents had a chance to renew.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::ControllerOptions;

/// Namespace of the node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Errors of one node check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    opts: ControllerOptions,
    /// When this controller started: a heartbeat missed while no controller was watching (the
    /// whole server was down) is not the node's fault, so staleness counts from here at the
    /// earliest — the node gets a full grace period to renew after a server restart.
    started: Timestamp,
}

/// Whether a heartbeat renewed at `renewed` is older than `grace` at `now`, and if not, how long
/// until it will be.
pub fn staleness(renewed: Timestamp, now: Timestamp, grace: Duration) -> Result<(), Duration> {
    let age_ms = now
        .as_millisecond()
        .saturating_sub(renewed.as_millisecond())
        .max(0);
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    if age_ms > grace_ms {
        Ok(())
    } else {
        Err(Duration::from_millis((grace_ms - age_ms) as u64))
    }
}

/// Runs the node lifecycle controller until the future is dropped.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let ctx = Arc::new(Ctx {
        client,
        opts,
        started: Timestamp::now(),
    });
    Controller::new(nodes, watcher::Config::default())
        .watches(leases, watcher::Config::default(), |lease: Lease| {
            Some(ObjectRef::<Node>::new(&lease.name_any()))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            crate::outcome::log("node-lifecycle", r, |Error::Kube(e)| {
                crate::outcome::is_not_found(e)
            })
        })
        .await;
    Ok(())
}

fn error_policy(_node: Arc<Node>, err: &Error, ctx: Arc<Ctx>) -> Action {
    warn!(error = %err, "node check error; retrying");
    Action::requeue(ctx.opts.retry_after)
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = node.name_any();
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), LEASE_NAMESPACE);
    let Some(lease) = leases.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let Some(renewed) = lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0)
    else {
        return Ok(Action::await_change());
    };
    match staleness(
        renewed.max(ctx.started),
        Timestamp::now(),
        ctx.opts.node_grace,
    ) {
        // Check again just after the heartbeat would expire (a renewal wakes us earlier).
        Err(left) => Ok(Action::requeue(left + Duration::from_millis(200))),
        Ok(()) => {
            mark_unknown(&ctx.client, &node).await?;
            evict(&ctx.client, &name).await?;
            // Nothing changes until the agent renews the Lease, which triggers a reconcile.
            Ok(Action::await_change())
        }
    }
}

fn ready_status(node: &Node) -> Option<&str> {
    let conds = node.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

async fn mark_unknown(client: &kube::Client, node: &Node) -> Result<(), Error> {
    if ready_status(node) == Some("Unknown") {
        return Ok(());
    }
    let now = Time(Timestamp::now());
    let old = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conds: Vec<NodeCondition> = old.into_iter().filter(|c| c.type_ != "Ready").collect();
    conds.push(NodeCondition {
        type_: "Ready".to_string(),
        status: "Unknown".to_string(),
        reason: Some("NodeStatusUnknown".to_string()),
        message: Some("Kubelet stopped posting node status.".to_string()),
        last_transition_time: Some(now),
        ..NodeCondition::default()
    });
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": conds}});
    api.patch_status(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    info!(node = %node.name_any(), "node lease expired; marked Ready=Unknown");
    Ok(())
}

/// Deletes every Pod bound to the node at once (its agent is gone and cannot stop them
/// gracefully), so that their controllers create replacements.
async fn evict(client: &kube::Client, node: &str) -> Result<(), Error> {
    let all: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    for pod in all.list(&lp).await?.items {
        let Some(ns) = pod.meta().namespace.clone() else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        match api
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => info!(pod = %pod.name_any(), node, "deleted pod of lost node"),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                debug!(pod = %pod.name_any(), "already gone")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_and_stale_heartbeats() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let grace = Duration::from_secs(40);
        assert_eq!(
            staleness(t0, Timestamp::from_second(1_010).unwrap(), grace),
            Err(Duration::from_secs(30))
        );
        assert_eq!(
            staleness(t0, Timestamp::from_second(1_040).unwrap(), grace),
            Err(Duration::ZERO)
        );
        assert_eq!(
            staleness(t0, Timestamp::from_second(1_041).unwrap(), grace),
            Ok(())
        );
        // A renewal from the future (clock skew) is fresh.
        assert!(staleness(Timestamp::from_second(2_000).unwrap(), t0, grace).is_err());
    }
}

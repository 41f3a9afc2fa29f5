//! The node lifecycle controller: a node whose Lease (`kube-node-lease/<node>`) has not been
//! renewed within the grace period is marked `Ready=Unknown`, tainted
//! `node.kubernetes.io/unreachable` (NoSchedule and NoExecute, as Kubernetes does) and its Pods
//! are deleted, so the ModelService controller replaces them and the scheduler places them on
//! live nodes. Once the Lease is renewed again and the agent has posted `Ready=True`, the taints
//! are removed.
//!
//! A renewal counts from when this controller saw the Lease's `renewTime` change, on its own
//! clock (as Kubernetes' node lifecycle controller does), so nodes whose clocks are off by more
//! than the grace period are not taken for lost. Nodes that never had a Lease are left alone:
//! without a heartbeat there is nothing to judge. A Lease seen for the first time counts as
//! renewed then, so restarting the server after a long stop does not evict every Pod before the
//! agents had a chance to renew. When no node at all has been heard from within the grace period,
//! lost nodes are marked but their Pods are kept (as Kubernetes stops evicting in a fully
//! disrupted zone): there is nowhere to move them, and the silence is likelier the server's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
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
use crate::fit::ready_status;

/// Namespace of the node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The taint of a node whose heartbeat stopped (Kubernetes' name).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// The longest wait before a failed check is retried, whatever [`ControllerOptions::retry_after`]
/// says: a failure here delays moving a lost node's Pods, which is what this controller is for.
const RETRY_CAP: Duration = Duration::from_millis(500);

/// How long after a heartbeat would expire the node is checked again (a renewal wakes the
/// check earlier).
const EXPIRY_SLACK: Duration = Duration::from_millis(200);

/// How often a lost node's Pods are reconsidered while no node is alive.
const FULL_DISRUPTION_RECHECK: Duration = Duration::from_secs(1);

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
    heartbeats: Heartbeats,
}

/// The last `renewTime` seen in each node's Lease and when (on this controller's clock) it was
/// first seen.
#[derive(Default)]
struct Heartbeats(Mutex<HashMap<String, (Timestamp, Timestamp)>>);

impl Heartbeats {
    /// When the renewal at `renewed` was first seen (now, if it is new).
    fn heard(&self, node: &str, renewed: Timestamp) -> Timestamp {
        let now = Timestamp::now();
        let Ok(mut seen) = self.0.lock() else {
            // A poisoned map (a panic elsewhere) must not evict: count the renewal as fresh.
            return now;
        };
        let entry = seen.entry(node.to_string()).or_insert((renewed, now));
        if entry.0 != renewed {
            *entry = (renewed, now);
        }
        entry.1
    }

    /// Whether some node other than `node` was heard from within `grace`: if none was, the
    /// silence is more likely this controller's (or the network's) than every node's, and
    /// there would be nowhere to move Pods to anyway.
    fn others_alive(&self, node: &str, grace: Duration) -> bool {
        let now = Timestamp::now();
        let Ok(seen) = self.0.lock() else {
            return false;
        };
        seen.iter()
            .any(|(n, (_, heard))| n != node && staleness(*heard, now, grace).is_err())
    }

    fn forget(&self, node: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.remove(node);
        }
    }
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

/// `taints` with the unreachable taint in both effects, or `None` when both are there already.
/// The NoExecute one carries `timeAdded` (as Kubernetes stamps it).
pub fn with_unreachable(taints: &[Taint], now: Timestamp) -> Option<Vec<Taint>> {
    let has = |effect: &str| {
        taints
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT && t.effect == effect)
    };
    let missing: Vec<Taint> = ["NoSchedule", "NoExecute"]
        .into_iter()
        .filter(|e| !has(e))
        .map(|effect| Taint {
            key: UNREACHABLE_TAINT.to_string(),
            effect: effect.to_string(),
            time_added: (effect == "NoExecute").then_some(Time(now)),
            value: None,
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(taints.iter().cloned().chain(missing).collect())
}

/// `taints` without the unreachable taint, or `None` when it is not there.
pub fn without_unreachable(taints: &[Taint]) -> Option<Vec<Taint>> {
    let kept: Vec<Taint> = taints
        .iter()
        .filter(|t| t.key != UNREACHABLE_TAINT)
        .cloned()
        .collect();
    (kept.len() != taints.len()).then_some(kept)
}

/// Runs the node lifecycle controller until the future is dropped.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let ctx = Arc::new(Ctx {
        client,
        opts,
        heartbeats: Heartbeats::default(),
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
    Action::requeue(ctx.opts.retry_after.min(RETRY_CAP))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = node.name_any();
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), LEASE_NAMESPACE);
    let renewed = leases
        .get_opt(&name)
        .await?
        .and_then(|lease| lease.spec.and_then(|s| s.renew_time).map(|t| t.0));
    let Some(renewed) = renewed else {
        ctx.heartbeats.forget(&name);
        return Ok(Action::await_change());
    };
    let heard = ctx.heartbeats.heard(&name, renewed);
    match staleness(heard, Timestamp::now(), ctx.opts.node_grace) {
        Err(left) => {
            recover(&ctx.client, &node).await?;
            Ok(Action::requeue(left + EXPIRY_SLACK))
        }
        Ok(()) => {
            let node = mark_unknown(&ctx.client, &node).await?;
            set_taints(&ctx.client, &node, with_unreachable).await?;
            if !ctx.heartbeats.others_alive(&name, ctx.opts.node_grace) {
                debug!(node = %name, "no node is alive: keeping the lost node's Pods for now");
                return Ok(Action::requeue(FULL_DISRUPTION_RECHECK));
            }
            evict(&ctx.client, &name).await?;
            // Nothing changes until the agent renews the Lease, which triggers a reconcile.
            Ok(Action::await_change())
        }
    }
}

/// A node heard from again: once its agent has posted `Ready=True`, the unreachable taints go.
async fn recover(client: &kube::Client, node: &Node) -> Result<(), Error> {
    if ready_status(node) != Some("True") {
        return Ok(());
    }
    if set_taints(client, node, |t, _| without_unreachable(t)).await? {
        info!(node = %node.name_any(), "node heard from again and Ready; unreachable taints removed");
    }
    Ok(())
}

/// Sets `spec.taints` to what `change` makes of them, if it changes them (`true` then). The patch
/// carries the node's resourceVersion, so a taint someone added meanwhile is not overwritten: the
/// check fails with a conflict and runs again.
async fn set_taints(
    client: &kube::Client,
    node: &Node,
    change: impl Fn(&[Taint], Timestamp) -> Option<Vec<Taint>>,
) -> Result<bool, Error> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let Some(taints) = change(current, Timestamp::now()) else {
        return Ok(false);
    };
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": taints},
    });
    let api: Api<Node> = Api::all(client.clone());
    api.patch(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

/// Sets `Ready=Unknown` (unless it is already); returns the Node as it is now.
async fn mark_unknown(client: &kube::Client, node: &Node) -> Result<Node, Error> {
    if ready_status(node) == Some("Unknown") {
        return Ok(node.clone());
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
    let marked = api
        .patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    info!(node = %node.name_any(), "node lease expired; marked Ready=Unknown");
    Ok(marked)
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

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millisecond(s).unwrap()
    }

    #[test]
    fn fresh_and_stale_heartbeats() {
        let t0 = at(1_000_000);
        let grace = Duration::from_secs(40);
        assert_eq!(
            staleness(t0, at(1_010_000), grace),
            Err(Duration::from_secs(30))
        );
        assert_eq!(staleness(t0, at(1_040_000), grace), Err(Duration::ZERO));
        assert_eq!(staleness(t0, at(1_041_000), grace), Ok(()));
        // A renewal from the future (clock skew) is fresh.
        assert!(staleness(at(2_000_000), t0, grace).is_err());
    }

    #[test]
    fn at_the_defaults_a_late_renewal_is_no_loss_but_a_dead_node_is_found_within_the_grace() {
        let grace = ControllerOptions::default().node_grace;
        assert_eq!(grace, Duration::from_secs(5));
        // Renewals every second; one arrives a second late (2 s after the previous one), and
        // the check runs just before it lands: still fresh.
        let last = at(1_000_000);
        assert!(staleness(last, at(1_000_000 + 1_999), grace).is_err());
        // Even three beats missed in a row are forgiven.
        assert!(staleness(last, at(1_000_000 + 4_000), grace).is_err());
        // A node that died right after renewing is found lost within the grace (plus the slack
        // the check is scheduled with).
        let left = staleness(last, at(1_000_000 + 10), grace).unwrap_err();
        assert!(left <= grace, "{left:?}");
        assert_eq!(
            staleness(last, at(1_000_000) + grace + EXPIRY_SLACK, grace),
            Ok(())
        );
    }

    #[test]
    fn renewals_count_from_when_they_are_seen() {
        let beats = Heartbeats::default();
        // An agent whose clock is an hour behind renews: that renewal is fresh, because it counts
        // from when the controller saw it.
        let skewed = Timestamp::now() - std::time::Duration::from_secs(3600);
        let heard = beats.heard("n1", skewed);
        assert!(staleness(heard, Timestamp::now(), Duration::from_secs(5)).is_err());
        // Seen again unchanged: still counted from the first sight.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(beats.heard("n1", skewed), heard);
        // A new renewal time restarts the count.
        let next = beats.heard("n1", skewed + std::time::Duration::from_secs(1));
        assert!(next > heard);
        beats.forget("n1");
        assert!(beats.heard("n1", skewed) > heard);
    }

    #[test]
    fn pods_stay_when_no_node_is_alive() {
        let beats = Heartbeats::default();
        let grace = Duration::from_millis(50);
        beats.heard("lost", at(1));
        // Alone: no other node to move to.
        assert!(!beats.others_alive("lost", grace));
        beats.heard("other", at(1));
        assert!(beats.others_alive("lost", grace));
        // The other one falls silent too.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!beats.others_alive("lost", grace));
        beats.heard("other", at(2));
        assert!(beats.others_alive("lost", grace));
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    #[test]
    fn unreachable_taints_are_added_in_both_effects_and_removed_again() {
        let now = at(5_000);
        let own = vec![taint("dedicated", "NoSchedule")];
        let tainted = with_unreachable(&own, now).unwrap();
        let keys: Vec<(&str, &str)> = tainted
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (UNREACHABLE_TAINT, "NoSchedule"),
                (UNREACHABLE_TAINT, "NoExecute"),
            ]
        );
        assert_eq!(tainted[2].time_added, Some(Time(now)));
        assert_eq!(tainted[1].time_added, None);
        // Already tainted: no change, no patch.
        assert_eq!(with_unreachable(&tainted, now), None);
        // One effect missing (someone removed it): only that one comes back.
        let half = vec![own[0].clone(), tainted[2].clone()];
        assert_eq!(with_unreachable(&half, at(9_000)).unwrap().len(), 3);
        // Removing leaves the other taints alone; nothing to remove is no change.
        assert_eq!(without_unreachable(&tainted), Some(own.clone()));
        assert_eq!(without_unreachable(&own), None);
    }
}

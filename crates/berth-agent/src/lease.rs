//! The node Lease (heartbeat): `coordination.k8s.io/v1` Lease `<node>` in `kube-node-lease`,
//! renewed every `lease_renew`; the node lifecycle controller marks a node NotReady when it goes
//! stale.
//!
//! Renewals keep to a fixed beat: each starts on an interval tick and may take at most one
//! period, so a hung request costs one beat and never delays or piles up the ones after it. The
//! first renewal that succeeds after failures bumps a counter ([`Reconnects`]): the server may
//! have taken the node for lost meanwhile, so the agent re-lists its Pods and re-posts its status.

use std::time::Duration;

use k8s_openapi::Resource;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::AgentConfig;

/// The namespace node Leases live in.
pub const NAMESPACE: &str = "kube-node-lease";

/// The Lease as this agent writes it at `now`.
pub fn lease(config: &AgentConfig, node_uid: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            namespace: Some(NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: Node::API_VERSION.into(),
                kind: Node::KIND.into(),
                name: config.node_name.clone(),
                uid: node_uid.into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.node_name.clone()),
            lease_duration_seconds: Some(
                i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// The shortest renewal period honoured.
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// Counts the agent's returns to the server after renewals failed: receivers wake on each.
pub type Reconnects = watch::Receiver<u64>;

/// Writes the Lease once, in one request: a merge patch of the whole Lease (renewal time, owner),
/// or a create when there is none yet.
pub async fn renew(api: &Api<Lease>, desired: &Lease) -> Result<(), kube::Error> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(desired))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            api.create(&PostParams::default(), desired).await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Renews the Lease every `config.lease_renew` until dropped (failures are logged and retried on
/// the next beat), and bumps `reconnected` when a renewal succeeds after failures.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    node_uid: String,
    reconnected: watch::Sender<u64>,
) {
    ensure_namespace(&client).await;
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    // A zero period would make the interval panic, and a tiny one flood the server.
    let period = config.lease_renew.max(MIN_PERIOD);
    let mut beat = tokio::time::interval(period);
    // A beat missed under load is skipped, not made up for in a burst.
    beat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failures = 0u32;
    loop {
        beat.tick().await;
        let desired = lease(&config, &node_uid, Timestamp::now());
        let error = match tokio::time::timeout(period, renew(&api, &desired)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer within one renewal period".to_string()),
        };
        match error {
            None if failures > 0 => {
                tracing::info!(failures, "renewing the node lease works again");
                failures = 0;
                reconnected.send_modify(|n| *n = n.wrapping_add(1));
            }
            None => {}
            // The first failure of a run is worth a warning; the rest of it would flood the log.
            Some(error) if failures == 0 => {
                failures = 1;
                tracing::warn!(%error, "renewing the node lease failed; retrying every beat");
            }
            Some(error) => {
                failures = failures.saturating_add(1);
                tracing::debug!(%error, failures, "renewing the node lease failed");
            }
        }
    }
}

/// Creates `kube-node-lease` if the server does not have it yet.
async fn ensure_namespace(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => tracing::debug!(error = %e, "creating the lease namespace failed"),
    }
}

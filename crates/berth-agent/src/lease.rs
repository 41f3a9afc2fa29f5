//! The node Lease (heartbeat): `coordination.k8s.io/v1` Lease `<node>` in `kube-node-lease`,
//! renewed every `lease_renew`; the node lifecycle controller marks a node NotReady when it goes
//! stale.

use k8s_openapi::Resource;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

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

/// Writes the Lease once (create, else replace the current one).
pub async fn renew(api: &Api<Lease>, desired: &Lease) -> Result<(), kube::Error> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), desired).await?;
        }
        Some(current) => {
            let mut next = desired.clone();
            next.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &next).await?;
        }
    }
    Ok(())
}

/// Renews the Lease every `config.lease_renew` until dropped (failures are logged and retried).
pub async fn run(client: kube::Client, config: AgentConfig, node_uid: String) {
    ensure_namespace(&client).await;
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    loop {
        if let Err(e) = renew(&api, &lease(&config, &node_uid, Timestamp::now())).await {
            tracing::warn!(error = %e, "renewing the node lease failed");
        }
        tokio::time::sleep(config.lease_renew).await;
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

//! Node IPAM: gives every Node a pod CIDR (`spec.podCIDR`) carved out of the cluster CIDR, as
//! kube-controller-manager's range allocator does. The node's agent hands it to its runtime
//! (CRI `UpdateRuntimeConfig`), so Pod IPs never collide across nodes and each node can route the
//! others' ranges through their node IPs.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_net::Ipv4Cidr;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tracing::{info, warn};

use crate::ControllerOptions;

/// Errors of one allocation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// Every range of the cluster CIDR is taken.
    #[error("no pod CIDR left in {0} for node {1}")]
    Exhausted(Ipv4Cidr, String),
}

/// How node pod CIDRs are carved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIpamOptions {
    /// The cluster's pod network.
    pub cluster_cidr: Ipv4Cidr,
    /// Prefix length of each node's range (24 = 254 pods per node).
    pub node_mask: u8,
}

struct Ctx {
    nodes: Api<Node>,
    opts: NodeIpamOptions,
    /// Serialises allocations: two nodes reconciled at once must not get the same range.
    lock: tokio::sync::Mutex<()>,
}

/// Runs the allocator until the future is dropped; does nothing without a cluster CIDR.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), Error> {
    let Some(ipam) = opts.node_ipam else {
        futures::future::pending::<()>().await;
        return Ok(());
    };
    let nodes: Api<Node> = Api::all(client);
    let ctx = Arc::new(Ctx {
        nodes: nodes.clone(),
        opts: ipam,
        lock: tokio::sync::Mutex::new(()),
    });
    let retry = opts.retry_after;
    Controller::new(nodes, watcher::Config::default())
        .run(
            reconcile,
            move |_node, err, _ctx| {
                warn!(error = %err, "node IPAM: allocation failed; retrying");
                Action::requeue(retry)
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn pod_cidr(node: &Node) -> Option<Ipv4Cidr> {
    node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pod_cidr(&node).is_some() {
        return Ok(Action::await_change());
    }
    let _guard = ctx.lock.lock().await;
    // Read every node afresh under the lock: the reflector's view may lag our own last patch.
    let all = ctx.nodes.list(&ListParams::default()).await?;
    let name = node.name_any();
    if let Some(current) = all.items.iter().find(|n| n.name_any() == name)
        && pod_cidr(current).is_some()
    {
        return Ok(Action::await_change());
    }
    let used: BTreeSet<Ipv4Cidr> = all.items.iter().filter_map(pod_cidr).collect();
    let cidr = berth_net::node::allocate(ctx.opts.cluster_cidr, ctx.opts.node_mask, &used)
        .ok_or_else(|| Error::Exhausted(ctx.opts.cluster_cidr, name.clone()))?;
    let patch = json!({ "spec": { "podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()] } });
    ctx.nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!(node = %name, %cidr, "pod CIDR allocated");
    Ok(Action::await_change())
}

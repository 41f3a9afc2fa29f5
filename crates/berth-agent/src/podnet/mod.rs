//! The pod network across nodes (host-gateway): every node's pod CIDR is reached through that
//! node's InternalIP, so pod IPs are routable across the cluster when the nodes share an L2
//! network.
//!
//! - [`desired`]: the routes this node should have, from the Node objects (pure);
//! - [`masquerade`]: the nat rule that gives pod traffic leaving the cluster the node's address;
//! - [`reconcile`]: one pass that brings the host in line ([`PodNet::sync`]).
//!
//! [`run`] watches Nodes and syncs after every change and every [`RESYNC`] (the kernel drops a
//! route when its link goes down; the next sync puts it back). berth's routes carry their own
//! route protocol ([`berth_net::netlink::route::PROTO_BERTH`]), so a sync removes routes berth
//! added for nodes that are gone, including those a previous run left, and nothing else.

pub mod desired;
pub mod masquerade;
pub mod reconcile;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

pub use reconcile::{PodNet, SyncError};

/// How often the routes are re-checked without a Node change.
pub const RESYNC: Duration = Duration::from_secs(10);

/// Why the pod network loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    /// The Node watch ended, which kube-runtime's watchers never do on their own.
    #[error("the nodes watch ended")]
    WatchEnded,
    /// A sync task panicked.
    #[error("pod network sync: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Keeps this node's routes and masquerading in line with the cluster's Nodes until dropped.
pub async fn run(client: kube::Client, mut podnet: PodNet) -> Result<(), PodNetError> {
    let (nodes, writer) = reflector::store::<Node>();
    let events = reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()),
    );
    let mut events = std::pin::pin!(events.default_backoff());
    let mut resync = tokio::time::interval(RESYNC);
    let mut listed = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                None => return Err(PodNetError::WatchEnded),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "nodes watch failed; retrying");
                    continue;
                }
                // The store changes all at once when a (re)list is done.
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(_)) => listed = true,
            },
            _ = resync.tick() => {}
        }
        if listed {
            podnet = sync(podnet, &nodes).await?;
        }
    }
}

/// Runs one [`PodNet::sync`] off the async workers (it blocks on netlink and iptables).
async fn sync(mut podnet: PodNet, nodes: &Store<Node>) -> Result<PodNet, PodNetError> {
    let nodes: Vec<Node> = nodes.state().iter().map(|n| Node::clone(n)).collect();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = podnet.sync(&nodes) {
            tracing::warn!(error = %e, "pod network sync failed; retrying");
        }
        podnet
    })
    .await
    .map_err(Into::into)
}

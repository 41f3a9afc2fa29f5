//! Brings this host's pod network in line with the Node objects: forwarding on, berth's routes
//! to the other nodes' pod CIDRs, and masquerading of this node's pod traffic.
//!
//! Everything acts on the network namespace of the calling thread (rtnetlink on short-lived
//! threads started from it, `iptables` processes forked from it), and blocks: the agent calls
//! [`PodNet::sync`] from `spawn_blocking`, a test from a thread inside the netns to configure.

use std::collections::BTreeSet;

use berth_net::Ipv4Cidr;
use berth_net::netlink::route;
use berth_net::routes::{Route, RoutePlan, plan};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::desired::{desired_routes, pod_cidr};
use super::masquerade::{self, MasqueradeError};

/// Where IPv4 forwarding is switched on (per network namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The pod network state of one node, kept between syncs so that one-time setup runs once and
/// a failure is logged once rather than on every sync.
#[derive(Debug)]
pub struct PodNet {
    node_name: String,
    cluster: Ipv4Cidr,
    /// Whether IPv4 forwarding was switched on (or tried: once is enough).
    forwarding_set: bool,
    /// The pod CIDR masquerading was last set up for.
    masqueraded: Option<Ipv4Cidr>,
    /// Whether the missing iptables was already reported.
    iptables_missing: bool,
    /// Routes whose last change failed (already logged).
    failing: BTreeSet<Route>,
}

/// Why a sync could not run at all (single route failures are logged, not returned).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Listing the host's routes failed.
    #[error("listing routes: {0}")]
    ListRoutes(std::io::Error),
}

impl PodNet {
    /// The pod network of node `node_name` in a cluster whose pod network is `cluster`.
    pub fn new(node_name: impl Into<String>, cluster: Ipv4Cidr) -> Self {
        PodNet {
            node_name: node_name.into(),
            cluster,
            forwarding_set: false,
            masqueraded: None,
            iptables_missing: false,
            failing: BTreeSet::new(),
        }
    }

    /// One pass over `nodes` (all Nodes of the cluster): forwarding, routes, masquerading.
    /// Returns the route changes it made or tried.
    pub fn sync(&mut self, nodes: &[Node]) -> Result<RoutePlan, SyncError> {
        if !self.forwarding_set {
            self.forwarding_set = true;
            if let Err(e) = std::fs::write(IP_FORWARD, "1") {
                tracing::warn!(error = %e, "cannot enable IPv4 forwarding; pods of other nodes cannot reach this node's pods");
            }
        }
        let own = nodes.iter().find(|n| n.name_any() == self.node_name);
        if let Some(cidr) = own.and_then(pod_cidr) {
            self.masquerade(cidr);
        }
        let desired = desired_routes(nodes, &self.node_name, self.cluster);
        let current = route::list().map_err(SyncError::ListRoutes)?;
        let changes = plan(&desired, &current);
        for r in &changes.delete {
            self.apply(*r, "delete", route::delete);
        }
        for r in &changes.replace {
            self.apply(*r, "replace", route::replace);
        }
        // A failure the plan no longer asks about is over.
        self.failing
            .retain(|r| changes.replace.contains(r) || changes.delete.contains(r));
        Ok(changes)
    }

    fn apply(&mut self, r: Route, what: &str, op: fn(Route) -> std::io::Result<()>) {
        match op(r) {
            Ok(()) => {
                tracing::info!(dest = %r.dest, via = %r.via, "pod route {what}d");
                self.failing.remove(&r);
            }
            Err(e) if self.failing.insert(r) => {
                tracing::warn!(dest = %r.dest, via = %r.via, error = %e, "cannot {what} pod route")
            }
            Err(e) => {
                tracing::debug!(dest = %r.dest, via = %r.via, error = %e, "cannot {what} pod route")
            }
        }
    }

    /// Sets masquerading up for `pod_cidr` unless it already is.
    fn masquerade(&mut self, pod_cidr: Ipv4Cidr) {
        if self.masqueraded == Some(pod_cidr) {
            return;
        }
        match masquerade::ensure(pod_cidr, self.cluster) {
            Ok(()) => {
                tracing::info!(%pod_cidr, cluster = %self.cluster, "pod traffic leaving the cluster is masqueraded");
                self.masqueraded = Some(pod_cidr);
            }
            Err(e @ MasqueradeError::Missing(_)) => {
                if !self.iptables_missing {
                    tracing::warn!(error = %e, "pod traffic leaving the cluster is not masqueraded");
                    self.iptables_missing = true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up masquerading; retrying on the next sync")
            }
        }
    }
}

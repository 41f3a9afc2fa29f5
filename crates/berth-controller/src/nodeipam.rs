//! Node IPAM: gives every Node a pod CIDR (`spec.podCIDR`) carved out of the cluster CIDR, as
//! kube-controller-manager's range allocator does. The node's agent hands it to its runtime
//! (CRI `UpdateRuntimeConfig`), so Pod IPs never collide across nodes and each node can route the
//! others' ranges through their node IPs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

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

/// An IPv4 network in CIDR notation (`10.88.0.0/16`), always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IPv4 CIDR like 10.88.0.0/16")]
pub struct CidrParseError(String);

impl Ipv4Cidr {
    /// The network `addr/prefix` (host bits cleared); `None` for a prefix over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Ipv4Cidr {
            network: u32::from(addr) & Self::mask(prefix),
            prefix,
        })
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let p = self.prefix.min(other.prefix);
        self.network & Self::mask(p) == other.network & Self::mask(p)
    }

    /// The `index`-th subnet of length `prefix` inside this network, if it exists.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(index) >= count {
            return None;
        }
        let step = if prefix == 32 {
            1
        } else {
            1u32 << (32 - prefix)
        };
        Some(Ipv4Cidr {
            network: self.network + index * step,
            prefix,
        })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrParseError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

/// How node pod CIDRs are carved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIpamOptions {
    /// The cluster's pod network.
    pub cluster_cidr: Ipv4Cidr,
    /// Prefix length of each node's range (24 = 254 pods per node).
    pub node_mask: u8,
}

/// The first range of `opts.node_mask` bits in the cluster CIDR that overlaps none of `used`.
pub fn allocate(opts: &NodeIpamOptions, used: &BTreeSet<Ipv4Cidr>) -> Option<Ipv4Cidr> {
    (0u32..)
        .map_while(|i| opts.cluster_cidr.subnet(opts.node_mask, i))
        .find(|c| !used.iter().any(|u| u.overlaps(c)))
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
    let cidr = allocate(&ctx.opts, &used)
        .ok_or_else(|| Error::Exhausted(ctx.opts.cluster_cidr, name.clone()))?;
    let patch = json!({ "spec": { "podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()] } });
    ctx.nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!(node = %name, %cidr, "pod CIDR allocated");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(cidr("10.88.3.7/16").to_string(), "10.88.0.0/16");
        assert!("10.88.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.88.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("ten/8".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn allocates_the_first_free_range_and_skips_overlaps() {
        let opts = NodeIpamOptions {
            cluster_cidr: cidr("10.88.0.0/16"),
            node_mask: 24,
        };
        let mut used = BTreeSet::new();
        assert_eq!(allocate(&opts, &used), Some(cidr("10.88.0.0/24")));
        used.insert(cidr("10.88.0.0/24"));
        used.insert(cidr("10.88.1.0/25")); // a hand-set range overlapping the second /24
        assert_eq!(allocate(&opts, &used), Some(cidr("10.88.2.0/24")));
    }

    #[test]
    fn reports_exhaustion() {
        let opts = NodeIpamOptions {
            cluster_cidr: cidr("10.88.0.0/23"),
            node_mask: 24,
        };
        let used: BTreeSet<_> = [cidr("10.88.0.0/24"), cidr("10.88.1.0/24")].into();
        assert_eq!(allocate(&opts, &used), None);
        let bigger = NodeIpamOptions {
            cluster_cidr: cidr("10.88.0.0/24"),
            node_mask: 16,
        };
        assert_eq!(
            allocate(&bigger, &BTreeSet::new()),
            None,
            "node ranges larger than the cluster's"
        );
    }
}

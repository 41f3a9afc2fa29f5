//! The routes this node should have, from the Node objects: one route per other node's pod
//! CIDR through that node's InternalIP (host-gateway).
//!
//! Pure, so the rules are unit-tested without a cluster or a kernel. A node is left out when
//! its route could hurt this host rather than help: no pod CIDR or no usable IPv4 InternalIP, a
//! pod CIDR outside the cluster CIDR (a bad object must never replace the host's default
//! route), one overlapping this node's own pod CIDR (that is the local bridge), or a gateway
//! that is this node itself. Readiness does not matter: a NotReady node keeps its route.

use std::net::Ipv4Addr;

use berth_net::Ipv4Cidr;
use berth_net::routes::RouteSet;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

/// The address type a node's route goes through.
const INTERNAL_IP: &str = "InternalIP";

/// A Node's pod CIDR (`spec.podCIDR`), if it has a valid IPv4 one.
pub fn pod_cidr(node: &Node) -> Option<Ipv4Cidr> {
    let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?;
    cidr.parse().ok()
}

/// A Node's first IPv4 `InternalIP` address, if it has one.
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_deref()?;
    addresses
        .iter()
        .filter(|a| a.type_ == INTERNAL_IP)
        .find_map(|a| a.address.parse().ok())
}

/// The routes `me` should have to the other `nodes`' pod CIDRs within `cluster`. When two nodes
/// claim the same pod CIDR, the first by name keeps it.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    me: &str,
    cluster: Ipv4Cidr,
) -> RouteSet {
    let mut nodes: Vec<&Node> = nodes.into_iter().collect();
    nodes.sort_by_key(|n| n.name_any());
    let own = nodes.iter().find(|n| n.name_any() == me);
    let own_cidr = own.and_then(|n| pod_cidr(n));
    let own_ip = own.and_then(|n| internal_ip(n));
    let mut routes = RouteSet::new();
    for node in nodes.iter().filter(|n| n.name_any() != me) {
        let (Some(dest), Some(via)) = (pod_cidr(node), internal_ip(node)) else {
            continue;
        };
        let inside = cluster.contains(dest.network()) && dest.prefix() >= cluster.prefix();
        let local = own_cidr.is_some_and(|c| c.overlaps(&dest));
        let bad_gateway = via.is_loopback() || via.is_unspecified() || Some(via) == own_ip;
        if inside && !local && !bad_gateway {
            routes.entry(dest).or_insert(via);
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let addresses: Vec<_> = ip
            .into_iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .chain([json!({"type": "Hostname", "address": name})])
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": addresses},
        }))
        .unwrap()
    }

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn routes(list: &[(&str, [u8; 4])]) -> RouteSet {
        list.iter()
            .map(|(c, ip)| (cidr(c), Ipv4Addr::from(*ip)))
            .collect()
    }

    const CLUSTER: &str = "10.88.0.0/16";

    #[test]
    fn routes_every_other_node_through_its_internal_ip() {
        let nodes = [
            node("n1", Some("10.88.1.0/24"), Some("192.168.0.1")),
            node("n2", Some("10.88.2.0/24"), Some("192.168.0.2")),
            node("n3", Some("10.88.3.0/24"), Some("192.168.0.3")),
        ];
        assert_eq!(
            desired_routes(&nodes, "n1", cidr(CLUSTER)),
            routes(&[
                ("10.88.2.0/24", [192, 168, 0, 2]),
                ("10.88.3.0/24", [192, 168, 0, 3])
            ])
        );
    }

    #[test]
    fn leaves_out_nodes_without_a_usable_cidr_or_address() {
        let nodes = [
            node("me", Some("10.88.1.0/24"), Some("192.168.0.1")),
            node("no-cidr", None, Some("192.168.0.2")),
            node("no-ip", Some("10.88.3.0/24"), None),
            node("v6", Some("10.88.4.0/24"), Some("fd00::4")),
            node("outside", Some("0.0.0.0/0"), Some("192.168.0.5")),
            node("wider", Some("10.0.0.0/8"), Some("192.168.0.6")),
            node("overlaps-me", Some("10.88.1.0/25"), Some("192.168.0.7")),
            node("loopback", Some("10.88.8.0/24"), Some("127.0.0.1")),
            node("my-ip", Some("10.88.9.0/24"), Some("192.168.0.1")),
            node("fine", Some("10.88.10.0/24"), Some("192.168.0.10")),
        ];
        assert_eq!(
            desired_routes(&nodes, "me", cidr(CLUSTER)),
            routes(&[("10.88.10.0/24", [192, 168, 0, 10])])
        );
    }

    #[test]
    fn first_node_by_name_keeps_a_duplicate_cidr() {
        let nodes = [
            node("b", Some("10.88.2.0/24"), Some("192.168.0.3")),
            node("a", Some("10.88.2.0/24"), Some("192.168.0.2")),
        ];
        assert_eq!(
            desired_routes(&nodes, "me", cidr(CLUSTER)),
            routes(&[("10.88.2.0/24", [192, 168, 0, 2])])
        );
    }

    #[test]
    fn a_node_that_is_not_ready_keeps_its_route() {
        let mut n2 = node("n2", Some("10.88.2.0/24"), Some("192.168.0.2"));
        n2.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": "Ready", "status": "Unknown"})).unwrap(),
        ]);
        assert_eq!(
            desired_routes(&[n2], "n1", cidr(CLUSTER)),
            routes(&[("10.88.2.0/24", [192, 168, 0, 2])])
        );
    }
}

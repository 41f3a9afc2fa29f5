//! Node pod CIDRs: every node gets a range of the cluster CIDR (as kube-controller-manager's range
//! allocator does), so pod IPs never collide across nodes.

use crate::Ipv4Cidr;

/// The first range of `node_prefix` bits in `cluster` that overlaps none of `used`; `None` when
/// every range is taken or the ranges would be larger than the cluster's.
pub fn allocate<'a>(
    cluster: Ipv4Cidr,
    node_prefix: u8,
    used: impl IntoIterator<Item = &'a Ipv4Cidr> + Clone,
) -> Option<Ipv4Cidr> {
    cluster
        .subnets(node_prefix)
        .find(|c| !used.clone().into_iter().any(|u| u.overlaps(c)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn allocates_the_first_free_range_and_skips_overlaps() {
        let cluster = cidr("10.88.0.0/16");
        let mut used = BTreeSet::new();
        assert_eq!(allocate(cluster, 24, &used), Some(cidr("10.88.0.0/24")));
        used.insert(cidr("10.88.0.0/24"));
        used.insert(cidr("10.88.1.0/25")); // a hand-set range overlapping the second /24
        assert_eq!(allocate(cluster, 24, &used), Some(cidr("10.88.2.0/24")));
    }

    #[test]
    fn reports_exhaustion() {
        let used: BTreeSet<_> = [cidr("10.88.0.0/24"), cidr("10.88.1.0/24")].into();
        assert_eq!(allocate(cidr("10.88.0.0/23"), 24, &used), None);
        assert_eq!(
            allocate(cidr("10.88.0.0/24"), 16, &BTreeSet::new()),
            None,
            "node ranges larger than the cluster's"
        );
    }
}

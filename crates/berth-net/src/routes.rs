//! Route sets and the plan that turns the routes a host has into the routes it should have.
//! Pure, so the agent's reconciliation rules are unit-tested without a kernel; the kernel side
//! is [`crate::netlink::route`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::Ipv4Cidr;

/// A set of routes: destination network -> gateway (at most one gateway per network).
pub type RouteSet = BTreeMap<Ipv4Cidr, Ipv4Addr>;

/// One route: `dest via via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The destination network.
    pub dest: Ipv4Cidr,
    /// The gateway (next hop).
    pub via: Ipv4Addr,
}

/// What to change so that the current routes become the desired ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Routes to add, or to replace (same destination, another gateway).
    pub replace: Vec<Route>,
    /// Routes whose destination is no longer wanted.
    pub delete: Vec<Route>,
}

impl RoutePlan {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty() && self.delete.is_empty()
    }
}

/// The changes from `current` to `desired`: a destination missing or with another gateway is
/// replaced; a destination no longer desired is deleted. Both lists are in address order.
pub fn plan(desired: &RouteSet, current: &RouteSet) -> RoutePlan {
    let replace = desired
        .iter()
        .filter(|(dest, via)| current.get(dest) != Some(via))
        .map(|(&dest, &via)| Route { dest, via })
        .collect();
    let delete = current
        .iter()
        .filter(|(dest, _)| !desired.contains_key(dest))
        .map(|(&dest, &via)| Route { dest, via })
        .collect();
    RoutePlan { replace, delete }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(routes: &[(&str, [u8; 4])]) -> RouteSet {
        routes
            .iter()
            .map(|(c, ip)| (c.parse().unwrap(), Ipv4Addr::from(*ip)))
            .collect()
    }

    fn route(c: &str, ip: [u8; 4]) -> Route {
        Route {
            dest: c.parse().unwrap(),
            via: Ipv4Addr::from(ip),
        }
    }

    #[test]
    fn adds_changes_and_deletes() {
        let current = set(&[
            ("10.88.1.0/24", [192, 168, 0, 2]),
            ("10.88.2.0/24", [192, 168, 0, 3]),
            ("10.88.9.0/24", [192, 168, 0, 9]),
        ]);
        let desired = set(&[
            ("10.88.1.0/24", [192, 168, 0, 2]),
            ("10.88.2.0/24", [192, 168, 0, 13]),
            ("10.88.3.0/24", [192, 168, 0, 4]),
        ]);
        let p = plan(&desired, &current);
        assert_eq!(
            p.replace,
            [
                route("10.88.2.0/24", [192, 168, 0, 13]),
                route("10.88.3.0/24", [192, 168, 0, 4])
            ]
        );
        assert_eq!(p.delete, [route("10.88.9.0/24", [192, 168, 0, 9])]);
    }

    #[test]
    fn nothing_to_do_when_in_line() {
        let both = set(&[("10.88.1.0/24", [192, 168, 0, 2])]);
        assert!(plan(&both, &both).is_empty());
        assert!(plan(&RouteSet::new(), &RouteSet::new()).is_empty());
        let p = plan(&RouteSet::new(), &both);
        assert_eq!(p.delete, [route("10.88.1.0/24", [192, 168, 0, 2])]);
    }
}

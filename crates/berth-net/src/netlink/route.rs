//! The routes berth keeps in the main table, told apart from everyone else's by their route
//! protocol ([`PROTO_BERTH`]), so listing, replacing and deleting never touch a route berth did
//! not make. Each function runs on its own thread in the calling thread's network namespace.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};

use super::{in_own_thread, is_errno, nl_err};
use crate::Ipv4Cidr;
use crate::routes::{Route, RouteSet};

/// The route protocol number on berth's routes (0x62, `b`): unused by the kernel and by the
/// routing daemons listed in iproute2's `rt_protos`. `ip route show proto 98` lists them.
pub const PROTO_BERTH: u8 = 0x62;

/// berth's IPv4 routes in the main table: destination network -> gateway.
pub fn list() -> std::io::Result<RouteSet> {
    in_own_thread(|h| async move {
        // Without strict checking the kernel dumps every table and protocol: filter here.
        let dump = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let all: Vec<RouteMessage> = dump.try_collect().await.map_err(nl_err)?;
        Ok(all.iter().filter_map(ours).collect())
    })
}

/// Sets the route to `route.dest` through `route.via`, replacing berth's or any other route to
/// exactly that network in the main table.
pub fn replace(route: Route) -> std::io::Result<()> {
    in_own_thread(move |h| async move {
        h.route()
            .add(message(route))
            .replace()
            .execute()
            .await
            .map_err(nl_err)
    })
}

/// Deletes berth's route to `route.dest` (only one with berth's protocol); gone already is fine.
pub fn delete(route: Route) -> std::io::Result<()> {
    in_own_thread(move |h| async move {
        match h.route().del(message(route)).execute().await {
            Err(e) if !is_errno(&e, libc::ESRCH) => Err(nl_err(e)),
            _ => Ok(()),
        }
    })
}

fn message(route: Route) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.dest.network(), route.dest.prefix())
        .gateway(route.via)
        .protocol(RouteProtocol::from(PROTO_BERTH))
        .build()
}

/// `(dest, via)` of a main-table IPv4 route with berth's protocol and a gateway.
fn ours(msg: &RouteMessage) -> Option<(Ipv4Cidr, Ipv4Addr)> {
    let header = &msg.header;
    if header.protocol != RouteProtocol::from(PROTO_BERTH)
        || table(msg) != RouteHeader::RT_TABLE_MAIN.into()
    {
        return None;
    }
    let mut dest = Ipv4Addr::UNSPECIFIED;
    let mut via = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dest = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => via = Some(*a),
            _ => {}
        }
    }
    Some((Ipv4Cidr::new(dest, header.destination_prefix_length)?, via?))
}

/// The route's table: the header's byte, or the attribute that replaces it above 255.
fn table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{ensure_bridge, lo_up_here, require_index};

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    /// A route the way `ip route add` makes one (protocol "boot"), which berth must leave alone.
    fn add_foreign(dest: Ipv4Cidr, via: Ipv4Addr) -> std::io::Result<()> {
        in_own_thread(move |h| async move {
            let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dest.network(), dest.prefix())
                .gateway(via)
                .protocol(RouteProtocol::Boot)
                .build();
            h.route().add(msg).execute().await.map_err(nl_err)
        })
    }

    /// Every route operation in a private netns (so the host's routes are untouched): a bridge
    /// gives the gateways a connected network.
    fn scenario() -> std::io::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        lo_up_here()?;
        ensure_bridge("brroute0", Ipv4Addr::new(192, 168, 7, 1), 24)?;
        let peer = Ipv4Addr::new(192, 168, 7, 2);
        let other = Ipv4Addr::new(192, 168, 7, 3);
        let foreign = cidr("10.90.0.0/24");
        add_foreign(foreign, peer)?;
        assert_eq!(
            list()?,
            RouteSet::new(),
            "the bridge's and foreign routes are not ours"
        );

        let ours = cidr("10.88.1.0/24");
        replace(Route {
            dest: ours,
            via: peer,
        })?;
        replace(Route {
            dest: ours,
            via: peer,
        })?;
        assert_eq!(
            list()?,
            RouteSet::from([(ours, peer)]),
            "replace is idempotent"
        );
        replace(Route {
            dest: ours,
            via: other,
        })?;
        assert_eq!(
            list()?,
            RouteSet::from([(ours, other)]),
            "a new gateway replaces"
        );

        // Deleting by berth's protocol never takes a foreign route to the same network.
        delete(Route {
            dest: foreign,
            via: peer,
        })?;
        delete(Route {
            dest: ours,
            via: other,
        })?;
        delete(Route {
            dest: ours,
            via: other,
        })?;
        assert_eq!(list()?, RouteSet::new());
        let still = in_own_thread(move |h| async move {
            let dump = h
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute();
            let all: Vec<RouteMessage> = dump.try_collect().await.map_err(nl_err)?;
            Ok(all.iter().any(|m| {
                m.attributes
                    .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                        foreign.network(),
                    )))
            }))
        })?;
        assert!(still, "the foreign route survives");
        // The bridge is still there: the scenario only touched routes.
        in_own_thread(|h| async move { require_index(&h, "brroute0").await.map(|_| ()) })?;
        Ok(())
    }

    #[test]
    fn lists_replaces_and_deletes_only_berths_routes() {
        // A dedicated thread: it leaves the test's netns for good and dies with the scenario.
        std::thread::spawn(scenario).join().unwrap().unwrap();
    }
}

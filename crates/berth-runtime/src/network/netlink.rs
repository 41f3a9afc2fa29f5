//! A pod's veth pair, done over rtnetlink in-process instead of spawning `ip`/`nsenter` (about
//! seven processes per sandbox before). The generic machinery (one short-lived thread per
//! operation, link lookups, bridges) lives in [`berth_net::netlink`]; this is the pod-specific
//! part: the host end on the bridge, eth0 created directly inside the pod's netns.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use berth_net::netlink::{is_errno, nl_err, on_thread, require_index, set_up, with_handle};
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// A pod-side veth: what [`add_pod_veth`] creates.
#[derive(Debug, Clone, Copy)]
pub struct PodLink<'a> {
    /// Host-side interface name (enslaved to the bridge).
    pub host_name: &'a str,
    /// Bridge the host side joins.
    pub bridge: &'a str,
    /// Pod address.
    pub addr: Ipv4Addr,
    /// Prefix length of the pod CIDR.
    pub prefix: u8,
    /// Default gateway inside the pod.
    pub gateway: Ipv4Addr,
}

/// The name the pod side of every veth gets inside its netns.
const POD_IFNAME: &str = "eth0";

/// Creates the veth pair of a pod: `link.host_name` on the host (enslaved to the bridge, up) and
/// eth0 created directly inside the netns pinned at `netns` (addressed, up, default route via
/// the gateway), so eth0 never exists on the host and cannot clash with a host interface.
/// `lo` is the netns creator's job ([`berth_net::netlink::lo_up_here`]).
pub fn add_pod_veth(netns: &Path, link: PodLink<'_>) -> io::Result<()> {
    let pod_ns = File::open(netns)?;
    let host_name = link.host_name.to_string();
    let bridge = link.bridge.to_string();
    let PodLink {
        addr,
        prefix,
        gateway,
        ..
    } = link;
    on_thread(move |rt| {
        // The host socket is opened before this thread leaves the host netns.
        let (conn, host, _) = {
            let _ctx = rt.enter();
            rtnetlink::new_connection()?
        };
        let host_driver = rt.spawn(conn);
        let result = rt.block_on(async {
            let peer = LinkUnspec::new_with_name(POD_IFNAME)
                .setns_by_fd(pod_ns.as_raw_fd())
                .build();
            let veth = LinkVeth::new(&host_name, POD_IFNAME)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .build();
            host.link().add(veth).execute().await.map_err(nl_err)?;
            let br = require_index(&host, &bridge).await?;
            let index = require_index(&host, &host_name).await?;
            let msg = LinkUnspec::new_with_index(index)
                .controller(br)
                .up()
                .build();
            host.link().set(msg).execute().await.map_err(nl_err)?;
            forget_neighbour(&host, br, addr).await
        });
        host_driver.abort();
        result?;
        setns(&pod_ns, CloneFlags::CLONE_NEWNET)?;
        rt.block_on(with_handle(|pod| async move {
            let eth0 = require_index(&pod, POD_IFNAME).await?;
            pod.address()
                .add(eth0, IpAddr::V4(addr), prefix)
                .execute()
                .await
                .map_err(nl_err)?;
            set_up(&pod, eth0).await?;
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .build();
            pod.route().add(route).execute().await.map_err(nl_err)
        }))
        // The thread ends here and its namespace change with it.
    })
}

/// Deletes the bridge's neighbour (ARP) entry for `addr`, if there is one. Addresses are handed
/// out again as soon as a Pod is gone: an entry still naming the old Pod's MAC stays REACHABLE
/// for up to about 45 s (then DELAY and PROBE, 8 s more), and meanwhile the node's probes and
/// proxied connections to the new Pod go nowhere.
async fn forget_neighbour(host: &Handle, bridge: u32, addr: Ipv4Addr) -> io::Result<()> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = bridge;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            addr,
        )));
    match host.neighbours().del(msg).execute().await {
        Err(e) if !is_errno(&e, libc::ENOENT) => Err(nl_err(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    use std::future::Future;

    use berth_net::netlink::{delete_link, ensure_bridge, link_index, lo_up_here};
    use futures::TryStreamExt;
    use nix::sched::unshare;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
    use rtnetlink::packet_route::neighbour::NeighbourState;

    use super::*;
    use crate::sandbox::netns;

    /// Runs `f` on a thread that has entered the netns pinned at `pin`.
    fn in_netns<T: Send + 'static>(
        pin: &Path,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let ns = File::open(pin)?;
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("thread panicked"))?
    }

    /// Runs `f` with a netlink handle of the calling thread's netns.
    fn here<T, Fut>(f: impl FnOnce(Handle) -> Fut) -> io::Result<T>
    where
        Fut: Future<Output = io::Result<T>>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        rt.block_on(with_handle(f))
    }

    fn echo_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() {
                    let _ = s.write_all(&buf);
                }
            }
        })
    }

    fn round_trip(to: SocketAddr) -> io::Result<[u8; 4]> {
        let mut s = TcpStream::connect_timeout(&to, std::time::Duration::from_secs(10))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The whole pod wiring in a private "host" netns (so the real host is untouched and the
    /// names cannot clash with a parallel test): bridge, veth, addresses, default route,
    /// connectivity both ways (also when a stale ARP entry named the address), deletion.
    fn pod_veth_scenario(dir: &Path) -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        lo_up_here()?;
        let gw = Ipv4Addr::new(10, 77, 0, 1);
        let pod_ip = Ipv4Addr::new(10, 77, 0, 2);
        // Idempotent: a restarting runtime calls it on an existing, configured bridge.
        ensure_bridge("brtest0", gw, 24)?;
        ensure_bridge("brtest0", gw, 24)?;
        // An address outside the pod subnet that the pod can reach only by its default route.
        let outside = Ipv4Addr::new(10, 78, 0, 1);
        here(|h| async move {
            let lo = require_index(&h, "lo").await?;
            h.address()
                .add(lo, IpAddr::V4(outside), 32)
                .execute()
                .await
                .map_err(nl_err)
        })?;

        // What a deleted Pod that had the same address leaves behind: the bridge's ARP entry
        // with its MAC (permanent here, so only its deletion lets the new Pod be reached). The
        // bridge gets a MAC of its own first, as it has from its first Pod on a real node:
        // otherwise it takes the new veth's and that change flushes every entry.
        here(|h| async move {
            let br = require_index(&h, "brtest0").await?;
            let mac = LinkUnspec::new_with_index(br)
                .address(vec![0x02, 0, 0, 0, 0, 0x01])
                .build();
            h.link().set(mac).execute().await.map_err(nl_err)?;
            h.neighbours()
                .add(br, IpAddr::V4(pod_ip))
                .link_layer_address(&[0x02, 0, 0, 0, 0, 0x99])
                .state(NeighbourState::Permanent)
                .execute()
                .await
                .map_err(nl_err)
        })?;

        let pin = dir.join("netns");
        netns::create(&pin)?;
        let link = PodLink {
            host_name: "vethtest0",
            bridge: "brtest0",
            addr: pod_ip,
            prefix: 24,
            gateway: gw,
        };
        let wired = add_pod_veth(&pin, link);
        let checked = wired.and_then(|()| check_wiring(&pin, pod_ip, outside));
        let deleted = delete_link("vethtest0");
        let gone = in_netns(&pin, || {
            here(|h| async move { link_index(&h, POD_IFNAME).await })
        });
        let removed = netns::remove(&pin);
        checked?;
        deleted?;
        assert_eq!(
            gone?, None,
            "deleting the host veth removes eth0 in the pod"
        );
        assert_eq!(
            here(|h| async move { link_index(&h, "vethtest0").await })?,
            None
        );
        removed
    }

    fn check_wiring(pin: &Path, pod_ip: Ipv4Addr, outside: Ipv4Addr) -> io::Result<()> {
        let (br, veth) = here(|h| async move {
            let br = require_index(&h, "brtest0").await?;
            let veth = h
                .link()
                .get()
                .match_name("vethtest0")
                .execute()
                .try_next()
                .await;
            Ok((br, veth.map_err(nl_err)?))
        })?;
        let veth = veth.ok_or_else(|| io::Error::other("no host veth"))?;
        assert!(
            veth.attributes.contains(&LinkAttribute::Controller(br)),
            "veth on the bridge"
        );
        assert!(veth.header.flags.contains(LinkFlags::Up), "host veth up");

        // Host -> pod over the bridge.
        let in_pod = in_netns(pin, move || TcpListener::bind((pod_ip, 0)))?;
        let to_pod = in_pod.local_addr()?;
        let server = echo_once(in_pod);
        assert_eq!(&round_trip(to_pod)?, b"ping");
        let _ = server.join();

        // Pod -> an off-subnet host address: needs eth0 up and the default route via the gateway.
        let on_host = TcpListener::bind((outside, 0))?;
        let to_host = on_host.local_addr()?;
        let server = echo_once(on_host);
        assert_eq!(&in_netns(pin, move || round_trip(to_host))?, b"ping");
        let _ = server.join();
        Ok(())
    }

    #[test]
    fn pod_veth_wiring_in_a_private_netns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // A dedicated thread: it leaves the test's netns for good and dies with the scenario.
        let result = std::thread::spawn(move || pod_veth_scenario(&path))
            .join()
            .unwrap();
        result.unwrap();
    }
}

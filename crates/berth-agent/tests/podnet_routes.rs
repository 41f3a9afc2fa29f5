//! The pod network across nodes with real network namespaces (root): three "machines" on one
//! bridge (a fourth namespace is the switch), each with a bridge `pods` holding the first address of
//! its pod CIDR as a stand-in for its pods. [`PodNet::sync`] runs inside a machine's namespace
//! against Node objects, and the test checks the routes (`ip route show proto 98`), that a "pod"
//! reaches a pod of another node by IP through them, that traffic leaving the cluster is
//! masqueraded, and that routes follow a changed address and go with a removed node. The last
//! test runs the agent's loop ([`podnet::run`]) against an in-process API server instead.
//!
//! Namespace names carry the test process's id; a guard deletes every namespace (and with them
//! every link) even when an assertion fails.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use berth_agent::podnet::{self, PodNet};
use berth_net::Ipv4Cidr;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nix::sched::{CloneFlags, setns};
use serde_json::json;

const CLUSTER: &str = "10.77.0.0/16";

/// The address of machine `i` on the shared bridge.
fn host_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, i)
}

/// The "pod" address of machine `i`: the first of its pod CIDR 10.77.i.0/24.
fn pod_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, i, 1)
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The namespaces of one test; dropping it deletes them all (and every link inside).
struct Lab {
    /// Tells this test's namespaces from those of the other tests in this process.
    test: &'static str,
    names: Vec<String>,
}

impl Lab {
    /// A switch namespace with a bridge and `machines` namespaces, machine `i` (from 1) with
    /// eth0 = 192.168.77.i/24 on the bridge and a bridge `pods` (no ports) with 10.77.i.1/24.
    fn new(test: &'static str, machines: u8) -> Lab {
        let mut lab = Lab {
            test,
            names: Vec::new(),
        };
        let switch = lab.add("sw");
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 1..=machines {
            let ns = lab.add(&format!("m{i}"));
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host_ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "add", "pods", "type", "bridge"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", pod_ip(i)),
                "dev",
                "pods",
            ]);
            ip(&["-n", &ns, "link", "set", "pods", "up"]);
        }
        lab
    }

    fn add(&mut self, tag: &str) -> String {
        let name = format!("berth-{}-{}-{tag}", self.test, std::process::id());
        ip(&["netns", "add", &name]);
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The namespace of machine `i`.
    fn machine(&self, i: u8) -> &str {
        &self.names[usize::from(i)]
    }

    /// berth's routes in machine `i`, one `dest via gw` per line, sorted.
    fn berth_routes(&self, i: u8) -> Vec<String> {
        let out = ip(&["-n", self.machine(i), "route", "show", "proto", "98"]);
        let mut lines: Vec<String> = out
            .lines()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    }

    /// One sync of `podnet` inside machine `i` against `nodes`.
    fn sync(&self, i: u8, podnet: &mut PodNet, nodes: &[Node]) {
        in_ns(self.machine(i), || podnet.sync(nodes)).unwrap();
    }

    /// A command's output inside machine `i`.
    fn exec(&self, i: u8, cmd: &[&str]) -> io::Result<std::process::Output> {
        Command::new("ip")
            .args(["netns", "exec", self.machine(i)])
            .args(cmd)
            .output()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Runs `f` on a scoped thread that entered namespace `name` (and dies with the change).
fn in_ns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let ns = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A listener on `addr` in machine `ns` that tells each of `n` clients its address.
fn tell_peer(ns: &str, addr: Ipv4Addr, n: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = in_ns(ns, || TcpListener::bind((addr, 0))).unwrap();
    let at = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, peer)) = listener.accept() else {
                return;
            };
            let _ = s.write_all(peer.ip().to_string().as_bytes());
        }
    });
    (at, server)
}

/// Connects from `src` inside machine `ns` to `to` and returns what the server said.
fn connect_from(ns: &str, src: Ipv4Addr, to: SocketAddr) -> io::Result<String> {
    in_ns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
            let connect = tokio::time::timeout(Duration::from_secs(5), socket.connect(to));
            let stream = connect
                .await
                .map_err(|_| io::Error::other("connect timed out"))??;
            let mut std_stream = stream.into_std()?;
            std_stream.set_nonblocking(false)?;
            let mut said = String::new();
            std_stream.read_to_string(&mut said)?;
            Ok(said)
        })
    })
}

fn node(name: &str, pod_cidr: Option<&str>, internal_ip: Ipv4Addr) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": internal_ip.to_string()}]},
    }))
    .unwrap()
}

fn three_nodes() -> Vec<Node> {
    (1..=3)
        .map(|i| {
            node(
                &format!("n{i}"),
                Some(&format!("10.77.{i}.0/24")),
                host_ip(i),
            )
        })
        .collect()
}

fn cluster() -> Ipv4Cidr {
    CLUSTER.parse().unwrap()
}

#[test]
fn routes_follow_the_nodes_and_carry_pod_traffic() {
    let lab = Lab::new("routes", 3);
    // Left by an earlier run for a node that is gone (berth's protocol), and someone else's.
    ip(&[
        "-n",
        lab.machine(1),
        "route",
        "add",
        "10.77.9.0/24",
        "via",
        "192.168.77.3",
        "proto",
        "98",
    ]);
    ip(&[
        "-n",
        lab.machine(1),
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "192.168.77.3",
    ]);

    let nodes = three_nodes();
    let mut n1 = PodNet::new("n1", cluster());
    let mut n2 = PodNet::new("n2", cluster());
    lab.sync(1, &mut n1, &nodes);
    lab.sync(2, &mut n2, &nodes);
    assert_eq!(
        lab.berth_routes(1),
        [
            "10.77.2.0/24 via 192.168.77.2",
            "10.77.3.0/24 via 192.168.77.3"
        ],
        "a route per other node, the stale one gone"
    );
    let foreign = ip(&["-n", lab.machine(1), "route", "show", "10.99.0.0/24"]);
    assert!(
        !foreign.trim().is_empty(),
        "a route berth did not make is left alone"
    );
    let forward = lab
        .exec(1, &["cat", "/proc/sys/net/ipv4/ip_forward"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "1");

    // Pod to pod across nodes, by IP, without NAT: the other side sees the pod's address.
    let (to_pod2, server) = tell_peer(lab.machine(2), pod_ip(2), 2);
    assert_eq!(
        connect_from(lab.machine(1), pod_ip(1), to_pod2).unwrap(),
        pod_ip(1).to_string()
    );

    // Node 2 moves to another address: the route follows.
    ip(&[
        "-n",
        lab.machine(2),
        "addr",
        "add",
        "192.168.77.12/24",
        "dev",
        "eth0",
    ]);
    let mut moved = three_nodes();
    moved[1] = node("n2", Some("10.77.2.0/24"), Ipv4Addr::new(192, 168, 77, 12));
    lab.sync(1, &mut n1, &moved);
    assert_eq!(
        lab.berth_routes(1),
        [
            "10.77.2.0/24 via 192.168.77.12",
            "10.77.3.0/24 via 192.168.77.3"
        ]
    );
    assert_eq!(
        connect_from(lab.machine(1), pod_ip(1), to_pod2).unwrap(),
        pod_ip(1).to_string()
    );
    server.join().unwrap();

    // Node 3 is deleted and node 2 loses its pod CIDR: both routes go, and so does the path.
    let gone = vec![
        moved[0].clone(),
        node("n2", None, Ipv4Addr::new(192, 168, 77, 12)),
    ];
    lab.sync(1, &mut n1, &gone);
    assert_eq!(lab.berth_routes(1), Vec::<String>::new());
    let (to_pod2, _server) = tell_peer(lab.machine(2), pod_ip(2), 1);
    assert!(
        connect_from(lab.machine(1), pod_ip(1), to_pod2).is_err(),
        "no route, no way to the other node's pods"
    );
    // A node coming back gets its route again.
    lab.sync(1, &mut n1, &moved);
    assert_eq!(lab.berth_routes(1).len(), 2);
}

#[test]
fn pod_traffic_leaving_the_cluster_is_masqueraded() {
    let lab = Lab::new("masq", 3);
    if lab.exec(1, &["iptables", "--version"]).is_err() {
        eprintln!("iptables is not installed; skipping");
        return;
    }
    // Machine 3 is no node here: an outside host with no route to any pod CIDR.
    let nodes: Vec<Node> = three_nodes().into_iter().take(2).collect();
    lab.sync(1, &mut PodNet::new("n1", cluster()), &nodes);
    // A restarted agent sets it up again without doubling anything.
    lab.sync(1, &mut PodNet::new("n1", cluster()), &nodes);
    let rules = lab.exec(1, &["iptables", "-t", "nat", "-S"]).unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    let ours: Vec<&str> = rules
        .lines()
        .filter(|l| l.contains("BERTH-POSTROUTING"))
        .collect();
    assert_eq!(
        ours,
        [
            "-N BERTH-POSTROUTING",
            "-A POSTROUTING -j BERTH-POSTROUTING",
            "-A BERTH-POSTROUTING -s 10.77.1.0/24 ! -d 10.77.0.0/16 -j MASQUERADE",
        ],
        "{rules}"
    );

    // The outside host sees the node's address, and its answers find their way back.
    let (outside, server) = tell_peer(lab.machine(3), host_ip(3), 1);
    assert_eq!(
        connect_from(lab.machine(1), pod_ip(1), outside).unwrap(),
        host_ip(1).to_string()
    );
    server.join().unwrap();
}

#[test]
fn the_agent_loop_follows_the_node_objects() {
    let lab = Lab::new("watch", 3);
    let dir = tempfile::tempdir().unwrap();
    // Everything on one thread inside machine 1: the API server listens on its loopback, and
    // the loop's blocking syncs run on threads started from there, so in its namespace too.
    in_ns(lab.machine(1), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (server, client) = support::api::start(dir.path(), Vec::new()).await;
            let nodes: Api<Node> = Api::all(client.clone());
            for node in three_nodes() {
                nodes.create(&PostParams::default(), &node).await.unwrap();
                let status = json!({"status": node.status});
                let name = kube::ResourceExt::name_any(&node);
                let patch = Patch::Merge(&status);
                nodes
                    .patch_status(&name, &PatchParams::default(), &patch)
                    .await
                    .unwrap();
            }
            let run = tokio::spawn(podnet::run(client.clone(), PodNet::new("n1", cluster())));
            wait_for_routes(
                &lab,
                &[
                    "10.77.2.0/24 via 192.168.77.2",
                    "10.77.3.0/24 via 192.168.77.3",
                ],
            )
            .await;

            nodes.delete("n3", &DeleteParams::default()).await.unwrap();
            wait_for_routes(&lab, &["10.77.2.0/24 via 192.168.77.2"]).await;
            assert!(!run.is_finished(), "the loop keeps running");
            run.abort();
            server.stop();
        });
    });
}

/// Waits (generously: the watch is much faster) until machine 1's berth routes are `want`.
async fn wait_for_routes(lab: &Lab, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let routes = lab.berth_routes(1);
        if routes == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "routes {routes:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Several nodes, end to end: a server and three nodes on one machine, each node a network
//! namespace with its own address on a shared bridge, its own runtime and agent (the launcher
//! `berth up --nodes` uses). Replicas spread over the nodes, every node's service port balances
//! over the Pods of all nodes, Pods reach each other across nodes by IP, a drain under load drops
//! no request, and a node lost (killed, or cut off) has its Pods replaced elsewhere and runs none
//! of them twice when it returns. Needs root (CI runs as root).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_api::ModelService;
use berth_e2e::cluster::{TestCluster, node_of, ready_pods};
use berth_e2e::http::request_to;
use berth_e2e::workload::web_service;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

const NS: &str = "default";
const PORT: u16 = 8000;

async fn apply_web(tc: &TestCluster, client: &kube::Client, name: &str, replicas: i32) {
    let image = tc.push_busybox().unwrap();
    let ms: ModelService =
        serde_json::from_value(web_service(&image, name, replicas, PORT)).unwrap();
    Api::<ModelService>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ms)
        .await
        .unwrap();
}

/// Waits for `n` Ready Pods of `ms`, none on `avoid`; returns them.
async fn wait_ready_on(
    tc: &TestCluster,
    client: &kube::Client,
    ms: &str,
    n: usize,
    avoid: Option<&str>,
    within: Duration,
) -> Vec<Pod> {
    tc.eventually(
        &format!("{n} Ready pods of {ms} (none on {avoid:?})"),
        within,
        || async {
            let all = ready_pods(client, NS, ms).await;
            let ok = all.len() == n && all.iter().all(|p| Some(node_of(p).as_str()) != avoid);
            ok.then_some(all)
        },
    )
    .await
}

fn per_node(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods {
        *m.entry(node_of(p)).or_insert(0) += 1;
    }
    m
}

/// The node of the Pod that answered `/` (busybox httpd serves the Pod's host name = its name).
fn answering_nodes(tc: &TestCluster, i: usize, pods: &[Pod], requests: usize) -> BTreeSet<String> {
    let by_name: BTreeMap<String, String> =
        pods.iter().map(|p| (p.name_any(), node_of(p))).collect();
    let mut seen = BTreeSet::new();
    for _ in 0..requests {
        let (status, body) = request_to(tc.service_on(i, PORT), "GET", "/", "").unwrap();
        assert_eq!(status, 200, "node {i} answered {status}: {body}");
        let node = by_name
            .get(body.trim())
            .unwrap_or_else(|| panic!("unknown pod {body:?}"));
        seen.insert(node.clone());
    }
    seen
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requests to every node's service port, each on a fresh connection, until stopped; counts
/// failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(targets: Vec<std::net::SocketAddr>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                let target = targets[i % targets.len()];
                i += 1;
                match request_to(target, "GET", "/", "") {
                    Ok((200, _)) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    other => f.lock().unwrap().push(format!("{target}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Load {
            stop,
            ok,
            failed,
            thread,
        }
    }

    /// Stops the load; returns (succeeded, failures).
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

#[tokio::test]
async fn three_nodes_spread_route_across_and_drain_without_loss() {
    let tc = TestCluster::start(3, &[]).await.unwrap();
    let client = tc.client().await.unwrap();
    apply_web(&tc, &client, "web", 6).await;
    let pods = wait_ready_on(&tc, &client, "web", 6, None, Duration::from_secs(180)).await;

    // 6 replicas land 2 per node.
    let spread = per_node(&pods);
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert!(spread.values().all(|&n| n == 2), "{spread:?}");

    // Every node's service port answers, over Pods on all three nodes.
    let all: BTreeSet<String> = spread.keys().cloned().collect();
    for i in 0..3 {
        tc.eventually(
            &format!("node {i}'s port to reach every node"),
            Duration::from_secs(60),
            || {
                let reached = answering_nodes(&tc, i, &pods, 60) == all;
                async move { reached.then_some(()) }
            },
        )
        .await;
    }

    // A Pod reaches a Pod on another node by IP.
    let a = &pods[0];
    let b = pods.iter().find(|p| node_of(p) != node_of(a)).unwrap();
    let b_ip = b.status.as_ref().unwrap().pod_ip.clone().unwrap();
    // busybox nc, not wget: Debian's static busybox wget crashes (SIGSEGV) on any URL.
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {b_ip} 8080");
    let reply = run(tc
        .kubectl()
        .args(["exec", &a.name_any(), "--", "sh", "-c", &get]));
    let got = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(
        got.trim(),
        b.name_any(),
        "pod {} reached {b_ip}",
        a.name_any()
    );

    // kubectl drain under steady load: no failed request, the node empties.
    let (_, drained) = tc.node(2);
    let load = Load::start((0..3).map(|i| tc.service_on(i, PORT)).collect());
    tokio::time::sleep(Duration::from_secs(1)).await;
    run(tc.kubectl().args([
        "drain",
        &drained,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=180s",
    ]));
    let after = wait_ready_on(
        &tc,
        &client,
        "web",
        6,
        Some(&drained),
        Duration::from_secs(120),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the drain: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 20, "only {ok} requests were made");
    assert_eq!(per_node(&after).len(), 2);

    // uncordon lets Pods back: scaled up, the new replicas go to the emptied node.
    run(tc.kubectl().args(["uncordon", &drained]));
    let patch = serde_json::json!({"spec": {"replicas": 9}});
    Api::<ModelService>::namespaced(client.clone(), NS)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let back = wait_ready_on(&tc, &client, "web", 9, None, Duration::from_secs(120)).await;
    assert!(
        per_node(&back).get(&drained).copied().unwrap_or(0) > 0,
        "{:?}",
        per_node(&back)
    );
    tc.down();
}

/// The ids of the containers running on node `i` (found by their cgroups on the host).
fn containers_on(tc: &TestCluster, i: usize) -> BTreeSet<String> {
    tc.container_processes(i)
        .into_iter()
        .map(|p| p.container_id)
        .collect()
}

/// The container ids the API shows for live Pods.
async fn live_container_ids(client: &kube::Client) -> BTreeSet<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    pods.items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.container_id.as_deref())
        .map(|id| id.rsplit("://").next().unwrap_or(id).to_string())
        .collect()
}

async fn node_ready(client: &kube::Client, name: &str) -> Option<bool> {
    let node = Api::<Node>::all(client.clone()).get(name).await.ok()?;
    let conds = node.status?.conditions?;
    Some(
        conds
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
    )
}

/// Node `i` lost (by `lose`), its Pods replaced on the others while their service ports keep
/// answering; back (by `restore`), it is Ready again, runs none of the replaced Pods' containers
/// and the route to its pod range is in place on the others.
async fn lose_and_return(
    tc: &mut TestCluster,
    client: &kube::Client,
    i: usize,
    lose: impl FnOnce(&mut TestCluster),
    restore: impl FnOnce(&mut TestCluster),
) {
    let (_, lost) = tc.node(i);
    let lost_at = Instant::now();
    lose(tc);
    let replaced = wait_ready_on(tc, client, "web", 6, Some(&lost), Duration::from_secs(60)).await;
    eprintln!(
        "node {lost}: replacements Ready after {:?}",
        lost_at.elapsed()
    );
    assert_eq!(per_node(&replaced).len(), 2, "{:?}", per_node(&replaced));
    for j in (0..3).filter(|&j| j != i) {
        for _ in 0..20 {
            let (status, body) = request_to(tc.service_on(j, PORT), "GET", "/", "").unwrap();
            assert_eq!(status, 200, "node {j}: {body}");
        }
    }

    restore(tc);
    tc.eventually(
        &format!("{lost} Ready again"),
        Duration::from_secs(90),
        || async { (node_ready(client, &lost).await == Some(true)).then_some(()) },
    )
    .await;
    // Nothing of the replaced Pods runs there any more: every container on it belongs to a live Pod.
    tc.eventually(
        &format!("{lost} to stop its orphaned containers"),
        Duration::from_secs(60),
        || async {
            let live = live_container_ids(client).await;
            let orphans: BTreeSet<String> =
                containers_on(tc, i).difference(&live).cloned().collect();
            orphans.is_empty().then_some(())
        },
    )
    .await;
    // Its pod range is routed from the other nodes.
    let cidr = Api::<Node>::all(client.clone())
        .get(&lost)
        .await
        .unwrap()
        .spec
        .unwrap()
        .pod_cidr
        .unwrap();
    let (ip, _) = tc.node(i);
    for j in (0..3).filter(|&j| j != i) {
        let routes = run(tc
            .cluster
            .command_in(j, "ip")
            .unwrap()
            .args(["-4", "route", "show"]));
        assert!(
            routes.contains(&format!("{cidr} via {ip}")),
            "node {j} routes:\n{routes}"
        );
    }
}

#[tokio::test]
async fn a_lost_node_is_replaced_in_seconds_and_runs_nothing_twice_when_back() {
    let mut tc = TestCluster::start(3, &[]).await.unwrap();
    let client = tc.client().await.unwrap();
    apply_web(&tc, &client, "web", 6).await;
    let pods = wait_ready_on(&tc, &client, "web", 6, None, Duration::from_secs(180)).await;
    assert_eq!(per_node(&pods).len(), 3);

    // kill -9 of a node's agent together with its containers.
    lose_and_return(
        &mut tc,
        &client,
        2,
        |tc| tc.cluster.stop_node(2).unwrap(),
        |tc| tc.cluster.start_node(2).unwrap(),
    )
    .await;
    // A cut of another node's link: its containers run on, unseen, until it is back.
    let before = containers_on(&tc, 1);
    assert!(!before.is_empty(), "node 1 runs containers before the cut");
    lose_and_return(
        &mut tc,
        &client,
        1,
        |tc| tc.cluster.cut_link(1).unwrap(),
        |tc| tc.cluster.restore_link(1).unwrap(),
    )
    .await;
    tc.down();
}

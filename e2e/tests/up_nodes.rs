//! A cluster on one machine (needs root): the launcher (`berth_launch`, what `berth up --nodes`
//! runs) starts a server and three nodes, each in its own network namespace on a bridge; all three
//! Nodes become Ready; then `berth down` leaves the machine as it found it: no namespace, link,
//! route, mount, cgroup or process of the cluster is left (snapshots before and after).
//!
//! The snapshots keep only entries that can be this cluster's (its tag, data dir, addresses,
//! cgroup parents): other tests may create and remove their own at the same time.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use berth_launch::{Cluster, ClusterSpec, Logs};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

/// What identifies this cluster's traces in host-wide listings.
struct Markers(Vec<String>);

impl Markers {
    fn ours(&self, line: &str) -> bool {
        self.0.iter().any(|m| line.contains(m.as_str()))
    }
}

/// The host state the cluster may change, restricted to what can be its own.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    netns: BTreeSet<String>,
    links: BTreeSet<String>,
    routes: BTreeSet<String>,
    mounts: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    processes: BTreeSet<String>,
}

fn lines_of(program: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every directory under each cgroup hierarchy's `berth/`.
fn berth_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join("berth"))
        .chain([Path::new("/sys/fs/cgroup/berth").to_path_buf()])
        .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.push(e.path().display().to_string());
                stack.push(e.path());
            }
        }
    }
    out
}

/// Processes whose command line names `dir` (with their command line).
fn processes_naming(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().to_string();
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&dir)
                .then(|| format!("{} {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

fn snapshot(m: &Markers, dir: &Path) -> Snapshot {
    let keep = |v: Vec<String>| v.into_iter().filter(|l| m.ours(l)).collect();
    // Link lines carry counters that change; keep the name (and master) only.
    let links = lines_of("ip", &["-o", "link"])
        .into_iter()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect();
    Snapshot {
        netns: keep(lines_of("ip", &["netns", "list"])),
        links: keep(links),
        routes: keep(lines_of("ip", &["route", "show", "table", "all"])),
        mounts: keep(mounts),
        cgroups: keep(berth_cgroups()),
        processes: processes_naming(dir).into_iter().collect(),
    }
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_start_ready_and_berth_down_leaves_nothing() {
    let pid = std::process::id();
    let tag = format!("u{:05x}", pid % 0xfffff);
    let (a, b) = (220 + pid % 10, pid % 250);
    let subnet = format!("10.{a}.{b}.0/24");
    let cluster_cidr = format!("10.{}.0.0/16", 240 + pid % 10);
    let dir = tempfile::Builder::new()
        .prefix("berth-e2e-nodes-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data_dir = std::fs::canonicalize(dir.path()).unwrap();
    let mut markers = vec![
        tag.clone(),
        data_dir.to_string_lossy().to_string(),
        format!("10.{a}.{b}."),
        format!("10.{}.", 240 + pid % 10),
    ];
    // The nodes' container cgroups are named after their runtime roots.
    for i in 1..=3 {
        let root = data_dir.join(format!("nodes/{tag}-n{i}/runtime"));
        std::fs::create_dir_all(&root).unwrap();
        markers.push(berth_launch::cleanup::cgroup_parent(&root).unwrap());
    }
    let markers = Markers(markers);
    let before = snapshot(&markers, &data_dir);

    let spec = ClusterSpec {
        tag: tag.clone(),
        data_dir: data_dir.clone(),
        nodes: 3,
        berth_exe: berth_e2e::berth_bin(),
        subnet: subnet.parse().unwrap(),
        cluster_cidr: cluster_cidr.parse().unwrap(),
        api_port: berth_e2e::free_port(),
        registry_port: berth_e2e::free_port(),
        server_args: vec![],
        agent_args: vec![],
        logs: Logs::Files,
    };
    let cluster = Cluster::start(spec).await.unwrap();

    // Every node Ready, each in its namespace at its own address.
    let nodes: Api<Node> = Api::all(cluster.client().await.unwrap());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let names: BTreeSet<String> = list
        .items
        .iter()
        .filter(|n| is_ready(n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let want: BTreeSet<String> = (1..=3).map(|i| format!("{tag}-n{i}")).collect();
    assert_eq!(names, want);
    let netns = lines_of("ip", &["netns", "list"]).join("\n");
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert!(netns.contains(&node.netns), "{} not in {netns}", node.netns);
        assert_eq!(node.ip.to_string(), format!("10.{a}.{b}.{}", 11 + i));
        // The node's own address is configured inside its namespace, not on the host.
        let addrs = cluster
            .command_in(i, "ip")
            .unwrap()
            .args(["-o", "-4", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&addrs.stdout).contains(&format!("{}/24", node.ip)));
    }
    let during = snapshot(&markers, &data_dir);
    assert_ne!(during, before, "the cluster left no trace to compare");

    // Leave everything running as a crashed launcher would (its children are killed by `berth
    // down` and stay zombies of this process, invisible to the snapshot), then take it down with
    // the CLI, twice.
    std::mem::forget(cluster);
    for round in 0..2 {
        let out = Command::new(berth_e2e::berth_bin())
            .arg("down")
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth down (round {round}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(snapshot(&markers, &data_dir), before);
}

//! A cluster on one machine (needs root): the launcher (`berth_launch`, what `berth up --nodes`
//! runs) starts a server and three nodes, each in its own network namespace on a bridge; all three
//! Nodes become Ready; then `berth down` leaves the machine as it found it: no namespace, link,
//! route, mount, cgroup or process of the cluster is left (snapshots before and after). And
//! `berth up --nodes 3` as a user runs it: the example's six replicas land two per node, each
//! node's service address answers, and after Ctrl-C `berth down` leaves nothing behind.
//!
//! The snapshots keep only entries that can be this cluster's (its tag, data dir, addresses,
//! cgroup parents): other tests may create and remove their own at the same time.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_launch::{Cluster, ClusterSpec, Logs};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

/// What identifies this cluster's traces in host-wide listings.
struct Markers(Vec<String>);

impl Markers {
    /// The data dir, `extra`, and the cgroup parents of the nodes `<tag>-n1..3` (their container
    /// cgroups are named after their runtime roots, made here ahead of the launch).
    fn new(data_dir: &Path, tag: &str, extra: &[String]) -> Markers {
        let mut markers = vec![data_dir.to_string_lossy().to_string()];
        markers.extend(extra.iter().cloned());
        for i in 1..=3 {
            let root = data_dir.join(format!("nodes/{tag}-n{i}/runtime"));
            std::fs::create_dir_all(&root).unwrap();
            markers.push(berth_launch::cleanup::cgroup_parent(&root).unwrap());
        }
        Markers(markers)
    }

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
    let markers = Markers::new(
        &data_dir,
        &tag,
        &[
            tag.clone(),
            format!("10.{a}.{b}."),
            format!("10.{}.", 240 + pid % 10),
        ],
    );
    let before = snapshot(&markers, &data_dir);

    let api_port = berth_e2e::free_port();
    let spec = ClusterSpec {
        tag: tag.clone(),
        data_dir: data_dir.clone(),
        nodes: 3,
        berth_exe: berth_e2e::berth_bin(),
        subnet: subnet.parse().unwrap(),
        cluster_cidr: cluster_cidr.parse().unwrap(),
        api_port,
        registry_port: berth_e2e::free_port(),
        server_args: vec![],
        agent_args: vec![],
        logs: Logs::Files,
    };
    let mut cluster = Cluster::start(spec).await.unwrap();

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
    // A killed node has no process left; restarted, its daemons run again.
    let node_dir = cluster.nodes()[1].data_dir.clone();
    assert!(!berth_launch::cleanup::processes_naming(&node_dir).is_empty());
    cluster.stop_node(1).unwrap();
    assert!(berth_launch::cleanup::processes_naming(&node_dir).is_empty());
    cluster.start_node(1).unwrap();
    assert!(!berth_launch::cleanup::processes_naming(&node_dir).is_empty());

    // A cut link keeps node 1 from the server; restored, it reaches it again.
    let server = format!("{}/{api_port}", cluster.server_ip());
    let reaches = |c: &Cluster| {
        (0..10).any(|_| {
            c.command_in(0, "bash")
                .unwrap()
                .args([
                    "-c",
                    &format!("timeout 2 bash -c 'echo > /dev/tcp/{server}'"),
                ])
                .status()
                .unwrap()
                .success()
        })
    };
    assert!(reaches(&cluster));
    cluster.cut_link(0).unwrap();
    let cut = cluster
        .command_in(0, "bash")
        .unwrap()
        .args([
            "-c",
            &format!("timeout 2 bash -c 'echo > /dev/tcp/{server}'"),
        ])
        .status()
        .unwrap();
    assert!(!cut.success());
    cluster.restore_link(0).unwrap();
    assert!(reaches(&cluster));

    let during = snapshot(&markers, &data_dir);
    assert_ne!(during, before, "the cluster left no trace to compare");

    // Leave everything running as a crashed launcher would (its children are killed by `berth
    // down` and stay zombies of this process, invisible to the snapshot), then take it down with
    // the CLI, twice.
    std::mem::forget(cluster);
    berth_down_twice(&data_dir);
    assert_eq!(snapshot(&markers, &data_dir), before);
}

/// `berth down --data-dir DIR`, twice (the second finds nothing to remove).
fn berth_down_twice(data_dir: &Path) {
    for round in 0..2 {
        let out = Command::new(berth_e2e::berth_bin())
            .arg("down")
            .arg("--data-dir")
            .arg(data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth down (round {round}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.contains("nothing to remove"),
            round == 1,
            "round {round}: {stdout}"
        );
    }
}

/// `berth up --nodes 3` in the background; stdout lines come through a channel.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Up {
    fn start(dir: &Path, args: &[String]) -> Up {
        let stderr = std::fs::File::create(dir.join("up.stderr")).unwrap();
        let mut child = Command::new(berth_e2e::berth_bin())
            .args(["up", "--nodes", "3", "--ready-timeout", "300s"])
            .arg("--data-dir")
            .arg(dir)
            .arg("--source-dir")
            .arg(berth_e2e::repo_root())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Up {
            child,
            lines,
            dir: dir.to_path_buf(),
        }
    }

    /// The stdout lines up to and including the one containing `marker`.
    fn until(&self, marker: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(marker);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        let stderr = std::fs::read_to_string(self.dir.join("up.stderr")).unwrap_or_default();
        panic!("no {marker:?} from berth up; stdout {seen:?}; stderr:\n{stderr}");
    }

    /// SIGTERM (as Ctrl-C), then waits for it to exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "berth up exited with {status}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_up_spreads_the_example_over_three_nodes_and_berth_down_cleans_up() {
    let pid = std::process::id();
    let (a, b) = (230 + pid % 10, pid % 250);
    let cidr_octet = 245 + pid % 10;
    let dir = tempfile::Builder::new()
        .prefix("berth-e2e-upn-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data_dir = std::fs::canonicalize(dir.path()).unwrap();
    // `berth up --nodes` always uses the tag "up": bridge bu-up, veths buupv<i>, netns berth-up-<i>.
    let markers = Markers::new(
        &data_dir,
        "up",
        &[
            "bu-up".into(),
            "buupv".into(),
            "berth-up-".into(),
            format!("10.{a}.{b}."),
            format!("10.{cidr_octet}."),
        ],
    );
    let before = snapshot(&markers, &data_dir);
    let service_port = berth_e2e::free_port();
    let up = Up::start(
        &data_dir,
        &[
            "--node-subnet".into(),
            format!("10.{a}.{b}.0/24"),
            "--cluster-cidr".into(),
            format!("10.{cidr_octet}.0.0/16"),
            "--api-port".into(),
            berth_e2e::free_port().to_string(),
            "--registry-port".into(),
            berth_e2e::free_port().to_string(),
            "--service-port".into(),
            service_port.to_string(),
        ],
    );
    let printed = up.until("berth up keeps running", Duration::from_secs(600));

    // Six replicas, two on each node.
    let client = berth_launch_client(&data_dir).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
        *per_node.entry(node).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = (1..=3).map(|i| (format!("up-n{i}"), 2)).collect();
    assert_eq!(per_node, want);

    // The printed address of every node answers.
    for i in 1..=3 {
        let ip = format!("10.{a}.{b}.{}", 10 + i);
        assert!(
            printed
                .iter()
                .any(|l| l.contains(&format!("{ip}:{service_port}/predict"))),
            "{printed:?}"
        );
        for _ in 0..3 {
            let addr = format!("{ip}:{service_port}").parse().unwrap();
            let (status, body) = berth_e2e::http::request_to(addr, "POST", "/predict", PREDICT)
                .unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert_eq!(status, 200, "{addr}: {body}");
            assert!(body.contains("churn_probability"), "{addr}: {body}");
        }
    }

    up.stop();
    berth_down_twice(&data_dir);
    assert_eq!(snapshot(&markers, &data_dir), before);
}

/// A request churn-model answers.
const PREDICT: &str = r#"{"tenure_months": 2, "monthly_charges": 95.5, "support_tickets": 5, "contract_monthly": true, "paperless_billing": 1, "num_products": 1}"#;

/// A client with the admin kubeconfig of the cluster at `data_dir`.
async fn berth_launch_client(data_dir: &Path) -> kube::Client {
    let path = data_dir.join("server/server/kubeconfig.yaml");
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

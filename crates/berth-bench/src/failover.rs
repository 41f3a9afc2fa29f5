//! `berth bench failover`: how long a node's death costs a service. Launches a server and three
//! nodes on this machine with [`berth_launch`] (the launcher behind `berth up --nodes`: each node
//! a `berth agent` in its own network namespace), runs a ModelService of six busybox `httpd`
//! replicas with a readiness probe, spread two per node, and then, per run, kills one node as a
//! machine dies (SIGKILL to its agent and every container process) and measures the time until
//! all replicas are Ready again, none on the dead node (a poll every 100 ms). The node is brought
//! back, Ready and untainted, and the service re-spread before the next run; the victim rotates.
//! Prints every run, p50 and p99 beside the configured grace period, the goal and the peers'
//! documented defaults (no Kubernetes or Swarm runs on this machine to be measured beside it).
//! Everything the bench made is removed at the end, also after an error or Ctrl-C.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_api::ModelService;
use berth_launch::{Cluster, ClusterSpec, Logs};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::host::Host;
use crate::stats::quantile;

/// Arguments of `berth bench failover`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many node deaths to measure.
    #[arg(long, default_value_t = 10)]
    runs: u32,
    /// Replicas of the service (spread evenly over the three nodes).
    #[arg(long, default_value_t = 6)]
    replicas: u32,
    /// The server's --node-grace-period: how long a silent node counts as alive (as `berth
    /// server`, e.g. 5s or 1m).
    #[arg(long, default_value = "5s", value_parser = berth_api::duration::parse)]
    node_grace_period: Duration,
}

/// Nodes of the bench cluster.
const NODES: usize = 3;
const NAME: &str = "bench-failover";
const NAMESPACE: &str = "default";
/// The goal at the server's defaults.
const GOAL: Duration = Duration::from_secs(10);
/// `berth server`'s default --node-grace-period (the goal holds at defaults).
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How often the Pods are listed while a failover is timed.
const POLL: Duration = Duration::from_millis(100);
/// The longest any one wait of the bench may take (a failover, a node's return, a re-spread).
const WAIT: Duration = Duration::from_secs(180);
/// The Pods: busybox httpd serving the readiness probe's path, ending at SIGTERM (PID 1 would
/// ignore it otherwise).
const HTTPD: &str =
    "mkdir -p /www && echo ok > /www/ready && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait";

/// Runs `berth bench failover`; `host` tells when the user asks to stop.
pub fn run(args: Args, host: &dyn Host) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs > 0 && args.replicas > 0,
        "--runs and --replicas take counts > 0"
    );
    let dir = PathBuf::from(format!(
        "/var/tmp/berth-bench-failover-{}",
        std::process::id()
    ));
    let result = crate::block_on(bench(&args, &dir, host));
    let _ = std::fs::remove_dir_all(&dir);
    let times = result??;
    print!("{}", report(&times, args.replicas, args.node_grace_period));
    Ok(())
}

/// Launches the cluster, measures, and takes the cluster down whatever happened (Ctrl-C while
/// it starts drops [`Cluster::start`], which removes what it made so far).
async fn bench(args: &Args, dir: &Path, host: &dyn Host) -> anyhow::Result<Vec<Duration>> {
    let mut stop = host.shutdown_signal();
    let mut cluster = tokio::select! {
        c = launch(dir, args.node_grace_period) => c?,
        _ = &mut stop => bail!("interrupted"),
    };
    let result = tokio::select! {
        r = measure_all(&mut cluster, args, dir) => r,
        _ = &mut stop => Err(anyhow::anyhow!("interrupted")),
    };
    eprintln!("bench failover: removing the bench cluster");
    let down = cluster.down().context("removing the bench cluster");
    let times = result?;
    down?;
    Ok(times)
}

/// A server and [`NODES`] nodes with names, addresses and ports of this run's own.
async fn launch(dir: &Path, grace: Duration) -> anyhow::Result<Cluster> {
    let pid = std::process::id();
    let spec = ClusterSpec {
        tag: format!("bf{:05x}", pid % 0xfffff),
        data_dir: dir.to_path_buf(),
        nodes: NODES as u32,
        berth_exe: std::env::current_exe().context("locating the berth binary")?,
        subnet: format!("172.31.{}.0/24", pid % 250).parse()?,
        cluster_cidr: format!("10.{}.0.0/16", 200 + pid % 20).parse()?,
        api_port: berth_testkit::try_free_port()?,
        registry_port: berth_testkit::try_free_port()?,
        server_args: vec![
            "--registry-auth".into(),
            "none".into(),
            "--node-grace-period".into(),
            format!("{}s", grace.as_secs()),
        ],
        agent_args: Vec::new(),
        logs: Logs::Files,
    };
    eprintln!(
        "bench failover: starting a server and {NODES} nodes under {}",
        dir.display()
    );
    Cluster::start(spec)
        .await
        .context("launching the bench cluster")
}

/// Deploys the service, then times `args.runs` node deaths; prints each as it is measured.
async fn measure_all(
    cluster: &mut Cluster,
    args: &Args,
    dir: &Path,
) -> anyhow::Result<Vec<Duration>> {
    let client = cluster.client().await?;
    let registry = cluster.registry();
    let push = format!("127.0.0.1:{}/bench/busybox:latest", registry.port());
    berth_testkit::busybox::push_busybox(&dir.join("busybox"), &push, None)?;
    create_service(
        &client,
        &format!("{registry}/bench/busybox:latest"),
        args.replicas,
    )
    .await?;
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    respread(&client, &names, args.replicas).await?;
    println!(
        "failover: node killed -> {} replicas Ready, none on it ({NODES} nodes, {} runs)",
        args.replicas, args.runs
    );
    let mut times = Vec::new();
    for run in 0..args.runs as usize {
        let victim = run % NODES;
        let t = fail_over(cluster, &client, victim, args.replicas).await?;
        println!(
            "  run {:>2}: {} killed -> {}",
            run + 1,
            names[victim],
            secs(t)
        );
        times.push(t);
        cluster.start_node(victim)?;
        wait_node_back(&client, &names[victim]).await?;
        respread(&client, &names, args.replicas).await?;
    }
    Ok(times)
}

/// The ModelService: busybox httpd with a readiness probe every second.
async fn create_service(client: &kube::Client, image: &str, replicas: u32) -> anyhow::Result<()> {
    let ms: ModelService = serde_json::from_value(serde_json::json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "image": image, "replicas": replicas,
            "command": ["sh", "-c", HTTPD],
            "ports": [{"name": "http", "containerPort": 8080}],
            "securityContext": {"runAsUser": 0},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}}
        }
    }))?;
    Api::<ModelService>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &ms)
        .await?;
    Ok(())
}

/// Kills node `victim` and returns the time until `replicas` Pods are Ready, none on it.
async fn fail_over(
    cluster: &mut Cluster,
    client: &kube::Client,
    victim: usize,
    replicas: u32,
) -> anyhow::Result<Duration> {
    let name = cluster
        .nodes()
        .get(victim)
        .map(|n| n.name.clone())
        .context("no such node")?;
    let t0 = Instant::now();
    cluster.stop_node(victim)?;
    loop {
        let census = Census::of(&service_pods(client).await?);
        if census.ready_off(&name) >= replicas as usize {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > WAIT {
            bail!("{name} killed: after {WAIT:?} only {census:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until node `name` is Ready again and its lost-node taints are gone.
async fn wait_node_back(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + WAIT;
    loop {
        let node = nodes.get(name).await?;
        if node_ready(&node) && !lost_taints(&node) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} restarted but not Ready and untainted after {WAIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Spreads the service evenly again: deletes (at once) the Pods above the even share on crowded
/// nodes, so their replacements land on the emptiest node, and waits until every node has its
/// share Ready.
async fn respread(client: &kube::Client, nodes: &[String], replicas: u32) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = service_pods(client).await?;
        let census = Census::of(&listed);
        if census.is_even(nodes, replicas) {
            return Ok(());
        }
        for name in surplus(&listed, replicas) {
            match pods
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => {}
                // Gone already (its node's controller or an earlier round deleted it).
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if Instant::now() > deadline {
            bail!("the service did not spread evenly within {WAIT:?}: {census:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The service's Pods as the API lists them now.
async fn service_pods(client: &kube::Client) -> anyhow::Result<Vec<Pod>> {
    let lp =
        ListParams::default().labels(&format!("{}={NAME}", berth_api::labels::MODELSERVICE_LABEL));
    Ok(Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&lp)
        .await?
        .items)
}

/// The most replicas one node should hold when `replicas` are spread evenly.
fn share_max(replicas: u32) -> usize {
    (replicas as usize).div_ceil(NODES)
}

/// Live Pods beyond each node's even share (the first listed on each node stay).
fn surplus(pods: &[Pod], replicas: u32) -> Vec<String> {
    let mut by_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in pods.iter().filter(|p| is_live(p)) {
        if let (Some(node), Some(name)) = (node_of(p), p.metadata.name.as_deref()) {
            by_node.entry(node).or_default().push(name);
        }
    }
    by_node
        .into_values()
        .flat_map(|names| names.into_iter().skip(share_max(replicas)))
        .map(str::to_string)
        .collect()
}

/// Where the service's Pods are: live ones and Ready ones per node.
#[derive(Debug, Default, PartialEq)]
struct Census {
    /// Pods not being deleted, per node (`""`: not scheduled yet).
    live: BTreeMap<String, usize>,
    /// Live Pods with `Ready=True`, per node.
    ready: BTreeMap<String, usize>,
}

impl Census {
    fn of(pods: &[Pod]) -> Census {
        let mut c = Census::default();
        for p in pods.iter().filter(|p| is_live(p)) {
            let node = node_of(p).unwrap_or_default().to_string();
            if pod_ready(p) {
                *c.ready.entry(node.clone()).or_default() += 1;
            }
            *c.live.entry(node).or_default() += 1;
        }
        c
    }

    /// Ready Pods on nodes other than `node`.
    fn ready_off(&self, node: &str) -> usize {
        self.ready
            .iter()
            .filter(|(n, _)| n.as_str() != node && !n.is_empty())
            .map(|(_, c)| c)
            .sum()
    }

    /// Exactly `replicas` live Pods, all Ready, each of `nodes` holding its even share.
    fn is_even(&self, nodes: &[String], replicas: u32) -> bool {
        let total = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
        let min = replicas as usize / NODES;
        total(&self.live) == replicas as usize
            && total(&self.ready) == replicas as usize
            && nodes.iter().all(|n| {
                let c = self.ready.get(n).copied().unwrap_or(0);
                (min..=share_max(replicas)).contains(&c)
            })
    }
}

fn is_live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the node still carries a taint the node lifecycle controller puts on lost nodes.
fn lost_taints(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                t.key == "node.kubernetes.io/unreachable" || t.key == "node.kubernetes.io/not-ready"
            })
        })
}

/// The summary: p50/p99 beside the grace period, the goal and the peers' documented defaults.
fn report(times: &[Duration], replicas: u32, grace: Duration) -> String {
    let (p50, p99) = (quantile(times, 0.5), quantile(times, 0.99));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {} runs, {replicas} replicas on {NODES} nodes: p50 {}  p99 {}",
        times.len(),
        secs(p50),
        secs(p99)
    );
    let _ = writeln!(
        out,
        "  configured node grace period {}{}; goal <= {} at defaults{}",
        secs(grace),
        if grace == DEFAULT_GRACE {
            " (the server's default)"
        } else {
            ""
        },
        secs(GOAL),
        match (grace == DEFAULT_GRACE, p99 <= GOAL) {
            (true, true) => ": met",
            (true, false) => ": NOT met",
            (false, _) => " (not judged: the grace period is not the default)",
        }
    );
    let _ = writeln!(
        out,
        "  peers' documented defaults (not measured here: neither runs on this machine):\n    \
         Kubernetes ~ 5 m 50 s (node-monitor-grace-period 50 s, then the 300 s NoExecute toleration for unreachable nodes)\n    \
         Docker Swarm ~ 15 s (5 s heartbeat; a node is down after 3 missed periods)"
    );
    out
}

/// `d` in seconds with two decimals.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn defaults_are_ten_runs_of_six_replicas_at_the_servers_grace_period() {
        let a = Cli::try_parse_from(["failover"]).unwrap().args;
        assert_eq!((a.runs, a.replicas), (10, 6));
        assert_eq!(a.node_grace_period, DEFAULT_GRACE);
        let a = Cli::try_parse_from(["failover", "--runs", "3", "--node-grace-period", "2m"])
            .unwrap()
            .args;
        assert_eq!(a.runs, 3);
        assert_eq!(a.node_grace_period, Duration::from_secs(120));
        assert!(Cli::try_parse_from(["failover", "--node-grace-period", "soon"]).is_err());
    }

    fn pod(name: &str, node: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_failover_ends_when_all_replicas_are_ready_off_the_victim() {
        let nodes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let even = [
            pod("1", "a", true),
            pod("2", "a", true),
            pod("3", "b", true),
            pod("4", "b", true),
            pod("5", "c", true),
            pod("6", "c", true),
        ];
        let census = Census::of(&even);
        assert!(census.is_even(&nodes, 6));
        // Before replacements: the victim's Pods do not count, even while still listed Ready.
        assert_eq!(census.ready_off("a"), 4);
        let mut moved = even[2..].to_vec();
        moved.extend([pod("7", "b", true), pod("8", "c", false)]);
        assert_eq!(Census::of(&moved).ready_off("a"), 5);
        moved[5] = pod("8", "c", true);
        let census = Census::of(&moved);
        assert_eq!(census.ready_off("a"), 6);
        // 0/3/3 is not even: one Pod of each crowded node goes, the oldest stay.
        assert!(!census.is_even(&nodes, 6));
        assert_eq!(surplus(&moved, 6), ["7", "8"]);
        assert!(surplus(&even, 6).is_empty());
    }

    #[test]
    fn the_report_prints_quantiles_beside_grace_goal_and_peers() {
        let times: Vec<Duration> = [6_100, 6_900, 7_400].map(Duration::from_millis).to_vec();
        let r = report(&times, 6, DEFAULT_GRACE);
        assert!(
            r.contains("3 runs, 6 replicas on 3 nodes: p50 6.90 s  p99 7.40 s"),
            "{r}"
        );
        assert!(
            r.contains("grace period 5.00 s (the server's default)"),
            "{r}"
        );
        assert!(r.contains("goal <= 10.00 s at defaults: met"), "{r}");
        assert!(
            r.contains("Kubernetes ~ 5 m 50 s") && r.contains("Docker Swarm ~ 15 s"),
            "{r}"
        );
        assert!(r.contains("not measured here"), "{r}");
        let slow = report(&[Duration::from_secs(12)], 6, DEFAULT_GRACE);
        assert!(slow.contains(": NOT met"), "{slow}");
        let other = report(&times, 6, Duration::from_secs(2));
        assert!(other.contains("not judged"), "{other}");
    }
}

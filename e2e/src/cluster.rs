//! A cluster under test: `berth server` plus N nodes, each `berth agent` in its own network
//! namespace on a shared bridge, started by the one launcher (`berth-launch`, the same that
//! `berth up --nodes N` uses) with names, networks and ports unique to the test, and removed
//! completely when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;
use berth_launch::{Cluster, ClusterSpec, Logs};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A started cluster, removed on drop (by the launcher) together with its data dir.
pub struct TestCluster {
    /// The launched cluster.
    pub cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts a server and `nodes` nodes with `extra_server` flags on the server.
    pub async fn start(nodes: u32, extra_server: &[&str]) -> Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Test binaries run one after another; the tests of one binary in parallel: the index
        // keeps those apart, the pid the leftovers of an earlier, crashed run.
        let tag = format!("t{:04x}{n}", pid & 0xffff);
        let subnet = format!("172.{}.{}.0/24", 20 + n % 10, pid % 250).parse()?;
        let cluster_cidr = format!("10.{}.0.0/16", 230 + n % 20).parse()?;
        let dir = tempfile::Builder::new()
            .prefix("berth-cluster-")
            .tempdir_in("/var/tmp")?;
        let spec = ClusterSpec {
            tag,
            data_dir: dir.path().to_path_buf(),
            nodes,
            berth_exe: crate::berth_bin(),
            subnet,
            cluster_cidr,
            api_port: crate::free_port(),
            registry_port: crate::free_port(),
            server_args: extra_server.iter().map(|s| s.to_string()).collect(),
            agent_args: Vec::new(),
            logs: Logs::Files,
        };
        let logs = dir.path().join("logs");
        let cluster = match Cluster::start(spec).await {
            Ok(c) => c,
            // The logs go with the temp dir: say what the daemons said before they do.
            Err(e) => anyhow::bail!("{e}\n{}", tails_of(&logs, 40)),
        };
        Ok(TestCluster { cluster, _dir: dir })
    }

    /// An admin client.
    pub async fn client(&self) -> Result<kube::Client> {
        Ok(self.cluster.client().await?)
    }

    /// Pushes the busybox test image into the server's registry; returns its name as nodes
    /// pull it (`<server ip>:<port>/test/busybox:latest`).
    pub fn push_busybox(&self) -> Result<String> {
        let registry = self.cluster.registry();
        crate::node::push_busybox(&self.cluster.data_dir().join("server"), registry.port())?;
        Ok(format!("{registry}/test/busybox:latest"))
    }

    /// Node `i`'s address and name.
    pub fn node(&self, i: usize) -> (Ipv4Addr, String) {
        let n = &self.cluster.nodes()[i];
        (n.ip, n.name.clone())
    }

    /// The service port `port` on node `i`.
    pub fn service_on(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.cluster.nodes()[i].ip.into(), port)
    }

    /// A `kubectl` command bound to this cluster.
    pub fn kubectl(&self) -> std::process::Command {
        let dir = self.cluster.data_dir();
        let mut c = std::process::Command::new("kubectl");
        c.env("KUBECONFIG", self.cluster.kubeconfig())
            .env("KUBECACHEDIR", dir.join("kube-cache"))
            .env("HOME", dir)
            .arg("--request-timeout=30s");
        c
    }

    /// The tails of every daemon's log (for a failure message).
    pub fn logs_tail(&self, lines: usize) -> String {
        tails_of(&self.cluster.data_dir().join("logs"), lines)
    }

    /// Polls `f` until it yields, panicking with `what` and the daemons' log tails after `within`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, within: Duration, f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        match crate::wait::poll(within, f).await {
            Some(v) => v,
            None => panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                self.logs_tail(40)
            ),
        }
    }
}

/// The last `lines` lines of every log file in `dir`.
fn tails_of(dir: &std::path::Path, lines: usize) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        out.push_str(&format!("---- {}\n", entry.path().display()));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The Pods of ModelService `ms` in `ns` that are Ready and not being deleted, with their node.
pub async fn ready_pods(client: &kube::Client, ns: &str, ms: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("berth.dev/modelservice={ms}"));
    let Ok(list) = api.list(&lp).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .collect()
}

/// Whether the Pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node a Pod is bound to.
pub fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

impl TestCluster {
    /// The processes in node `i`'s containers (found by their cgroups on the host).
    pub fn container_processes(&self, i: usize) -> Vec<berth_launch::cleanup::ContainerProcess> {
        let node = &self.cluster.nodes()[i];
        berth_launch::cleanup::cgroup_parent(&node.data_dir.join("runtime"))
            .map(|parent| berth_launch::cleanup::container_processes(&parent))
            .unwrap_or_default()
    }

    /// Stops everything and removes all the cluster made, failing if something could not be.
    pub fn down(self) {
        let TestCluster { cluster, _dir } = self;
        cluster.down().expect("removing the cluster");
    }
}

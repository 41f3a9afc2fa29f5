//! A running cluster: the server and the nodes' daemons as child processes of the launcher, and
//! what tests do to nodes (kill, restart, cut the link, run a command inside).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::record::{NodeRecord, Record};
use crate::{ClusterSpec, LaunchError, cleanup, net, proc, ready};

/// How long the server may take to write its join token and kubeconfig.
const SERVER_WAIT: Duration = Duration::from_secs(120);
/// How long the nodes may take to become Ready.
const NODES_WAIT: Duration = Duration::from_secs(180);
/// How long a daemon may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One node of a [`Cluster`].
#[derive(Debug)]
pub struct Node {
    /// The Node's name (`<tag>-n<i>`).
    pub name: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// Its network namespace (`ip netns exec <netns> …`).
    pub netns: String,
    /// Its data dir (`DIR/nodes/<name>`).
    pub data_dir: PathBuf,
    veth: String,
    cgroup_parents: Vec<String>,
    agent: Option<Child>,
}

/// A server and its nodes on this machine. Dropping it without [`Cluster::stop`] or
/// [`Cluster::down`] removes everything (so a failing test leaves nothing behind).
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    server_ip: Ipv4Addr,
    record: Record,
    server: Option<Child>,
    nodes: Vec<Node>,
    token: String,
    finished: bool,
}

impl Cluster {
    /// Starts the server and every node, and returns once all Nodes are Ready. On failure
    /// everything made so far is removed again.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, LaunchError> {
        let server_ip = validate(&spec)?;
        for d in [spec.data_dir.join("logs"), spec.data_dir.join("nodes")] {
            std::fs::create_dir_all(&d).map_err(crate::error::io_at(&d))?;
        }
        let data_dir =
            std::fs::canonicalize(&spec.data_dir).map_err(crate::error::io_at(&spec.data_dir))?;
        let spec = ClusterSpec { data_dir, ..spec };
        let record = Record::load(&spec.data_dir)?.unwrap_or_default();
        let mut cluster = Cluster {
            record: Record {
                tag: spec.tag.clone(),
                ..record
            },
            spec,
            server_ip,
            server: None,
            nodes: Vec::new(),
            token: String::new(),
            finished: false,
        };
        cluster.start_server().await?;
        for i in 1..=cluster.spec.nodes {
            cluster.add_node(i)?;
        }
        cluster.wait_nodes_ready().await?;
        cluster.route_pod_ranges().await?;
        Ok(cluster)
    }

    /// The server's admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.spec.data_dir.join("server/server/kubeconfig.yaml")
    }

    /// A client with the server's admin kubeconfig.
    pub async fn client(&self) -> Result<kube::Client, LaunchError> {
        ready::client(&self.kubeconfig()).await
    }

    /// The server's address on the bridge (what nodes reach it at).
    pub fn server_ip(&self) -> Ipv4Addr {
        self.server_ip
    }

    /// The API server's URL as nodes reach it.
    pub fn server_url(&self) -> String {
        format!("https://{}:{}", self.server_ip, self.spec.api_port)
    }

    /// The nodes, in order (index 0 is `<tag>-n1`).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The registry as nodes reach it (images they pull are named `<this>/…`).
    pub fn registry(&self) -> SocketAddr {
        SocketAddr::new(self.server_ip.into(), self.spec.registry_port)
    }

    /// The data dir (canonical).
    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// The log file of daemon `name` (`server` or a node's name).
    pub fn log_path(&self, name: &str) -> PathBuf {
        proc::log_path(&self.spec.data_dir.join("logs"), name)
    }

    /// Kills node `i` as a machine dies: SIGKILL to its agent (with its embedded runtime), its
    /// shims and every process in its containers. Its namespace and data dir stay for
    /// [`Cluster::start_node`].
    pub fn stop_node(&mut self, i: usize) -> Result<(), LaunchError> {
        let node = self.nodes.get_mut(i).ok_or(LaunchError::NoNode(i))?;
        if let Some(mut agent) = node.agent.take() {
            proc::stop(&mut agent, libc::SIGKILL, Duration::ZERO);
        }
        cleanup::kill_processes(&node.data_dir, &node.cgroup_parents);
        Ok(())
    }

    /// Starts node `i`'s daemons again with the same flags and data dir.
    pub fn start_node(&mut self, i: usize) -> Result<(), LaunchError> {
        if i >= self.nodes.len() {
            return Err(LaunchError::NoNode(i));
        }
        self.start_node_daemons(i)
    }

    /// Takes node `i`'s link down (its host-side veth): the node is cut off, its processes run on.
    pub fn cut_link(&self, i: usize) -> Result<(), LaunchError> {
        let node = self.nodes.get(i).ok_or(LaunchError::NoNode(i))?;
        net::set_link(&node.veth, false)
    }

    /// Brings node `i`'s link back up.
    pub fn restore_link(&self, i: usize) -> Result<(), LaunchError> {
        let node = self.nodes.get(i).ok_or(LaunchError::NoNode(i))?;
        net::set_link(&node.veth, true)
    }

    /// A command that runs `program` inside node `i`'s network namespace.
    pub fn command_in(&self, i: usize, program: impl AsRef<Path>) -> Result<Command, LaunchError> {
        let node = self.nodes.get(i).ok_or(LaunchError::NoNode(i))?;
        proc::in_netns(&node.netns, program.as_ref())
    }

    /// Stops the daemons (SIGTERM, agents first, then the server) and leaves everything else:
    /// containers keep running and a later start or [`crate::down`] finds them.
    pub fn stop(mut self) {
        self.finished = true;
        for node in &mut self.nodes {
            if let Some(mut agent) = node.agent.take() {
                proc::stop(&mut agent, libc::SIGTERM, STOP_GRACE);
            }
        }
        if let Some(mut server) = self.server.take() {
            proc::stop(&mut server, libc::SIGTERM, STOP_GRACE);
        }
    }

    /// Stops everything and removes all the launch made (see [`crate::down`]).
    pub fn down(mut self) -> Result<crate::Report, LaunchError> {
        self.finished = true;
        self.kill_children();
        crate::down(&self.spec.data_dir)
    }

    fn kill_children(&mut self) {
        let children = self
            .nodes
            .iter_mut()
            .map(|n| n.agent.take())
            .chain([self.server.take()]);
        for mut child in children.flatten() {
            proc::stop(&mut child, libc::SIGKILL, Duration::ZERO);
        }
    }

    /// The bridge, then `berth server` on it; waits for its join token and kubeconfig.
    async fn start_server(&mut self) -> Result<(), LaunchError> {
        let bridge = self.spec.bridge();
        self.record.bridge = Some(bridge.clone());
        self.record.server_ip = Some(self.server_ip);
        self.record.save(&self.spec.data_dir)?;
        // Before the server's first start: its certificate names the host's addresses then.
        net::ensure_bridge(&bridge, self.server_ip, self.spec.subnet.prefix())?;
        let dir = self.spec.data_dir.join("server");
        let mut cmd = Command::new(&self.spec.berth_exe);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--disable-agent", "--bind-address", "0.0.0.0"])
            .args(["--api-port", &self.spec.api_port.to_string()])
            .args(["--registry-port", &self.spec.registry_port.to_string()])
            .args(["--cluster-cidr", &self.spec.cluster_cidr.to_string()]);
        // Nodes reach the server at the bridge address: its certificate must name it.
        cmd.args(["--tls-san", &self.server_ip.to_string()]);
        cmd.args(&self.spec.server_args);
        let server = proc::spawn_daemon(cmd, "server", self.spec.logs, &self.logs_dir())?;
        self.record.server_pid = Some(server.id());
        self.server = Some(server);
        self.record.save(&self.spec.data_dir)?;
        let token = dir.join("server/node-token");
        let log = self.log_path("server");
        let kubeconfig = self.kubeconfig();
        if let Some(server) = self.server.as_mut() {
            ready::files(&[&token, &kubeconfig], server, &log, SERVER_WAIT).await?;
        }
        // Both are rewritten at every start; wait for the API to answer before reading the token.
        let client = self.client().await?;
        wait_api(&client, SERVER_WAIT).await?;
        self.token = std::fs::read_to_string(&token)
            .map_err(crate::error::io_at(&token))?
            .trim()
            .to_string();
        Ok(())
    }

    /// Node `i` (1-based): its record, namespace and veth, then its daemons.
    fn add_node(&mut self, i: u32) -> Result<(), LaunchError> {
        let name = format!("{}-n{i}", self.spec.tag);
        let ip = self.spec.subnet.nth(10 + i).ok_or_else(|| {
            LaunchError::Spec(format!("{} has no room for node {i}", self.spec.subnet))
        })?;
        let data_dir = self.spec.data_dir.join("nodes").join(&name);
        let runtime_root = data_dir.join("runtime");
        std::fs::create_dir_all(&runtime_root).map_err(crate::error::io_at(&runtime_root))?;
        let node = Node {
            netns: format!("berth-{}-{i}", self.spec.tag),
            veth: format!("bu{}v{i}", self.spec.tag),
            cgroup_parents: cleanup::cgroup_parent(&runtime_root).into_iter().collect(),
            name,
            ip,
            data_dir,
            agent: None,
        };
        self.nodes.push(node);
        let index = self.nodes.len() - 1;
        self.remember(index, Vec::new())?;
        let node = &self.nodes[index];
        net::ensure_node_netns(
            &node.netns,
            &node.veth,
            &self.spec.bridge(),
            ip,
            self.spec.subnet.prefix(),
            self.server_ip,
        )?;
        self.start_node_daemons(index)
    }

    /// Writes node `i` (0-based) into the record with `pids`.
    fn remember(&mut self, i: usize, pids: Vec<u32>) -> Result<(), LaunchError> {
        let node = &self.nodes[i];
        let entry = NodeRecord {
            name: node.name.clone(),
            netns: node.netns.clone(),
            veth: node.veth.clone(),
            data_dir: node.data_dir.clone(),
            cgroup_parents: node.cgroup_parents.clone(),
            pids,
        };
        match self.record.nodes.iter_mut().find(|n| n.name == entry.name) {
            Some(existing) => *existing = entry,
            None => self.record.nodes.push(entry),
        }
        self.record.save(&self.spec.data_dir)
    }

    /// Starts node `i`'s agent (0-based): a whole node, with its embedded runtime under its
    /// data dir, joined with the server's token.
    fn start_node_daemons(&mut self, i: usize) -> Result<(), LaunchError> {
        let node = &self.nodes[i];
        let mut cmd = proc::in_netns(&node.netns, &self.spec.berth_exe)?;
        cmd.arg("agent")
            .args(["--server", &self.server_url()])
            .args(["--node-name", &node.name])
            .args(["--node-ip", &node.ip.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--insecure-registry", &self.registry().to_string()])
            .args(["--cluster-cidr", &self.spec.cluster_cidr.to_string()])
            // Not on the command line: anyone may read that.
            .env("BERTH_NODE_TOKEN", &self.token);
        cmd.args(&self.spec.agent_args);
        let agent = proc::spawn_daemon(cmd, &node.name, self.spec.logs, &self.logs_dir())?;
        let pids = vec![agent.id()];
        self.nodes[i].agent = Some(agent);
        self.remember(i, pids)
    }

    /// Waits until every node is Ready, failing early when a daemon exits.
    async fn wait_nodes_ready(&mut self) -> Result<(), LaunchError> {
        let client = self.client().await?;
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let logs = self.logs_dir();
        let server = &mut self.server;
        let nodes = &mut self.nodes;
        ready::nodes(&client, &names, NODES_WAIT, || {
            if let Some(s) = server.as_mut() {
                ready::check_alive(s, "berth server", &proc::log_path(&logs, "server"))?;
            }
            for n in nodes.iter_mut() {
                if let Some(a) = n.agent.as_mut() {
                    ready::check_alive(a, &n.name, &proc::log_path(&logs, &n.name))?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Routes each node's pod range through the node in the host's namespace: the host can
    /// reach every Pod, and a node reaches another node's Pods through its default route.
    async fn route_pod_ranges(&mut self) -> Result<(), LaunchError> {
        let client = self.client().await?;
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let cidrs = ready::pod_cidrs(&client, &names, NODES_WAIT).await?;
        for (node, cidr) in self.nodes.iter().zip(&cidrs) {
            if !self.record.host_routes.contains(cidr) {
                self.record.host_routes.push(cidr.clone());
            }
            self.record.save(&self.spec.data_dir)?;
            net::route_via(cidr, node.ip)?;
        }
        net::enable_forwarding()
    }

    fn logs_dir(&self) -> PathBuf {
        self.spec.data_dir.join("logs")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.kill_children();
        let _ = crate::down(&self.spec.data_dir);
    }
}

/// Checks the spec; returns the server's address.
fn validate(spec: &ClusterSpec) -> Result<Ipv4Addr, LaunchError> {
    let bad = |m: String| Err(LaunchError::Spec(m));
    let tag_ok = !spec.tag.is_empty()
        && spec.tag.len() <= 8
        && spec
            .tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !tag_ok {
        return bad(format!(
            "tag {:?}: 1 to 8 lowercase letters or digits (it names links of at most 15 characters)",
            spec.tag
        ));
    }
    if spec.nodes > 200 {
        return bad(format!("{} nodes: at most 200", spec.nodes));
    }
    if spec.subnet.nth(10 + spec.nodes + 1).is_none() {
        return bad(format!(
            "{} is too small for {} nodes",
            spec.subnet, spec.nodes
        ));
    }
    if spec.subnet.overlaps(&spec.cluster_cidr) {
        return bad(format!(
            "the node subnet {} overlaps the cluster CIDR {}",
            spec.subnet, spec.cluster_cidr
        ));
    }
    spec.server_ip()
        .ok_or_else(|| LaunchError::Spec(format!("{} has no .1", spec.subnet)))
}

/// Waits until the API answers a request.
async fn wait_api(client: &kube::Client, within: Duration) -> Result<(), LaunchError> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match client.apiserver_version().await {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(LaunchError::Api(e.to_string()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tag: &str, nodes: u32, subnet: &str, cluster_cidr: &str) -> ClusterSpec {
        ClusterSpec {
            tag: tag.into(),
            data_dir: "/nonexistent".into(),
            nodes,
            berth_exe: "berth".into(),
            subnet: subnet.parse().unwrap(),
            cluster_cidr: cluster_cidr.parse().unwrap(),
            api_port: 6443,
            registry_port: 5000,
            server_args: vec![],
            agent_args: vec![],
            logs: crate::Logs::Files,
        }
    }

    #[test]
    fn a_spec_names_links_of_at_most_15_characters_and_keeps_networks_apart() {
        let ok = spec("up", 3, "10.99.0.0/24", "10.88.0.0/16");
        assert_eq!(validate(&ok).unwrap(), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(ok.bridge(), "bu-up");
        assert!(validate(&spec("abcdefgh", 3, "10.99.0.0/24", "10.88.0.0/16")).is_ok());
        for bad in ["abcdefghi", "", "Up", "u-p"] {
            assert!(
                validate(&spec(bad, 3, "10.99.0.0/24", "10.88.0.0/16")).is_err(),
                "{bad}"
            );
        }
        // .11 to .13 do not fit in a /29; the node network may not lie in the pod network.
        assert!(validate(&spec("up", 3, "10.99.0.0/29", "10.88.0.0/16")).is_err());
        assert!(validate(&spec("up", 3, "10.88.5.0/24", "10.88.0.0/16")).is_err());
    }
}

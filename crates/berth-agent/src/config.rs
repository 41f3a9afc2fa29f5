//! The agent's settings.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one node agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Name of this node's Node object (default: the host name).
    pub node_name: String,
    /// CRI endpoint of the container runtime (`unix:///run/berth/cri.sock`).
    pub cri_endpoint: String,
    /// This node's address, published as the Node's `InternalIP` and used by the API server to
    /// reach [`AgentConfig::server_port`].
    pub node_ip: IpAddr,
    /// Port of the node's HTTPS endpoint (logs, exec), published in the Node's
    /// `status.daemonEndpoints.kubeletEndpoint.port`. 0 picks a free port.
    pub server_port: u16,
    /// Bearer token the API server presents to the node endpoint (the node/join token).
    pub server_token: String,
    /// The agent's own state directory (certificates, checkpoints).
    pub data_dir: PathBuf,
    /// How often the Lease is renewed (default 1 s; each renewal may take at most this long).
    pub lease_renew: Duration,
    /// Lease duration written into the Lease (`spec.leaseDurationSeconds`; default 5 s, the
    /// server's default `--node-grace-period`, which is what actually decides).
    pub lease_duration: Duration,
    /// Maximum number of Pods this node accepts (`capacity.pods`).
    pub max_pods: u32,
    /// Whether to run the service proxy on this node.
    pub proxy: bool,
    /// Address the service proxy listens on (every ModelService's `service.port` on it).
    pub proxy_bind: IpAddr,
    /// How often sandboxes of Pods that no longer exist are looked for (besides after every full
    /// list of the Pod watch).
    pub orphan_check: Duration,
    /// The cluster's pod network. When set, the agent routes to every other node's pod CIDR
    /// through that node's InternalIP and masquerades pod traffic leaving this network; `None`
    /// leaves the host's routes and NAT alone (a single node, or a network managed elsewhere).
    pub cluster_cidr: Option<berth_net::Ipv4Cidr>,
}

impl AgentConfig {
    /// Defaults for a node named `node_name` using the runtime at `cri_endpoint`.
    pub fn new(
        node_name: impl Into<String>,
        cri_endpoint: impl Into<String>,
        data_dir: PathBuf,
    ) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            cri_endpoint: cri_endpoint.into(),
            node_ip: IpAddr::from([127, 0, 0, 1]),
            server_port: 10250,
            server_token: String::new(),
            data_dir,
            lease_renew: Duration::from_secs(1),
            lease_duration: Duration::from_secs(5),
            max_pods: 110,
            proxy: true,
            proxy_bind: IpAddr::from([0, 0, 0, 0]),
            orphan_check: Duration::from_secs(30),
            cluster_cidr: None,
        }
    }
}

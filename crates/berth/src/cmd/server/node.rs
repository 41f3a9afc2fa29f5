//! The server's own machine as a node: the embedded CRI runtime on DIR/runtime/cri.sock (unless
//! `--container-runtime-endpoint` names another; [`crate::cmd::runtime::NodeRuntimeArgs`]) and
//! the node agent, which talks to the API through kube-rs and to the runtime only through CRI,
//! exactly as `berth agent` does.

use std::net::IpAddr;
use std::path::Path;

use berth_net::Ipv4Cidr;

use crate::cmd::agent;
use crate::cmd::runtime::{Embedded, NodeRuntimeArgs};

/// Node flags of `berth server`.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// Name of this machine's Node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address other parts reach this node at (default: the address of the default route).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The cluster's pod network; each node gets a range of it.
    #[arg(long, default_value = "10.88.0.0/16")]
    pub cluster_cidr: Ipv4Cidr,
    /// Prefix length of each node's pod range.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    pub node_cidr_mask_size: u8,
    /// Port of the node endpoint (logs, exec) the API server proxies to; 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Maximum number of Pods on this node (its `pods` capacity; the scheduler leaves the rest
    /// Pending).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Do not route between nodes' pod CIDRs nor masquerade pod traffic (the network is managed
    /// elsewhere).
    #[arg(long)]
    pub disable_pod_routes: bool,
    #[command(flatten)]
    pub runtime: NodeRuntimeArgs,
    /// Do not serve ModelServices' service ports on this node.
    #[arg(long)]
    pub disable_proxy: bool,
    /// Address the service proxy listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub proxy_bind_address: IpAddr,
}

/// The running runtime and agent.
pub struct LocalNode {
    runtime: Option<Embedded>,
    agent: tokio::task::JoinHandle<()>,
}

impl LocalNode {
    /// Starts the embedded runtime (unless an endpoint is given) and the agent.
    pub async fn start(
        args: &NodeArgs,
        data_dir: &Path,
        client: kube::Client,
        auth: &berth_apiserver::auth::Authenticator,
    ) -> anyhow::Result<Self> {
        let (endpoint, runtime) = args.runtime.endpoint(data_dir).await?;
        let mut config = berth_agent::AgentConfig::new(
            agent::node_name(args.node_name.as_deref())?,
            endpoint,
            data_dir.join("agent"),
        );
        config.node_ip = args.node_ip.unwrap_or_else(agent::default_node_ip);
        config.server_port = args.kubelet_port;
        // The embedded agent keeps the admin client; its endpoint expects what the server presents.
        config.server_token = auth.endpoint_token(&config.node_name);
        config.max_pods = args.max_pods;
        config.proxy = !args.disable_proxy;
        config.proxy_bind = args.proxy_bind_address;
        config.cluster_cidr = Some(args.cluster_cidr).filter(|_| !args.disable_pod_routes);
        eprintln!(
            "berth server: node {} ({})",
            config.node_name, config.node_ip
        );
        let agent = tokio::spawn(async move {
            if let Err(err) = berth_agent::run(client, config).await {
                tracing::error!(error = %err, "node agent stopped");
            }
        });
        Ok(LocalNode { runtime, agent })
    }

    /// Stops the agent, then the runtime; containers keep running.
    pub async fn stop(self) {
        self.agent.abort();
        let _ = self.agent.await;
        if let Some(runtime) = self.runtime {
            runtime.stop().await;
        }
    }
}

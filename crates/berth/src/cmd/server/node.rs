//! The server's own machine as a node: the embedded CRI runtime on DIR/runtime/cri.sock (unless
//! `--container-runtime-endpoint` names another) and the node agent, which talks to the API
//! through kube-rs and to the runtime only through CRI, exactly as `berth agent` does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_net::Ipv4Cidr;
use berth_runtime::{CriService, RuntimeConfig};

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
    /// Bridge the embedded runtime attaches pods to.
    #[arg(long, default_value = "berth0")]
    pub bridge: String,
    /// Port of the node endpoint (logs, exec) the API server proxies to; 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Maximum number of Pods on this node (its `pods` capacity; the scheduler leaves the rest
    /// Pending).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Use this CRI runtime instead of the embedded one (e.g. unix:///run/containerd/containerd.sock).
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// OCI runtime binary of the embedded runtime.
    #[arg(long, default_value = "runc")]
    pub oci_runtime: PathBuf,
    /// Registries (HOST:PORT) the embedded runtime pulls from over plain HTTP (loopback ones always).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Do not serve ModelServices' service ports on this node.
    #[arg(long)]
    pub disable_proxy: bool,
    /// Address the service proxy listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub proxy_bind_address: IpAddr,
}

/// The running runtime and agent.
pub struct LocalNode {
    runtime: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
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
        let (endpoint, runtime) = match &args.container_runtime_endpoint {
            Some(e) => (e.clone(), None),
            None => {
                let (endpoint, handle) = start_runtime(args, data_dir).await?;
                (endpoint, Some(handle))
            }
        };
        let mut config =
            berth_agent::AgentConfig::new(node_name(args)?, endpoint, data_dir.join("agent"));
        config.node_ip = args.node_ip.unwrap_or_else(default_node_ip);
        config.server_port = args.kubelet_port;
        // The embedded agent keeps the admin client; its endpoint expects what the server presents.
        config.server_token = auth.endpoint_token(&config.node_name);
        config.max_pods = args.max_pods;
        config.proxy = !args.disable_proxy;
        config.proxy_bind = args.proxy_bind_address;
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
        if let Some((stop, task)) = self.runtime {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Starts the embedded CRI runtime under DIR/runtime; returns its endpoint and a stopper.
async fn start_runtime(
    args: &NodeArgs,
    data_dir: &Path,
) -> anyhow::Result<(
    String,
    (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
)> {
    let root = data_dir.join("runtime");
    let config = RuntimeConfig {
        root: root.clone(),
        shim_exe: std::env::current_exe().context("locating the berth binary for the shim")?,
        oci_runtime: args.oci_runtime.clone(),
        insecure_registries: args.insecure_registries.clone(),
        // The pod CIDR comes from the server over CRI once the node is registered.
        network: None,
    };
    let mut service = CriService::open(&config)
        .with_context(|| format!("opening the runtime at {}", root.display()))?
        .with_pod_bridge(args.bridge.clone());
    service
        .start_streaming()
        .await
        .context("starting the exec streaming server")?;
    service.restore_host_ports();
    let socket = root.join("cri.sock");
    let listener =
        berth_cri::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.await;
        };
        if let Err(err) = berth_cri::serve(listener, service.clone(), service, stopped).await {
            tracing::error!(error = %err, "CRI runtime stopped");
        }
    });
    Ok((format!("unix://{}", socket.display()), (stop_tx, task)))
}

/// `--node-name`, else the host name (lower-cased, as Node names must be).
fn node_name(args: &NodeArgs) -> anyhow::Result<String> {
    if let Some(n) = &args.node_name {
        return Ok(n.clone());
    }
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    let name = host.trim().to_ascii_lowercase();
    anyhow::ensure!(!name.is_empty(), "the host name is empty: pass --node-name");
    Ok(name)
}

/// The source address of the default route (no packet is sent), else loopback.
fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        s.connect(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9)))?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

//! `berth agent`: this machine as a whole node of a server's cluster. It starts the embedded CRI
//! runtime under `--data-dir`/runtime (as `berth server` does for its own machine; or drives
//! `--container-runtime-endpoint`, e.g. containerd), registers the machine as a Node, renews its
//! Lease and runs the Pods bound to it.
//!
//! Its credentials come from joining with a token ([`join`]) or from `--kubeconfig`; either way
//! the server is verified against a CA certificate, never trusted blindly.

mod join;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;

use anyhow::Context;
use berth_net::Ipv4Cidr;

use crate::cmd::runtime::NodeRuntimeArgs;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// The API server's URL, e.g. https://HOST:6443 (joins with --token the first time, then
    /// uses the credentials saved in --data-dir); alternatively --kubeconfig.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub server: Option<String>,
    /// A kubeconfig for the API server (instead of joining).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The join token (`B10<ca-sha256>::<id>.<secret>`, from DIR/server/node-token or `berth token
    /// create`), with --server; only needed until the agent has joined. With --kubeconfig: the
    /// token the API server presents to this node's endpoint (logs, exec).
    #[arg(long, env = "BERTH_NODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) of the API server. With --server: needed when the token carries no
    /// CA fingerprint, checked against the fingerprint when it does. With --kubeconfig: trusted
    /// instead of the kubeconfig's CA.
    #[arg(long)]
    pub certificate_authority: Option<PathBuf>,
    /// Name of this machine's Node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address the server and the other nodes reach this node at (default: the address of the
    /// default route).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The agent's state directory (the embedded runtime's under DIR/runtime).
    #[arg(long, default_value = "/var/lib/berth/agent")]
    pub data_dir: PathBuf,
    /// Port of the node endpoint (logs, exec); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Maximum number of Pods on this node.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Do not serve ModelServices' service ports on this node.
    #[arg(long)]
    pub disable_proxy: bool,
    /// Address the service proxy listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub proxy_bind_address: IpAddr,
    /// The cluster's pod network (the server's --cluster-cidr): pod traffic within it is routed
    /// between nodes, traffic leaving it masqueraded.
    #[arg(long, default_value = "10.88.0.0/16")]
    pub cluster_cidr: Ipv4Cidr,
    /// Do not route between nodes' pod CIDRs nor masquerade pod traffic (the network is managed
    /// elsewhere).
    #[arg(long)]
    pub disable_pod_routes: bool,
    #[command(flatten)]
    pub runtime: NodeRuntimeArgs,
}

/// Runs the subcommand until SIGINT/SIGTERM, then stops the agent and the embedded runtime;
/// containers keep running (their shims own them) and the next start adopts them.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(async move {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let node_name = node_name(args.node_name.as_deref())?;
        let (client, endpoint_token) = client(&args, &node_name).await?;
        let (endpoint, runtime) = args.runtime.endpoint(&args.data_dir).await?;
        let config = agent_config(&args, node_name, endpoint, endpoint_token);
        eprintln!(
            "berth agent: node {} ({}) on {}",
            config.node_name, config.node_ip, config.cri_endpoint
        );
        let outcome = tokio::select! {
            r = berth_agent::run(client, config) => r.context("node agent"),
            _ = crate::rt::shutdown_signal() => {
                eprintln!("berth agent: stopping (containers keep running)");
                Ok(())
            }
        };
        if let Some(runtime) = runtime {
            runtime.stop().await;
        }
        outcome
    })?
}

/// The agent's configuration from the flags.
fn agent_config(
    args: &Args,
    node_name: String,
    cri_endpoint: String,
    endpoint_token: String,
) -> berth_agent::AgentConfig {
    let mut config = berth_agent::AgentConfig::new(node_name, cri_endpoint, args.data_dir.clone());
    config.node_ip = args.node_ip.unwrap_or_else(default_node_ip);
    config.server_port = args.kubelet_port;
    config.server_token = endpoint_token;
    config.max_pods = args.max_pods;
    config.proxy = !args.disable_proxy;
    config.proxy_bind = args.proxy_bind_address;
    config.cluster_cidr = Some(args.cluster_cidr).filter(|_| !args.disable_pod_routes);
    config
}

/// A client and the node endpoint token: from the saved join (joining first if needed) with
/// --server, else from --kubeconfig (or the usual kubeconfig lookup).
async fn client(args: &Args, node_name: &str) -> anyhow::Result<(kube::Client, String)> {
    let saved = join::Saved::under(&args.data_dir);
    let (mut config, endpoint_token) = match (&args.server, &args.kubeconfig) {
        (Some(server), _) => joined(args, server, node_name, &saved).await?,
        (None, Some(path)) => {
            let endpoint_token = match &args.token {
                Some(t) => t.clone(),
                None if saved.exist() => saved.read_endpoint_token()?,
                None => String::new(),
            };
            (read_kubeconfig(path).await?, endpoint_token)
        }
        (None, None) => {
            let config = kube::Config::infer()
                .await
                .context("no --server or --kubeconfig, and no kubeconfig found")?;
            (config, args.token.clone().unwrap_or_default())
        }
    };
    if let (None, Some(ca)) = (&args.server, &args.certificate_authority) {
        config.root_cert_file = Some(ca.clone());
    }
    anyhow::ensure!(
        !config.accept_invalid_certs,
        "the kubeconfig skips TLS verification; the agent never talks to an unverified server"
    );
    let client = kube::Client::try_from(config).context("creating the API client")?;
    Ok((client, endpoint_token))
}

/// The saved credentials of a joined agent, joining `server` with --token first if none are saved.
async fn joined(
    args: &Args,
    server: &str,
    node_name: &str,
    saved: &join::Saved,
) -> anyhow::Result<(kube::Config, String)> {
    if !saved.exist() {
        let Some(token) = &args.token else {
            anyhow::bail!(
                "--token is needed to join {server} (nothing saved in {})",
                args.data_dir.display()
            );
        };
        let req = join::Request {
            server,
            token,
            ca_file: args.certificate_authority.as_deref(),
            node_name,
        };
        join::join(&req, saved).await?;
    }
    Ok((
        read_kubeconfig(&saved.kubeconfig).await?,
        saved.read_endpoint_token()?,
    ))
}

async fn read_kubeconfig(path: &std::path::Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("loading the kubeconfig")
}

/// `--node-name` if `given`, else the host name (lower-cased, as Node names must be).
pub fn node_name(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(n) = given {
        return Ok(n.to_string());
    }
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    let name = host.trim().to_ascii_lowercase();
    anyhow::ensure!(!name.is_empty(), "the host name is empty: pass --node-name");
    Ok(name)
}

/// The source address of the default route (no packet is sent), else loopback: the address
/// other machines most likely reach this one at.
pub fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        s.connect(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9)))?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        agent: Args,
    }

    fn parse(extra: &[&str]) -> Args {
        let argv = [
            "agent",
            "--server",
            "https://10.0.0.1:6443",
            "--node-name",
            "n1",
        ];
        Cli::try_parse_from(argv.iter().chain(extra)).unwrap().agent
    }

    #[test]
    fn the_agent_runs_the_embedded_runtime_unless_given_an_endpoint() {
        let a = parse(&[]);
        assert_eq!(a.runtime.container_runtime_endpoint, None);
        assert_eq!(a.runtime.runtime.bridge, "berth0");
        let a = parse(&[
            "--container-runtime-endpoint",
            "unix:///run/containerd.sock",
        ]);
        assert_eq!(
            a.runtime.container_runtime_endpoint.as_deref(),
            Some("unix:///run/containerd.sock")
        );
    }

    #[test]
    fn pod_routes_follow_the_cluster_cidr_unless_disabled() {
        let config = |a: &Args| agent_config(a, "n1".into(), "unix:///x".into(), String::new());
        let a = parse(&["--cluster-cidr", "10.150.0.0/16"]);
        assert_eq!(
            config(&a).cluster_cidr.map(|c| c.to_string()).as_deref(),
            Some("10.150.0.0/16")
        );
        let a = parse(&["--disable-pod-routes"]);
        assert_eq!(config(&a).cluster_cidr, None);
    }
}

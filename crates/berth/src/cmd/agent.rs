//! `berth agent`: a node agent joining a server. It registers this machine as a Node, renews its
//! Lease and runs the Pods bound to it through a CRI runtime (`berth runtime`, containerd, ...).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// The API server's URL (with --token); alternatively --kubeconfig.
    #[arg(long, requires = "token", conflicts_with = "kubeconfig")]
    pub server: Option<String>,
    /// A kubeconfig for the API server.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The node join token: the agent's credential with --server, and the token the API server
    /// presents to this node's endpoint (logs, exec).
    #[arg(long, env = "BERTH_NODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) of the API server with --server; without it the server's certificate
    /// is not verified.
    #[arg(long, requires = "server")]
    pub certificate_authority: Option<PathBuf>,
    /// Name of this machine's Node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address the server reaches this node at.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: IpAddr,
    /// The CRI runtime to drive.
    #[arg(long, default_value = "unix:///run/berth/cri.sock")]
    pub container_runtime_endpoint: String,
    /// The agent's state directory.
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
}

/// Runs the subcommand until Ctrl-C (containers keep running).
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async move {
        let client = client(&args).await?;
        let mut config = berth_agent::AgentConfig::new(
            node_name(&args)?,
            args.container_runtime_endpoint.clone(),
            args.data_dir.clone(),
        );
        config.node_ip = args.node_ip;
        config.server_port = args.kubelet_port;
        config.server_token = args.token.clone().unwrap_or_default();
        config.max_pods = args.max_pods;
        config.proxy = !args.disable_proxy;
        config.proxy_bind = args.proxy_bind_address;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        eprintln!(
            "berth agent: node {} ({}) on {}",
            config.node_name, config.node_ip, config.cri_endpoint
        );
        tokio::select! {
            r = berth_agent::run(client, config) => r.context("node agent"),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("berth agent: stopping (containers keep running)");
                Ok(())
            }
        }
    })
}

/// A client from --server/--token or --kubeconfig (else the usual kubeconfig lookup).
async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let config = match (&args.server, &args.kubeconfig) {
        (Some(server), _) => {
            let mut c = kube::Config::new(
                server
                    .parse()
                    .with_context(|| format!("bad --server {server:?}"))?,
            );
            c.auth_info.token = args.token.clone().map(Into::into);
            match &args.certificate_authority {
                Some(ca) => c.root_cert_file = Some(ca.clone()),
                None => c.accept_invalid_certs = true,
            }
            c
        }
        (None, Some(path)) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .context("loading the kubeconfig")?
        }
        (None, None) => kube::Config::infer()
            .await
            .context("no --server or --kubeconfig, and no kubeconfig found")?,
    };
    kube::Client::try_from(config).context("creating the API client")
}

/// --node-name, else the host name (lower-cased, as Node names must be).
fn node_name(args: &Args) -> anyhow::Result<String> {
    if let Some(n) = &args.node_name {
        return Ok(n.clone());
    }
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    let name = host.trim().to_ascii_lowercase();
    anyhow::ensure!(!name.is_empty(), "the host name is empty: pass --node-name");
    Ok(name)
}

//! `berth agent`: a node agent joining a server. It registers this machine as a Node, renews its
//! Lease and runs the Pods bound to it through a CRI runtime (`berth runtime`, containerd, ...).
//!
//! Its credentials come from joining with a token ([`join`]) or from `--kubeconfig`; either way
//! the server is verified against a CA certificate, never trusted blindly.

mod join;

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;

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
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let node_name = node_name(&args)?;
        let (client, endpoint_token) = client(&args, &node_name).await?;
        let mut config = berth_agent::AgentConfig::new(
            node_name,
            args.container_runtime_endpoint.clone(),
            args.data_dir.clone(),
        );
        config.node_ip = args.node_ip;
        config.server_port = args.kubelet_port;
        config.server_token = endpoint_token;
        config.max_pods = args.max_pods;
        config.proxy = !args.disable_proxy;
        config.proxy_bind = args.proxy_bind_address;
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

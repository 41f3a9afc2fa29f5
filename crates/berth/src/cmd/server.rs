//! `berth server`: the control plane (API server, controllers and scheduler, embedded registry)
//! and, unless `--disable-agent`, this machine as a node: the embedded CRI runtime and the agent.

mod node;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_apiserver::error::Cause;
use berth_apiserver::{Config, Options, Validator};

/// Arguments of `berth server`.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory (server state under DIR/server, registry under DIR/registry).
    /// Default: /var/lib/berth as root, else $XDG_DATA_HOME/berth.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port of the Kubernetes-compatible API (HTTPS).
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// Address the API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Another name (DNS name or IP address) the API's serving certificate carries, beside
    /// localhost, the host name and the host's addresses; repeatable. The certificate is re-issued
    /// by the same CA at start when it lacks one, so join tokens stay valid.
    #[arg(long = "tls-san", value_name = "NAME_OR_IP")]
    pub tls_sans: Vec<String>,
    /// Do not run a local node agent and runtime (a control plane only).
    #[arg(long)]
    pub disable_agent: bool,
    /// Do not run the controllers and the scheduler (an API server and registry only).
    #[arg(long)]
    pub disable_controllers: bool,
    /// How long a node may stay silent (no Lease renewal) before it counts as lost.
    #[arg(long, default_value = "5s", value_parser = berth_api::duration::parse)]
    pub node_grace_period: std::time::Duration,
    /// How often history older than one interval is compacted and the store file vacuumed
    /// (its freed space returned to the file system); `0` turns both off.
    #[arg(long, default_value = "5m", value_parser = berth_api::duration::parse)]
    pub compaction_interval: std::time::Duration,
    /// Serve only legacy discovery (APIVersions/APIGroupList), not aggregated discovery.
    #[arg(long)]
    pub legacy_discovery: bool,
    /// Compact all history once at start (every older resourceVersion becomes expired).
    #[arg(long, hide = true)]
    pub compact_on_start: bool,
    /// Keep objects in memory only (nothing survives a restart; for experiments and tests).
    #[arg(long, hide = true)]
    pub ephemeral: bool,
    #[command(flatten)]
    pub registry: super::registry::ServerRegistryArgs,
    #[command(flatten)]
    pub node: node::NodeArgs,
}

/// The default data dir: /var/lib/berth as root, else $XDG_DATA_HOME/berth (or ~/.local/share/berth).
pub fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/berth");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("berth");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/berth")
}

/// Opens the object store under DIR/server.
fn open_store(
    args: &Args,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn berth_store::Store>> {
    if args.ephemeral {
        return Ok(Arc::new(berth_store::MemStore::new()));
    }
    let dir = data_dir.join("server");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("state.redb");
    let store = berth_store::RedbStore::open(&path)
        .with_context(|| format!("opening the store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// The CRDs berth itself serves (ModelService), as JSON.
fn builtin_crds() -> Vec<serde_json::Value> {
    vec![berth_api::crd_json()]
}

/// Validation beyond the CRD schema: berth-api's ModelService rules, every problem as a cause.
fn validators() -> HashMap<String, Validator> {
    let modelservice: Validator = Arc::new(|obj: &serde_json::Value| {
        berth_api::validate_value(obj)
            .into_iter()
            .map(|e| Cause {
                reason: e.reason().to_string(),
                message: e.message(),
                field: e.field.clone(),
            })
            .collect()
    });
    HashMap::from([("berth.dev/ModelService".to_string(), modelservice)])
}

/// Runs `berth server`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(async move {
        let running = start(args).await?;
        crate::rt::shutdown_signal().await;
        running.stop().await;
        anyhow::Ok(())
    })?
}

/// A started server: API, registry, controllers and (unless disabled) runtime and agent.
pub struct Running {
    /// The admin kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    /// The registry's address, if it runs.
    pub registry: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    api_server: berth_apiserver::Running,
    registry_stop: tokio::sync::oneshot::Sender<()>,
    controllers: Option<tokio::task::JoinHandle<()>>,
    node: Option<node::LocalNode>,
}

impl Running {
    /// Stops everything this server started. Containers keep running (their shims own them), so
    /// the next start adopts them.
    pub async fn stop(self) {
        tracing::info!("shutting down");
        if let Some(node) = self.node {
            node.stop().await;
        }
        if let Some(task) = self.controllers {
            task.abort();
        }
        let _ = self.registry_stop.send(());
        self.api_server.stop();
    }
}

/// Starts the server's parts and returns once all of them listen.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = open_store(&args, &data_dir)?;
    let config = Config {
        data_dir: data_dir.clone(),
        listen: SocketAddr::new(args.bind_address, args.api_port),
        options: Options {
            legacy_discovery: args.legacy_discovery,
            compact_on_start: args.compact_on_start,
            compact_interval: Some(args.compaction_interval).filter(|d| !d.is_zero()),
            ..Options::default()
        },
        install_crds: builtin_crds(),
        validators: validators(),
        tls_sans: args.tls_sans.clone(),
    };
    let api_server = berth_apiserver::start(config, store)
        .await
        .context("starting the API server")?;
    eprintln!(
        "berth server: API on https://{} (kubeconfig {})",
        api_server.addr,
        api_server.kubeconfig.display()
    );
    let (registry_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let registry = args
        .registry
        .start(&data_dir, args.bind_address, async move {
            let _ = stop_rx.await;
        })
        .await?;
    if let Some(addr) = registry {
        eprintln!("berth server: registry on http://{addr}");
    }
    let client = admin_client(&api_server.kubeconfig).await?;
    let controllers = if args.disable_controllers {
        None
    } else {
        Some(start_controllers(client.clone(), &args))
    };
    let node = if args.disable_agent {
        None
    } else {
        Some(node::LocalNode::start(&args.node, &data_dir, client, &api_server.state.auth).await?)
    };
    Ok(Running {
        kubeconfig: api_server.kubeconfig.clone(),
        registry,
        data_dir,
        api_server,
        registry_stop,
        controllers,
        node,
    })
}

/// A kube client with the admin kubeconfig the server just wrote: the controllers and the local
/// agent talk to the API exactly as any Kubernetes client would.
async fn admin_client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)
        .context("reading the server's kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading the server's kubeconfig")?;
    kube::Client::try_from(config).context("building a client for the server")
}

/// Runs the controllers, the scheduler and node IPAM against this server.
fn start_controllers(client: kube::Client, args: &Args) -> tokio::task::JoinHandle<()> {
    let options = berth_controller::ControllerOptions {
        node_grace: args.node_grace_period,
        node_ipam: Some(berth_controller::nodeipam::NodeIpamOptions {
            cluster_cidr: args.node.cluster_cidr,
            node_mask: args.node.node_cidr_mask_size,
        }),
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(err) = berth_controller::run(client, options).await {
            tracing::error!(error = %err, "controllers stopped");
        }
    })
}

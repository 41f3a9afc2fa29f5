//! `berth runtime`: the node's CRI v1 runtime on a Unix socket; and the one way a node gets its
//! runtime: the same runtime embedded in `berth server` and `berth agent` ([`NodeRuntimeArgs`],
//! [`Embedded`]), or another CRI runtime's endpoint.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_runtime::{CriService, RuntimeConfig};

/// Flags of the runtime itself, the same for `berth runtime` and the embedded runtime.
#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Bridge the pods' veths are attached to (created if missing).
    #[arg(long, default_value = "berth0")]
    pub bridge: String,
    /// OCI runtime binary.
    #[arg(long, default_value = "runc")]
    pub oci_runtime: PathBuf,
    /// Registries (HOST:PORT) pulled from over plain HTTP (loopback ones always are).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

/// How a node (`berth server`, `berth agent`) gets its CRI runtime: embedded by default.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeRuntimeArgs {
    /// Use this CRI runtime instead of the embedded one (e.g. unix:///run/containerd/containerd.sock).
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl NodeRuntimeArgs {
    /// The CRI endpoint the node's agent drives: `--container-runtime-endpoint` if given, else
    /// that of the embedded runtime, started here under `data_dir/runtime` (socket `cri.sock`
    /// there) and returned so that its owner stops it.
    pub async fn endpoint(&self, data_dir: &Path) -> anyhow::Result<(String, Option<Embedded>)> {
        match &self.container_runtime_endpoint {
            Some(e) => Ok((e.clone(), None)),
            None => {
                let (endpoint, embedded) =
                    Embedded::start(&self.runtime, data_dir.join("runtime")).await?;
                Ok((endpoint, Some(embedded)))
            }
        }
    }
}

/// The embedded runtime, serving CRI in this process.
pub struct Embedded {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Embedded {
    /// Starts the runtime rooted at `root`, listening on `root/cri.sock`; returns its endpoint.
    /// It has no pod network until the agent hands it the node's pod CIDR over CRI.
    pub async fn start(args: &RuntimeArgs, root: PathBuf) -> anyhow::Result<(String, Self)> {
        let socket = root.join("cri.sock");
        let service = open(args, root, None).await?;
        let listener =
            berth_cri::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_rx.await;
            };
            if let Err(err) = berth_cri::serve(listener, service.clone(), service, stopped).await {
                tracing::error!(error = %err, "CRI runtime stopped");
            }
        });
        Ok((
            format!("unix://{}", socket.display()),
            Embedded { stop, task },
        ))
    }

    /// Stops serving CRI; containers keep running (their shims own them) and the next start
    /// adopts them.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Opens the runtime at `root`: its state, the exec streaming server, and the host ports of the
/// sandboxes that outlived the previous run.
async fn open(
    args: &RuntimeArgs,
    root: PathBuf,
    network: Option<berth_runtime::network::NetworkConfig>,
) -> anyhow::Result<CriService> {
    let config = RuntimeConfig {
        root,
        shim_exe: std::env::current_exe().context("locating the berth binary for the shim")?,
        oci_runtime: args.oci_runtime.clone(),
        insecure_registries: args.insecure_registries.clone(),
        network,
    };
    let mut service = CriService::open(&config)
        .with_context(|| format!("opening the runtime at {}", config.root.display()))?
        .with_pod_bridge(args.bridge.clone());
    service
        .start_streaming()
        .await
        .context("starting the exec streaming server")?;
    service.restore_host_ports();
    Ok(service)
}

/// Arguments of `berth runtime`.
#[derive(clap::Args)]
pub struct Args {
    /// CRI endpoint to listen on.
    #[arg(long, default_value = "unix:///run/berth/cri.sock")]
    listen: String,
    /// Runtime state root (content, snapshots, images, sandboxes, containers).
    #[arg(long, default_value = "/var/lib/berth/runtime")]
    root: PathBuf,
    /// Pod CIDR; the bridge gets its first address, pods the following ones.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Runs `berth runtime` until SIGTERM/SIGINT; containers keep running (their shims own them).
pub fn run(args: Args) -> anyhow::Result<()> {
    let cidr = berth_runtime::network::Cidr::parse_pod_cidr(&args.pod_cidr).ok_or_else(|| {
        anyhow::anyhow!(
            "--pod-cidr {:?}: expected an IPv4 CIDR with a prefix of 8..30",
            args.pod_cidr
        )
    })?;
    let network = berth_runtime::network::NetworkConfig {
        bridge: args.runtime.bridge.clone(),
        cidr,
    };
    let socket = berth_cri::socket_path(&args.listen)?;
    crate::rt::block_on(async move {
        let service = open(&args.runtime, args.root.clone(), Some(network)).await?;
        let listener = berth_cri::bind(&socket)?;
        tracing::info!(socket = %socket.display(), root = %args.root.display(), "CRI runtime listening");
        berth_cri::serve(
            listener,
            service.clone(),
            service,
            crate::rt::shutdown_signal(),
        )
        .await?;
        let _ = std::fs::remove_file(&socket);
        anyhow::Ok(())
    })?
}

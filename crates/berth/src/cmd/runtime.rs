//! `berth runtime`: the node's CRI v1 runtime on a Unix socket.

use std::path::PathBuf;

use berth_runtime::{CriService, RuntimeConfig};

/// Arguments of `berth runtime`.
#[derive(clap::Args)]
pub struct Args {
    /// CRI endpoint to listen on.
    #[arg(long, default_value = "unix:///run/berth/cri.sock")]
    listen: String,
    /// Runtime state root (content, snapshots, images, sandboxes, containers).
    #[arg(long, default_value = "/var/lib/berth/runtime")]
    root: PathBuf,
    /// Registries (HOST:PORT) spoken to over plain HTTP (loopback ones always are).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// OCI runtime binary.
    #[arg(long, default_value = "runc")]
    oci_runtime: PathBuf,
    /// Pod CIDR; the bridge gets its first address, pods the following ones.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: String,
    /// Bridge the pods' veths are attached to (created if missing).
    #[arg(long, default_value = "berth0")]
    bridge: String,
}

/// Runs `berth runtime` until SIGTERM/SIGINT; containers keep running (their shims own them).
pub fn run(args: Args) -> anyhow::Result<()> {
    let cidr = berth_runtime::network::Cidr::parse_pod_cidr(&args.pod_cidr).ok_or_else(|| {
        anyhow::anyhow!(
            "--pod-cidr {:?}: expected an IPv4 CIDR with a prefix of 8..30",
            args.pod_cidr
        )
    })?;
    let config = RuntimeConfig {
        root: args.root,
        shim_exe: std::env::current_exe()?,
        oci_runtime: args.oci_runtime,
        insecure_registries: args.insecure_registries,
        network: Some(berth_runtime::network::NetworkConfig {
            bridge: args.bridge,
            cidr,
        }),
    };
    let socket = berth_cri::socket_path(&args.listen)?;
    crate::rt::block_on(async move {
        let mut service = CriService::open(&config)?;
        service.start_streaming().await?;
        service.restore_host_ports();
        let listener = berth_cri::bind(&socket)?;
        tracing::info!(socket = %socket.display(), root = %config.root.display(), "CRI runtime listening");
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

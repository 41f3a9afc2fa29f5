//! `berth up`: everything on one machine with the churn-model example running. Starts the server
//! in-process (API, registry, controllers, runtime, agent), builds the example's image and pushes
//! it into the embedded registry, applies the example's ModelService, waits until its Pods are
//! Ready, prints how to call it, and runs until Ctrl-C / SIGTERM. Running it again on the same data
//! dir resumes: the apply is idempotent, the build is cached and the push skips existing blobs.
//!
//! With `--nodes N` it launches a cluster instead: a server plus N nodes, each in its own network
//! namespace ([`nodes`]). Either way the terminal shows progress and results only: the daemons'
//! logs go to DIR/logs/ unless `--verbose`.

mod example;
mod image;
mod nodes;
mod wait;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::server;

/// Arguments of `berth up`: every `berth server` flag, plus the example's.
#[derive(clap::Args)]
// server::Args already takes the default group id `Args`.
#[group(id = "UpArgs")]
pub struct Args {
    #[command(flatten)]
    pub server: server::Args,
    /// Serve the example on this port instead of the manifest's service.port (8000).
    #[arg(long)]
    pub service_port: Option<u16>,
    /// The berth source checkout holding examples/churn-model and manifests/examples
    /// (default: the current directory if it has them, else the checkout berth was built from).
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// How long to wait for the example's Pods to become Ready.
    #[arg(long, default_value = "5m", value_parser = berth_api::duration::parse)]
    pub ready_timeout: Duration,
    /// Launch a cluster of this many nodes, each in its own network namespace (0: this machine
    /// is the one node, in-process). Of the server flags, --data-dir, --api-port,
    /// --registry-port, --cluster-cidr and --node-grace-period apply to the cluster.
    #[arg(long, default_value_t = 0)]
    pub nodes: u32,
    /// The nodes' network with --nodes: .1 is the server (host side of the bridge), .11… the nodes.
    #[arg(long, default_value = "10.99.0.0/24", value_parser = nodes::parse_subnet)]
    pub node_subnet: berth_net::Ipv4Cidr,
    /// Show the daemons' logs here instead of writing them to DIR/logs/.
    #[arg(long)]
    pub verbose: bool,
}

/// Where `berth up`'s own log lines go: None (stderr) with --verbose, else DIR/logs/server.log
/// (DIR/logs/up.log with --nodes, whose daemons write server.log and <node>.log themselves).
pub fn log_file(args: &Args) -> Option<PathBuf> {
    if args.verbose {
        return None;
    }
    let dir = args
        .server
        .data_dir
        .clone()
        .unwrap_or_else(server::default_data_dir)
        .join("logs");
    Some(dir.join(if args.nodes > 0 {
        "up.log"
    } else {
        "server.log"
    }))
}

/// Runs `berth up`.
pub fn run(args: Args) -> anyhow::Result<()> {
    require_root()?;
    let source = example::Source::locate(args.source_dir.as_deref())?;
    if args.nodes > 0 {
        return crate::rt::block_on(nodes::up(args, source))?;
    }
    crate::rt::block_on(up(args, source))?
}

async fn up(args: Args, source: example::Source) -> anyhow::Result<()> {
    let service_port = args.service_port;
    let ready_timeout = args.ready_timeout;
    let running = server::start(args.server)
        .await
        .context("starting the server")?;
    // From here on, every way out stops what was started.
    let outcome = tokio::select! {
        r = deploy(&running, &source, service_port, ready_timeout) => Some(r),
        _ = crate::rt::shutdown_signal() => None,
    };
    match outcome {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            running.stop().await;
            return Err(e);
        }
        // Ctrl-C before the example was up.
        None => {
            running.stop().await;
            return Ok(());
        }
    }
    crate::rt::shutdown_signal().await;
    eprintln!(
        "berth up: stopping (the example keeps its state in {})",
        running.data_dir.display()
    );
    running.stop().await;
    Ok(())
}

/// Builds and pushes the image, applies the example and waits for it; prints how to call it.
async fn deploy(
    running: &server::Running,
    source: &example::Source,
    service_port: Option<u16>,
    ready_timeout: Duration,
) -> anyhow::Result<()> {
    let registry = running
        .registry
        .context("berth up needs the embedded registry (drop --disable-registry)")?;
    let image_ref = format!("localhost:{}/{}", registry.port(), example::IMAGE_PATH);
    image::build_static(source).context("step 1/4, building churn-model statically")?;
    image::build_and_push(source, &running.data_dir, &image_ref)
        .await
        .context("step 2/4, building and pushing the churn-model image")?;
    let client = admin_client(running).await?;
    let manifest = example::manifest(source, &image_ref, service_port)
        .context("step 3/4, reading the example manifest")?;
    let port = example::service_port(&manifest);
    example::apply(&client, &manifest)
        .await
        .context("step 3/4, applying manifests/examples/churn-model.yaml")?;
    wait::until_ready(&client, example::NAME, example::NAMESPACE, ready_timeout)
        .await
        .context("step 4/4, waiting for churn-model to become ready")?;
    println!("churn-model is ready. Try it:");
    println!("  {}", example::curl_line(port));
    println!(
        "berth up keeps running until Ctrl-C (kubectl/berth use {}).",
        running.kubeconfig.display()
    );
    Ok(())
}

/// A client with the server's admin kubeconfig.
async fn admin_client(running: &server::Running) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig)
        .context("reading the server's kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading the server's kubeconfig")?;
    kube::Client::try_from(config).context("building a client for the server")
}

/// The runtime creates namespaces, mounts and network devices: only root can.
fn require_root() -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the effective user.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .context("reading /proc/self")?;
    anyhow::ensure!(
        uid == 0,
        "berth up runs containers and needs root (network namespaces, mounts, cgroups): run it with sudo"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser as _};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        up: Args,
    }

    #[test]
    fn every_server_flag_works_with_up() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "up",
            "--data-dir",
            "/d",
            "--api-port",
            "7443",
            "--registry-port",
            "5123",
            "--bridge",
            "bx",
            "--kubelet-port",
            "0",
            "--service-port",
            "18000",
            "--ready-timeout",
            "90s",
        ])
        .unwrap();
        assert_eq!(cli.up.server.api_port, 7443);
        assert_eq!(cli.up.server.registry.registry_port, 5123);
        assert_eq!(cli.up.service_port, Some(18000));
        assert_eq!(cli.up.ready_timeout, Duration::from_secs(90));
    }
}

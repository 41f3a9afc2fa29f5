//! `berth registry`: the OCI distribution registry on its own, and `berth registry gc`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use berth_registry::{AuthMode, Config, Registry};

/// Arguments of `berth registry`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Delete blobs that no manifest references (run while the registry is stopped).
    Gc(GcArgs),
}

/// Where the data lives (shared by serving and GC).
#[derive(clap::Args)]
struct DataDir {
    /// Data directory; the registry keeps everything under DIR/registry.
    /// Default: /var/lib/berth as root, else $XDG_DATA_HOME/berth.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// Port to listen on.
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Who must authenticate: none, push (anonymous pull, authenticated push) or all.
    #[arg(long, default_value = "push", value_parser = parse_auth)]
    registry_auth: AuthMode,
    /// PEM certificate chain to serve HTTPS with (requires --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    data: DataDir,
}

fn parse_auth(s: &str) -> Result<AuthMode, String> {
    s.parse()
        .map_err(|e: berth_registry::auth::UnknownAuthMode| e.to_string())
}

impl DataDir {
    fn resolve(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

/// `/var/lib/berth` as root, else `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`).
fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the effective user, which avoids an unsafe geteuid call.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return PathBuf::from("/var/lib/berth");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("berth");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/berth")
}

/// Runs `berth registry`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Some(Action::Gc(gc)) => run_gc(gc),
        None => crate::rt::block_on(serve(args.serve))?,
    }
}

fn run_gc(args: GcArgs) -> anyhow::Result<()> {
    let dir = args.data.resolve();
    let report = berth_registry::gc(&dir)
        .with_context(|| format!("garbage collection in {}", dir.display()))?;
    println!(
        "removed {} blobs ({} bytes), kept {}, removed {} repository links",
        report.blobs_removed, report.bytes_freed, report.blobs_kept, report.links_removed
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let dir = args.data.resolve();
    let tls = args.tls_cert.is_some();
    let registry = Registry::open(
        &dir,
        Config {
            auth: args.registry_auth,
            tls,
        },
    )
    .with_context(|| format!("opening registry in {}", dir.display()))?;
    let addr = std::net::SocketAddr::new(args.address, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let shutdown = async {
        crate::rt::shutdown_signal().await;
        tracing::info!("shutting down registry");
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        registry
            .serve_tls_until(listener, cert, key, shutdown)
            .await?;
    } else {
        registry.serve_until(listener, shutdown).await?;
    }
    Ok(())
}

/// The registry flags of `berth server` (flatten into its `Args`), and the call that starts it.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerRegistryArgs {
    /// Port of the embedded OCI registry.
    #[arg(long, default_value_t = 5000)]
    pub registry_port: u16,
    /// Do not run the embedded OCI registry.
    #[arg(long)]
    pub disable_registry: bool,
    /// Who must authenticate to the registry: none, push (anonymous pull) or all.
    #[arg(long, default_value = "push", value_parser = parse_auth)]
    pub registry_auth: AuthMode,
}

impl ServerRegistryArgs {
    /// Starts the registry for `berth server` (unless disabled) on `address:registry_port` with
    /// storage in `data_dir/registry`, serving in the background until `shutdown` completes.
    /// Returns the bound address, or `None` when disabled.
    pub async fn start(
        &self,
        data_dir: &std::path::Path,
        address: IpAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Option<std::net::SocketAddr>> {
        if self.disable_registry {
            return Ok(None);
        }
        let config = Config {
            auth: self.registry_auth,
            tls: false,
        };
        let addr = std::net::SocketAddr::new(address, self.registry_port);
        let (bound, task) = berth_registry::start(data_dir, addr, config, shutdown)
            .await
            .with_context(|| format!("starting the registry on {addr}"))?;
        tokio::spawn(async move {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "registry stopped"),
                Err(e) => tracing::error!(error = %e, "registry task failed"),
            }
        });
        tracing::info!(addr = %bound, "registry started");
        Ok(Some(bound))
    }
}

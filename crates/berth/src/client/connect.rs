//! Connecting to the API server from a kubeconfig: `--kubeconfig`, else `$KUBECONFIG`, else the
//! one `berth server` writes (`<data-dir>/server/kubeconfig.yaml`).

use std::path::PathBuf;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Connection flags shared by the client commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else <data-dir>/server/kubeconfig.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// A client plus the namespace commands act in.
pub struct Conn {
    /// The kube-rs client.
    pub client: kube::Client,
    /// `-n`, else the context's namespace.
    pub namespace: String,
    /// Whether `-n` was given (apply refuses objects of another namespace then).
    pub namespace_explicit: bool,
}

impl ConnArgs {
    /// Reads the kubeconfig and builds a client.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let kubeconfig = self.read_kubeconfig()?;
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .context("loading the kubeconfig")?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).context("building the API client")?;
        Ok(Conn {
            client,
            namespace,
            namespace_explicit: self.namespace.is_some(),
        })
    }

    fn read_kubeconfig(&self) -> anyhow::Result<Kubeconfig> {
        if let Some(path) = &self.kubeconfig {
            return Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()));
        }
        if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
            && let Some(kc) = Kubeconfig::from_env().context("reading $KUBECONFIG")?
        {
            return Ok(kc);
        }
        let path = default_kubeconfig();
        Kubeconfig::read_from(&path).with_context(|| {
            format!(
                "reading kubeconfig {} (is `berth server` running? or pass --kubeconfig)",
                path.display()
            )
        })
    }
}

/// The kubeconfig `berth server` writes under the default data dir.
pub fn default_kubeconfig() -> PathBuf {
    crate::cmd::server::default_data_dir().join("server/kubeconfig.yaml")
}

//! A `berth server` under test: [`TestServer`] runs the real binary on a free loopback port with a
//! temp data dir, waits until it is ready, hands out kube clients and `kubectl` commands bound to its
//! kubeconfig, can be restarted or killed with SIGKILL, and is killed (and its data removed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `berth server --disable-agent --disable-registry` for tests.
pub struct TestServer {
    dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
    controllers: bool,
    child: Option<Child>,
    /// Set for a whole node (agent, runtime, registry): what to clean up on drop.
    node: Option<crate::node::NodeSetup>,
}

impl TestServer {
    /// Starts a server with a fresh data dir.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra command-line arguments. Its controllers are off, so tests see
    /// exactly the objects they write (controller tests run the controllers themselves).
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        Self::launch(extra, false).await
    }

    /// Starts a server as a user would: with its controllers and scheduler running.
    pub async fn start_with_controllers(extra: &[&str]) -> Result<Self> {
        Self::launch(extra, true).await
    }

    async fn launch(extra: &[&str], controllers: bool) -> Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for berth server")?;
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut s = TestServer {
            dir,
            port: crate::free_port(),
            extra,
            controllers,
            child: None,
            node: None,
        };
        s.spawn(&[]).await?;
        Ok(s)
    }

    /// Starts a whole node as `berth server` runs by default (controllers, registry, embedded
    /// runtime, agent, service proxy), on a bridge, pod CIDR and ports of its own so tests run in
    /// parallel. Needs root. On drop, whatever the test left running is torn down.
    pub async fn start_node(extra: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-node-")
            .tempdir_in("/var/tmp")?;
        let node = crate::node::NodeSetup::new();
        let mut all = node.args();
        all.extend(extra.iter().map(|s| s.to_string()));
        let mut s = TestServer {
            dir,
            port: crate::free_port(),
            extra: all,
            controllers: true,
            child: None,
            node: Some(node),
        };
        s.spawn(&[]).await?;
        Ok(s)
    }

    /// The registry port of a node server ([`start_node`](Self::start_node)).
    pub fn registry_port(&self) -> Option<u16> {
        self.node.as_ref().map(|n| n.registry_port)
    }

    /// The node setup of a node server ([`start_node`](Self::start_node)).
    pub fn node(&self) -> Option<&crate::node::NodeSetup> {
        self.node.as_ref()
    }

    /// A `berth` CLI command bound to this server (KUBECONFIG).
    pub fn berth(&self) -> Command {
        let mut c = Command::new(crate::berth_bin());
        c.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.data_dir());
        c
    }

    async fn spawn(&mut self, once: &[&str]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(crate::berth_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args([
                "--api-port",
                &self.port.to_string(),
                "--bind-address",
                "127.0.0.1",
            ])
            .args(if self.node.is_some() {
                &[][..]
            } else {
                &["--disable-agent", "--disable-registry"][..]
            })
            .args(if self.controllers {
                &[][..]
            } else {
                &["--disable-controllers"][..]
            })
            .args(&self.extra)
            .args(once)
            .env("BERTH_LOG", "info,berth_apiserver=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning berth server")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("berth server exited with {status}; log:\n{}", self.log());
            }
            if self.kubeconfig().exists() && self.ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "berth server not ready after {within:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `/readyz` answers `ok`.
    async fn ready(&self) -> bool {
        let Ok(client) = self.client().await else {
            return false;
        };
        // kube's request builder gives `GET /readyz?…` (the query is ignored there).
        let Ok(req) = kube::core::Request::new("/readyz").list(&Default::default()) else {
            return false;
        };
        client
            .request_text(req)
            .await
            .is_ok_and(|body| body.trim() == "ok")
    }

    /// The data dir (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The kubeconfig the server writes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("server/kubeconfig.yaml")
    }

    /// The server's log file (stdout and stderr of every run).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir().join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server process's resident memory (VmRSS) in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("server/token"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A kube-rs config read from the kubeconfig.
    pub async fn kube_config(&self) -> Result<kube::Config> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        Ok(
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?,
        )
    }

    /// A kube-rs client authenticated as admin.
    pub async fn client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.kube_config().await?)?)
    }

    /// A kube-rs client that trusts the server but sends no credentials.
    pub async fn anonymous_client(&self) -> Result<kube::Client> {
        let mut cfg = self.kube_config().await?;
        cfg.auth_info = Default::default();
        Ok(kube::Client::try_from(cfg)?)
    }

    /// A `kubectl` command bound to this server (KUBECONFIG and a private KUBECACHEDIR).
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.data_dir().join("kube-cache"))
            .env("HOME", self.data_dir())
            .arg("--request-timeout=30s");
        c
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Kills the server with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data dir (after [`stop`](Self::stop) or
    /// [`kill9`](Self::kill9)); `once` are extra arguments for this run only.
    pub async fn start_again(&mut self, once: &[&str]) -> Result<()> {
        if self.child.is_some() {
            bail!("server is still running");
        }
        self.spawn(once).await
    }

    /// Stops gracefully and starts again.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_again(&[]).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(node) = &self.node {
            node.teardown(self.dir.path());
        }
    }
}

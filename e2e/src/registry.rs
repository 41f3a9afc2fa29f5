//! A `berth registry` under test: its own process, free port and data dir, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{berth_bin, free_port, peer};

/// A `berth registry` process with its own data dir, killed on drop (or stopped cleanly with
/// [`BerthRegistry::stop`]).
pub struct BerthRegistry {
    child: Child,
    port: u16,
    data: tempfile::TempDir,
}

impl BerthRegistry {
    /// Starts it with `--registry-auth AUTH` (`none`, `push` or `all`).
    pub fn start(auth: &str) -> Self {
        Self::start_with(auth, &[])
    }

    /// Starts it with extra flags; with `--tls-cert`, readiness is a TCP connect (the plain-HTTP
    /// probe cannot talk to a TLS port).
    pub fn start_with(auth: &str, extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("registry data dir");
        let tls = extra.contains(&"--tls-cert");
        let port = free_port();
        let log = std::fs::File::create(data.path().join("registry.log")).expect("registry log");
        let child = Command::new(berth_bin())
            .args([
                "registry",
                "--port",
                &port.to_string(),
                "--registry-auth",
                auth,
                "--data-dir",
            ])
            .arg(data.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth registry");
        let mut reg = BerthRegistry { child, port, data };
        reg.wait_ready(tls);
        reg
    }

    fn wait_ready(&mut self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                self.child.try_wait().expect("registry status").is_none(),
                "berth registry exited:\n{}",
                self.log()
            );
            let up = if tls {
                std::net::TcpStream::connect(self.host()).is_ok()
            } else {
                peer::http_status(&self.host(), "/v2/").is_ok()
            };
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "berth registry did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, the host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The `user:password` it generated for authenticated requests.
    pub fn creds(&self) -> String {
        std::fs::read_to_string(self.data.path().join("registry/credentials"))
            .expect("registry credentials")
            .trim()
            .to_string()
    }

    /// Its log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("registry.log")).unwrap_or_default()
    }

    /// SIGTERM, wait for a clean exit, and hand back the data dir.
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let status = self.child.wait().expect("wait for berth registry");
        assert!(
            status.success(),
            "berth registry did not exit cleanly ({status}):\n{}",
            self.log()
        );
        let data = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data, data)
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

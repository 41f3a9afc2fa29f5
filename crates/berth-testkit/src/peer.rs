//! Peers that berth is tested and benchmarked against: Debian's `docker-registry` (the CNCF
//! distribution registry, binary `/usr/bin/docker-registry`) and `skopeo`.
//!
//! [`DockerRegistry::start`] runs a private registry on a free loopback port with its storage in a
//! temp dir; dropping it kills the process and removes the storage. [`skopeo`] and
//! [`skopeo_copy`] run the real `skopeo` with TLS verification off (all registries here are
//! plain-HTTP on loopback); [`push_layout`] pushes an OCI layout such as the busybox test image.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Path of Debian's distribution registry binary.
pub const DOCKER_REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running `docker-registry` on `127.0.0.1:<port>`, killed (and its storage removed) on drop.
pub struct DockerRegistry {
    child: Child,
    port: u16,
    // Removes the config and storage on drop.
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts `docker-registry` with a generated config (filesystem storage in a temp dir,
    /// deletes enabled, no auth) and waits until `GET /v2/` answers.
    pub fn start() -> Result<Self> {
        DockerRegistry::start_with(Path::new(DOCKER_REGISTRY_BIN))
    }

    /// [`DockerRegistry::start`] with the registry binary at `bin`.
    pub fn start_with(bin: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for docker-registry")?;
        let port = crate::try_free_port()?;
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)?;
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&storage, port))?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} (Debian package docker-registry)", bin.display()))?;
        let mut reg = DockerRegistry { child, port, dir };
        reg.wait_ready(Duration::from_secs(20))?;
        Ok(reg)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the host part of image references (`docker://HOST/repo:tag`).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where its storage lives (inside the temp dir removed on drop).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Pushes the OCI layout at `layout` (tag `latest`) as `test/<name>:latest`; returns the
    /// image reference.
    pub fn push(&self, layout: &Path, name: &str) -> Result<String> {
        let image = format!("{}/test/{name}:latest", self.host());
        push_layout(layout, &image, None)?;
        Ok(image)
    }

    /// The registry's log (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited early ({status}):\n{}", self.log());
            }
            if http_status(&self.host(), "/v2/").is_ok_and(|s| s == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("docker-registry did not become ready:\n{}", self.log())
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(storage: &Path, port: u16) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    )
}

/// Status code of a plain-HTTP `GET path` to `host` (std only, so it needs no HTTP client).
pub fn http_status(host: &str, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.get(9..12)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {line:?}"))
}

/// Runs `skopeo ARGS` and returns its output (whatever the exit status).
pub fn skopeo(args: &[&str]) -> Result<Output> {
    Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run skopeo (is it installed?)")
}

/// `skopeo copy SRC DST` with TLS verification off on both sides and optional `user:password`
/// credentials for the destination; fails with skopeo's stderr if it fails.
pub fn skopeo_copy(src: &str, dst: &str, dest_creds: Option<&str>) -> Result<()> {
    let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
    if let Some(creds) = dest_creds {
        args.push("--dest-creds");
        args.push(creds);
    }
    args.push(src);
    args.push(dst);
    let out = skopeo(&args)?;
    if !out.status.success() {
        bail!(
            "skopeo copy {src} {dst} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Pushes the OCI layout at `layout` (its tag `latest`) to `image` (`HOST/REPO:TAG`), with
/// optional `user:password` credentials.
pub fn push_layout(layout: &Path, image: &str, creds: Option<&str>) -> Result<()> {
    skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{image}"),
        creds,
    )
}

/// `skopeo inspect --raw docker://REF` (TLS off): the manifest bytes as the registry serves them.
pub fn skopeo_raw_manifest(reference: &str, creds: Option<&str>) -> Result<Vec<u8>> {
    let mut args = vec!["inspect", "--tls-verify=false", "--raw"];
    if let Some(creds) = creds {
        args.push("--creds");
        args.push(creds);
    }
    args.push(reference);
    let out = skopeo(&args)?;
    if !out.status.success() {
        bail!(
            "skopeo inspect {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

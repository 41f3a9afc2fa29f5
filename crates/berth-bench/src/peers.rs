//! The peers and tools the benchmarks share: Debian's `docker-registry` on fresh storage,
//! `skopeo copy`, and the busybox test image pushed to a registry.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::proc::{Reaped, free_port, wait_for};

/// A registry child (berth's or Debian's) on 127.0.0.1:`port`; stopped on drop.
pub(crate) struct RegistryChild {
    /// Held for its drop, which stops the registry.
    _child: Reaped,
    port: u16,
}

impl RegistryChild {
    /// Debian's `docker-registry` (`bin`) with a generated config and its storage under `dir`.
    pub(crate) fn docker_registry(bin: &Path, dir: &Path) -> Result<Self> {
        let port = free_port()?;
        std::fs::create_dir_all(dir.join("storage"))?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (Debian package docker-registry)",
                    bin.display()
                )
            })?;
        RegistryChild::ready(Reaped(child), port)
    }

    /// Waits until `GET /v2/` answers 200 (the registry serves), or fails if the child died.
    pub(crate) fn ready(mut child: Reaped, port: u16) -> Result<Self> {
        let host = format!("127.0.0.1:{port}");
        wait_for("registry", Duration::from_secs(20), || {
            child.check_alive("registry")?;
            Ok(get_status(&host, "/v2/").is_ok_and(|s| s == 200))
        })?;
        Ok(RegistryChild {
            _child: child,
            port,
        })
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// The status code of a plain-HTTP GET (enough of HTTP/1.1 for a readiness probe).
fn get_status(host: &str, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(std::str::from_utf8(&head[9..12])?.parse()?)
}

/// `skopeo copy` of `src` to `dst`, TLS verification off both ways (the registries are loopback
/// HTTP).
pub(crate) fn skopeo_copy(src: &str, dst: &str) -> Result<()> {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            src,
            dst,
        ])
        .stdin(Stdio::null())
        .output()
        .context("running skopeo (Debian package skopeo)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {src} {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Writes the busybox test image under `dir` and pushes it with skopeo to the registry on
/// loopback `port`; returns its reference.
pub(crate) fn push_busybox(dir: &Path, port: u16) -> Result<String> {
    let layout = berth_testkit::busybox::busybox_layout(dir).context("busybox-static is needed")?;
    let image = format!("127.0.0.1:{port}/bench/busybox:latest");
    skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{image}"),
    )?;
    Ok(image)
}

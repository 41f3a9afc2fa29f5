//! Debian's docker-registry on loopback, and the busybox test image pushed to it with skopeo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's docker-registry on a free loopback port; killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    /// Starts a registry keeping its config and storage under `dir`; returns once it listens.
    pub fn start(dir: &Path) -> Self {
        let [port] = super::free_ports();
        let config = dir.join("registry.yml");
        let storage = dir.join("registry");
        let yml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        std::fs::write(&config, yml).expect("registry config");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry installed");
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Pushes the OCI layout at `layout` (tag `latest`) as `test/<name>:latest`; returns the
    /// image reference.
    pub fn push(&self, layout: &Path, name: &str) -> String {
        let image = format!("127.0.0.1:{}/test/{name}:latest", self.port);
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{image}"))
            .output()
            .expect("skopeo installed");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the busybox test image as an OCI layout (tag `latest`) in `dir`; returns the layout.
pub fn busybox(dir: &Path) -> PathBuf {
    berth_testkit::busybox::busybox_layout(dir).expect("busybox layout (busybox-static installed)")
}

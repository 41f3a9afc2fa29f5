//! A whole node under test: the flags that give one `berth server` a bridge, pod CIDR and ports of
//! its own (so node tests run in parallel on one host), and a teardown that removes whatever a
//! failed test left behind: container processes and shims, mounts, veths, the bridge, cgroups.
//!
//! Containers outlive `berth server` by design (their shims own them), so killing the server is
//! not enough: tests that pass delete their workloads and assert the node is clean; the teardown
//! is the safety net for those that fail half-way.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Names and ports of one node under test.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// The pod bridge (at most 15 characters).
    pub bridge: String,
    /// The cluster CIDR (a /16; the node gets its first /24).
    pub cluster_cidr: String,
    /// The embedded registry's port.
    pub registry_port: u16,
}

impl Default for NodeSetup {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeSetup {
    /// Fresh, process-unique names and a free registry port.
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = (pid.wrapping_mul(31).wrapping_add(n)) % 0xfffff;
        NodeSetup {
            bridge: format!("bte{tag:05x}"),
            cluster_cidr: format!("10.{}.0.0/16", 100 + (pid.wrapping_add(n * 7)) % 120),
            registry_port: crate::free_port(),
        }
    }

    /// The `berth server` flags for this node.
    pub fn args(&self) -> Vec<String> {
        [
            "--registry-port",
            &self.registry_port.to_string(),
            "--bridge",
            &self.bridge,
            "--cluster-cidr",
            &self.cluster_cidr,
            "--kubelet-port",
            "0",
            "--node-name",
            "e2e-node",
            "--node-ip",
            "127.0.0.1",
            "--proxy-bind-address",
            "127.0.0.1",
            // Parallel test nodes share the host's routes and NAT table: leave them alone.
            "--disable-pod-routes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Removes everything the node at `data_dir` may have left: processes, mounts, network,
    /// cgroups (the launcher's teardown, [`berth_launch::down`], plus this node's bridge).
    pub fn teardown(&self, data_dir: &Path) {
        let _ = berth_launch::down(data_dir);
        berth_launch::cleanup::delete_bridge(&self.bridge);
    }
}

/// The runtime's cgroup parent for the node at `data_dir` (`<hash>` of `/berth/<hash>`: the
/// runtime names it after its canonical root, `data_dir/runtime`).
pub fn cgroup_parent(data_dir: &Path) -> Option<String> {
    berth_launch::cleanup::cgroup_parent(&data_dir.join("runtime"))
}

pub use berth_launch::cleanup::ContainerProcess;

/// The processes in the containers of the node at `data_dir`, found by their cgroup
/// (`/berth/<parent>/<container id>`): a container's root is not visible from the host's view.
pub fn container_processes(data_dir: &Path) -> Vec<ContainerProcess> {
    cgroup_parent(data_dir)
        .map(|parent| berth_launch::cleanup::container_processes(&parent))
        .unwrap_or_default()
}

/// Pushes the busybox test image (berth_testkit::busybox: sh, httpd with CGI, sleep ...) to the
/// registry on `registry_port` of the node whose data dir is `work`; returns its reference.
pub fn push_busybox(work: &Path, registry_port: u16) -> anyhow::Result<String> {
    let image = format!("127.0.0.1:{registry_port}/test/busybox:latest");
    // The node's registry lets anyone pull but wants its credentials for a push.
    let creds = std::fs::read_to_string(work.join("registry/credentials")).unwrap_or_default();
    let creds = Some(creds.trim()).filter(|c| !c.is_empty());
    berth_testkit::busybox::push_busybox(&work.join("busybox-image"), &image, creds)?;
    Ok(image)
}

/// Serialises the static build of churn-model between the tests of one process.
static CHURN_BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds churn-model statically (examples/churn-model/build-static.sh, once per test process),
/// builds its image with `berth build` tagged `127.0.0.1:<port>/churn-model:<tag>` in the data dir
/// `data_dir` and pushes it with `berth push`; returns the reference.
pub fn push_churn_model(data_dir: &Path, registry_port: u16, tag: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let example = crate::repo_root().join("examples/churn-model");
    {
        let _guard = CHURN_BUILD.lock().unwrap_or_else(|e| e.into_inner());
        static BUILT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !BUILT.load(Ordering::SeqCst) {
            let out = Command::new("sh")
                .arg(example.join("build-static.sh"))
                .output()
                .context("running build-static.sh")?;
            anyhow::ensure!(
                out.status.success(),
                "build-static.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            BUILT.store(true, Ordering::SeqCst);
        }
    }
    let image = format!("127.0.0.1:{registry_port}/churn-model:{tag}");
    let berth = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(crate::berth_bin())
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .output()
            .with_context(|| format!("berth {args:?}"))?;
        anyhow::ensure!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    berth(&["build", "-t", &image, &example.to_string_lossy()])?;
    berth(&["push", &image])?;
    Ok(image)
}

/// What of a node's runtime state is left: sandboxes on disk, veths on the bridge, mounts under
/// the data dir, container cgroups, processes in those cgroups.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Sandbox directories.
    pub sandboxes: Vec<String>,
    /// Container directories.
    pub containers: Vec<String>,
    /// Interfaces attached to the bridge.
    pub veths: Vec<String>,
    /// Mount points under the data dir.
    pub mounts: Vec<String>,
    /// Container cgroups (any hierarchy).
    pub cgroups: Vec<String>,
    /// Container processes (pid and command), found by cgroup.
    pub processes: Vec<String>,
}

impl NodeSetup {
    /// What of the node's pods is still on the machine.
    pub fn leftovers(&self, data_dir: &Path) -> Leftovers {
        let names = |p: std::path::PathBuf| -> Vec<String> {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        };
        let runtime = data_dir.join("runtime");
        let mounts = berth_launch::cleanup::mounts_under(data_dir);
        let cgroups = cgroup_parent(data_dir)
            .map(|parent| berth_launch::cleanup::cgroups_of(&parent))
            .unwrap_or_default()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let processes = container_processes(data_dir)
            .into_iter()
            .map(|p| format!("{} {}", p.pid, p.comm))
            .collect();
        Leftovers {
            sandboxes: names(runtime.join("sandboxes")),
            containers: names(runtime.join("containers")),
            veths: std::fs::read_dir(Path::new("/sys/class/net").join(&self.bridge).join("brif"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect(),
            mounts,
            cgroups,
            processes,
        }
    }
}

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

use sha2::Digest;

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

    /// Removes everything the node at `data_dir` may have left: processes, mounts, network, cgroups.
    pub fn teardown(&self, data_dir: &Path) {
        let dir = data_dir.to_string_lossy().to_string();
        for _ in 0..5 {
            if kill_processes_of(data_dir) == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        unmount_under(&dir);
        remove_bridge(&self.bridge);
        remove_cgroups(data_dir);
    }
}

/// The runtime's cgroup parent for the node at `data_dir` (`<hash>` of `/berth/<hash>`: the
/// runtime names it after its canonical root, `data_dir/runtime`).
pub fn cgroup_parent(data_dir: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(data_dir.join("runtime")).ok()?;
    let hash = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    Some(hash.iter().map(|b| format!("{b:02x}")).collect::<String>()[..12].to_string())
}

/// A process running in one of a node's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProcess {
    /// Host pid.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
    /// The container it runs in (the last element of its cgroup path).
    pub container_id: String,
}

/// The processes in the containers of the node at `data_dir`, found by their cgroup
/// (`/berth/<parent>/<container id>`): a container's root is not visible from the host's view.
pub fn container_processes(data_dir: &Path) -> Vec<ContainerProcess> {
    let Some(parent) = cgroup_parent(data_dir) else {
        return Vec::new();
    };
    let marker = format!("/berth/{parent}/");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cgroups = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let Some(id) = cgroups
            .lines()
            .find_map(|l| l.split_once(&marker).map(|(_, id)| id.to_string()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push(ContainerProcess {
            pid,
            comm,
            container_id: id,
        });
    }
    out
}

/// SIGKILLs the node's container processes and shims (their command line names the data dir);
/// returns how many it found.
fn kill_processes_of(data_dir: &Path) -> usize {
    let dir = data_dir.to_string_lossy().to_string();
    let me = std::process::id();
    let mut pids: Vec<u32> = container_processes(data_dir)
        .into_iter()
        .map(|p| p.pid)
        .collect();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&cmdline).contains(&dir) {
            pids.push(pid);
        }
    }
    for pid in &pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    pids.len()
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &str) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(dir))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", &p]).status();
    }
}

/// Deletes the veths attached to `bridge`, then the bridge.
fn remove_bridge(bridge: &str) {
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return;
    }
    let brif = Path::new("/sys/class/net").join(bridge).join("brif");
    for port in std::fs::read_dir(brif).into_iter().flatten().flatten() {
        let _ = Command::new("ip")
            .args(["link", "del", &port.file_name().to_string_lossy()])
            .status();
    }
    let _ = Command::new("ip").args(["link", "del", bridge]).status();
}

/// Removes the runtime's container cgroups (`/berth/<hash of the root>/<id>`) in every hierarchy.
fn remove_cgroups(data_dir: &Path) {
    let Some(parent) = cgroup_parent(data_dir) else {
        return;
    };
    let mut hierarchies: Vec<std::path::PathBuf> = vec!["/sys/fs/cgroup".into()];
    hierarchies.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for h in hierarchies {
        let p = h.join("berth").join(&parent);
        if !p.is_dir() {
            continue;
        }
        for child in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            if child.path().is_dir() {
                let _ = std::fs::remove_dir(child.path());
            }
        }
        let _ = std::fs::remove_dir(&p);
    }
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
        let dir = data_dir.to_string_lossy().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&dir))
            .map(str::to_string)
            .collect();
        let mut cgroups = Vec::new();
        if let Some(parent) = cgroup_parent(data_dir) {
            for h in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                for c in names(h.path().join("berth").join(&parent)) {
                    cgroups.push(format!("{}/{c}", h.path().display()));
                }
            }
        }
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

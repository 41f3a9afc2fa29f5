//! Pod sandboxes: `sandboxes/<id>/` holds the pinned netns (none for a pod on the node's network),
//! hostname, hosts, resolv.conf and `sandbox.json`; all state is on disk so a restarted runtime
//! knows its sandboxes.

pub mod netns;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_cri::v1::PodSandboxConfig;
use prost::Message;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::network::Network;

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No such sandbox.
    #[error("pod sandbox {0} not found")]
    NotFound(String),
    /// A file or namespace operation failed.
    #[error("pod sandbox {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Persisted sandbox state (the CRI config is kept as protobuf bytes, base64 in JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SandboxRecord {
    id: String,
    created_at_ns: i64,
    ready: bool,
    ip: Option<IpAddr>,
    config_pb: Vec<u8>,
}

/// What containers need to know about their sandbox.
#[derive(Debug, Clone)]
pub struct SandboxInfo {
    /// Sandbox id.
    pub id: String,
    /// The pinned network namespace (absent when the pod is on the node's network).
    pub netns_path: PathBuf,
    /// Pod hostname.
    pub hostname: String,
    /// /etc/hostname source.
    pub hostname_path: PathBuf,
    /// /etc/hosts source.
    pub hosts_path: PathBuf,
    /// /etc/resolv.conf source.
    pub resolv_conf_path: PathBuf,
    /// The pod's log directory.
    pub log_directory: Option<PathBuf>,
    /// The pod IP, when networking assigned one (never on the node's network: the node's IP is
    /// the pod's, as the agent knows it).
    pub ip: Option<IpAddr>,
    /// Ready (not stopped).
    pub ready: bool,
    /// Creation time (ns).
    pub created_at_ns: i64,
    /// The CRI config.
    pub config: PodSandboxConfig,
}

impl SandboxInfo {
    /// Whether the pod shares the node's network namespace (CRI network mode NODE).
    pub fn host_network(&self) -> bool {
        host_network(&self.config)
    }
}

/// Whether `config` asks for the node's network namespace (CRI network mode NODE).
pub fn host_network(config: &PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == berth_cri::v1::NamespaceMode::Node as i32)
}

/// The sandboxes of one runtime.
pub struct SandboxStore {
    dir: PathBuf,
    /// Swapped when the node's pod CIDR arrives (CRI UpdateRuntimeConfig); sandboxes made before
    /// keep their addresses.
    network: std::sync::RwLock<Option<Arc<Network>>>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SandboxStore {
    /// Opens `root/sandboxes`; with a `network`, every sandbox gets an eth0 on its bridge.
    pub fn open(root: &Path, network: Option<Network>) -> Result<Self, SandboxError> {
        let dir = root.join("sandboxes");
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(Self {
            dir,
            network: std::sync::RwLock::new(network.map(Arc::new)),
        })
    }

    /// The pod network sandboxes are attached to from now on, if any.
    pub fn network(&self) -> Option<Arc<Network>> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is intact.
        self.network
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Attaches future sandboxes to `network` (existing ones keep their addresses).
    pub fn set_network(&self, network: Network) {
        *self.network.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(network));
    }

    fn detach(&self, id: &str, ip: Option<IpAddr>) -> Result<(), SandboxError> {
        let Some(net) = self.network() else {
            // No pod network (yet): still remove a veth a previous configuration left.
            let veth = crate::network::host_veth(id);
            let _ = berth_net::netlink::delete_link(&veth);
            return Ok(());
        };
        let v4 = match ip {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        net.detach(id, v4).map_err(io_at(&self.dir))
    }

    fn path(&self, id: &str) -> Result<PathBuf, SandboxError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(SandboxError::NotFound(id.to_string()));
        }
        Ok(self.dir.join(id))
    }

    fn save(&self, dir: &Path, r: &SandboxRecord) -> Result<(), SandboxError> {
        let json = serde_json::to_vec(r).map_err(|e| io_at(dir)(io::Error::other(e)))?;
        let p = dir.join("sandbox.json");
        berth_fs::write_atomic(&p, &json).map_err(io_at(&p))
    }

    /// Creates a sandbox: netns, hostname, hosts and resolv.conf.
    pub fn run(&self, id: &str, config: PodSandboxConfig) -> Result<SandboxInfo, SandboxError> {
        let dir = self.path(id)?;
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let result = self.run_in(&dir, id, config);
        if result.is_err() {
            let _ = self.detach(id, None);
            let _ = netns::remove(&dir.join("netns"));
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn run_in(
        &self,
        dir: &Path,
        id: &str,
        config: PodSandboxConfig,
    ) -> Result<SandboxInfo, SandboxError> {
        let pin = dir.join("netns");
        let host_net = host_network(&config);
        // A pod on the node's network has no namespace of its own, and no address of its own.
        if !host_net {
            netns::create(&pin).map_err(io_at(&pin))?;
        }
        let hostname = if config.hostname.is_empty() {
            config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| id.chars().take(12).collect())
        } else {
            config.hostname.clone()
        };
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(io_at(&p))
        };
        write("hostname", format!("{hostname}\n"))?;
        write(
            "hosts",
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
        )?;
        write("resolv.conf", resolv_conf(&config))?;
        let ip = match self.network().filter(|_| !host_net) {
            Some(net) => Some(IpAddr::V4(net.attach(id, &pin).map_err(io_at(&pin))?)),
            None => None,
        };
        let record = SandboxRecord {
            id: id.to_string(),
            created_at_ns: now_ns(),
            ready: true,
            ip,
            config_pb: config.encode_to_vec(),
        };
        self.save(dir, &record)?;
        self.info(id)
    }

    /// Loads a sandbox.
    pub fn info(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let dir = self.path(id)?;
        let p = dir.join("sandbox.json");
        let bytes = std::fs::read(&p).map_err(|_| SandboxError::NotFound(id.to_string()))?;
        let r: SandboxRecord =
            serde_json::from_slice(&bytes).map_err(|e| io_at(&p)(io::Error::other(e)))?;
        let config = PodSandboxConfig::decode(r.config_pb.as_slice())
            .map_err(|e| io_at(&p)(io::Error::other(e)))?;
        let hostname = std::fs::read_to_string(dir.join("hostname"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(SandboxInfo {
            id: r.id,
            netns_path: dir.join("netns"),
            hostname,
            hostname_path: dir.join("hostname"),
            hosts_path: dir.join("hosts"),
            resolv_conf_path: dir.join("resolv.conf"),
            log_directory: Some(config.log_directory.clone())
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            ip: r.ip,
            ready: r.ready,
            created_at_ns: r.created_at_ns,
            config,
        })
    }

    /// All sandboxes on disk.
    pub fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        let rd = std::fs::read_dir(&self.dir).map_err(io_at(&self.dir))?;
        Ok(rd
            .flatten()
            .filter_map(|e| self.info(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    /// Marks the sandbox not ready and releases its network namespace. Idempotent.
    pub fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let dir = self.path(id)?;
        let p = dir.join("sandbox.json");
        let Ok(bytes) = std::fs::read(&p) else {
            return Ok(());
        };
        let mut r: SandboxRecord =
            serde_json::from_slice(&bytes).map_err(|e| io_at(&p)(io::Error::other(e)))?;
        self.detach(id, r.ip)?;
        let pin = dir.join("netns");
        netns::remove(&pin).map_err(io_at(&pin))?;
        r.ready = false;
        r.ip = None;
        self.save(&dir, &r)
    }

    /// Deletes the sandbox and its files. Idempotent.
    pub fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let dir = self.path(id)?;
        if !dir.exists() {
            return Ok(());
        }
        if let Ok(info) = self.info(id) {
            self.detach(id, info.ip)?;
        }
        let pin = dir.join("netns");
        netns::remove(&pin).map_err(io_at(&pin))?;
        std::fs::remove_dir_all(&dir).map_err(io_at(&dir))
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// resolv.conf from the CRI DNS config, or the host's when none is given.
fn resolv_conf(config: &PodSandboxConfig) -> String {
    match &config.dns_config {
        Some(dns) if !dns.servers.is_empty() || !dns.searches.is_empty() => {
            let mut out = String::new();
            for s in &dns.servers {
                out.push_str(&format!("nameserver {s}\n"));
            }
            if !dns.searches.is_empty() {
                out.push_str(&format!("search {}\n", dns.searches.join(" ")));
            }
            if !dns.options.is_empty() {
                out.push_str(&format!("options {}\n", dns.options.join(" ")));
            }
            out
        }
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

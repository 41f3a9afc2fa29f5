//! The CRI gRPC services: thin translations between CRI messages and the image, sandbox and
//! container stores, which hold all state (on disk).
//!
//! One concept per module, one CRI verb per function (so a verb reads on its own):
//! - this module: [`CriService`] and its shared state, how it is opened ([`RuntimeConfig`],
//!   [`StartError`]) and the small helpers every verb uses;
//! - `runtime`: the `RuntimeService` trait, handing each verb to the module below that owns it;
//! - `sandbox`: pod sandbox verbs and the sandboxes' host ports;
//! - `container`: container lifecycle verbs; `exec`: ExecSync and Exec; `stats`: usage;
//! - `image`: the `ImageService`;
//! - `network`: the pod CIDR received over CRI (UpdateRuntimeConfig) and remembered on disk;
//! - `meta`: the CRI metadata kept next to each container;
//! - `convert`: CRI <-> internal conversions (pure); `error`: store errors -> gRPC statuses.

mod container;
mod convert;
mod error;
mod exec;
mod image;
mod meta;
mod network;
mod runtime;
mod sandbox;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tonic::Status;

use crate::container::{ContainerError, ContainerStore};
use crate::image::{ImageError, ImageStore};
use crate::network::hostport::HostPorts;
use crate::sandbox::{SandboxError, SandboxStore};

/// Both CRI services over shared stores.
#[derive(Clone)]
pub struct CriService {
    /// Images and snapshots.
    pub images: Arc<ImageStore>,
    /// Pod sandboxes.
    pub sandboxes: Arc<SandboxStore>,
    /// Containers.
    pub containers: Arc<ContainerStore>,
    /// The exec streaming server, once started.
    pub streams: Option<crate::stream::StreamServer>,
    /// Host-port proxies per sandbox id.
    ports: Arc<HostPorts>,
    /// Where pod networks keep their state (IPAM per CIDR, the last CIDR set over CRI).
    net_dir: PathBuf,
    /// The bridge a pod CIDR received over CRI (UpdateRuntimeConfig) is served on.
    pod_bridge: String,
}

/// Where the runtime keeps its state and how it runs containers.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The runtime root (content, snapshots, images, sandboxes, containers).
    pub root: PathBuf,
    /// The executable started as `<shim_exe> shim ...` (normally the `berth` binary itself).
    pub shim_exe: PathBuf,
    /// The OCI runtime binary.
    pub oci_runtime: PathBuf,
    /// Registries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Pod networking (bridge + CIDR); `None` leaves each sandbox with only loopback.
    pub network: Option<crate::network::NetworkConfig>,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Images could not be opened.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Sandboxes could not be opened.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Containers could not be opened.
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl CriService {
    /// Opens every store under `config.root` (recovering whatever is on disk).
    pub fn open(config: &RuntimeConfig) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.root).map_err(|source| ContainerError::Io {
            path: config.root.clone(),
            source,
        })?;
        let net_dir = config.root.join("network");
        let (network, pod_bridge) = network::open(config, &net_dir)?;
        Ok(Self {
            images: ImageStore::open(&config.root, config.insecure_registries.clone())?,
            sandboxes: Arc::new(SandboxStore::open(&config.root, network)?),
            containers: Arc::new(ContainerStore::open(
                &config.root,
                config.shim_exe.clone(),
                config.oci_runtime.clone(),
            )?),
            ports: Arc::default(),
            streams: None,
            net_dir,
            pod_bridge,
        })
    }

    /// Sets the bridge used when a pod CIDR arrives over CRI and no network was configured.
    pub fn with_pod_bridge(mut self, bridge: impl Into<String>) -> Self {
        self.pod_bridge = bridge.into();
        self
    }

    /// Starts the exec streaming server on 127.0.0.1 (within a tokio runtime).
    pub async fn start_streaming(&mut self) -> std::io::Result<()> {
        self.streams = Some(crate::stream::StreamServer::start().await?);
        Ok(())
    }
}

/// A fresh sandbox or container id (64 hex digits).
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(error::internal)?
}

/// Whether `labels` carry every key/value of a CRI filter's label selector.
fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

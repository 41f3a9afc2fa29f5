//! The pod network as CRI sets it: UpdateRuntimeConfig hands the runtime the node's pod CIDR
//! (the kubelet's way of passing `Node.spec.podCIDR`). Future sandboxes get addresses from it,
//! and it is remembered under `root/network` so a restarted runtime keeps serving it before the
//! agent repeats it.

use std::path::Path;

use berth_cri::v1 as cri;
use tonic::Status;

use super::{CriService, RuntimeConfig, blocking};
use crate::network::{Cidr, Network, NetworkConfig};
use crate::sandbox::SandboxError;

/// The bridge a pod CIDR set over CRI is served on when none was configured.
const DEFAULT_BRIDGE: &str = "berth0";
/// File under `root/network` remembering the pod network last set over CRI (`BRIDGE CIDR`).
const POD_NETWORK_FILE: &str = "pod-network";

/// The network sandboxes start on (if any) and the bridge a CIDR set over CRI will use.
///
/// An explicit network wins; else the one last set over CRI, so a restarted runtime keeps
/// serving the node's pod CIDR before the agent repeats it.
pub(super) fn open(
    config: &RuntimeConfig,
    net_dir: &Path,
) -> Result<(Option<Network>, String), SandboxError> {
    let pod_bridge = config
        .network
        .as_ref()
        .map_or_else(|| DEFAULT_BRIDGE.to_string(), |n| n.bridge.clone());
    let wanted = config
        .network
        .clone()
        .or_else(|| saved_pod_network(net_dir));
    let network = match wanted {
        Some(n) => Some(
            Network::open(net_dir, n).map_err(|source| SandboxError::Io {
                path: net_dir.to_path_buf(),
                source,
            })?,
        ),
        None => None,
    };
    Ok((network, pod_bridge))
}

/// The pod network last set over CRI, if one was and it still parses.
fn saved_pod_network(net_dir: &Path) -> Option<NetworkConfig> {
    let text = std::fs::read_to_string(net_dir.join(POD_NETWORK_FILE)).ok()?;
    let (bridge, cidr) = text.trim().split_once(' ')?;
    Some(NetworkConfig {
        bridge: bridge.to_string(),
        cidr: Cidr::parse_pod_cidr(cidr)?,
    })
}

/// UpdateRuntimeConfig: takes the pod CIDR, if the request carries one.
pub(super) async fn update_runtime_config(
    svc: &CriService,
    req: cri::UpdateRuntimeConfigRequest,
) -> Result<cri::UpdateRuntimeConfigResponse, Status> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    if cidr.is_empty() {
        return Ok(cri::UpdateRuntimeConfigResponse {});
    }
    let parsed = Cidr::parse_pod_cidr(&cidr).ok_or_else(|| {
        Status::invalid_argument(format!(
            "runtime_config.network_config.pod_cidr {cidr:?}: expected an IPv4 CIDR with a prefix of 8..30"
        ))
    })?;
    let this = svc.clone();
    blocking(move || this.set_pod_cidr(parsed)).await?;
    Ok(cri::UpdateRuntimeConfigResponse {})
}

impl CriService {
    /// Serves `cidr` to future sandboxes (no-op when it already does) and remembers it.
    fn set_pod_cidr(&self, cidr: Cidr) -> Result<(), Status> {
        let current = self.sandboxes.network();
        if current.as_ref().is_some_and(|n| n.config().cidr == cidr) {
            return Ok(());
        }
        let bridge = current.map_or_else(|| self.pod_bridge.clone(), |n| n.config().bridge.clone());
        let config = NetworkConfig { bridge, cidr };
        let network = Network::open(&self.net_dir, config.clone()).map_err(|e| {
            Status::internal(format!(
                "pod network {}/{}: {e}",
                cidr.network(),
                cidr.prefix()
            ))
        })?;
        let saved = format!("{} {}/{}\n", config.bridge, cidr.network(), cidr.prefix());
        crate::shim::write_atomic(&self.net_dir.join(POD_NETWORK_FILE), saved.as_bytes())
            .map_err(|e| Status::internal(format!("saving the pod network: {e}")))?;
        tracing::info!(bridge = %config.bridge, cidr = %format!("{}/{}", cidr.network(), cidr.prefix()), "pod network set over CRI");
        self.sandboxes.set_network(network);
        Ok(())
    }
}

//! Pod sandbox verbs (RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox) and the sandboxes' host ports, which open with a sandbox and close with it.

use std::time::Duration;

use berth_cri::v1 as cri;
use tonic::Status;

use super::convert::sandbox_to_cri;
use super::error::{container_status, host_port_status, sandbox_status};
use super::{CriService, blocking, labels_match, new_id};
use crate::sandbox::SandboxInfo;

/// RunPodSandbox: a new sandbox with its host ports (removed again if a port cannot be opened).
pub(super) async fn run(
    svc: &CriService,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse, Status> {
    let config = req.config.unwrap_or_default();
    let id = new_id();
    let store = svc.sandboxes.clone();
    let sid = id.clone();
    let info = blocking(move || store.run(&sid, config).map_err(sandbox_status)).await?;
    if let Err(e) = svc.open_host_ports(&info) {
        let store = svc.sandboxes.clone();
        let sid = id.clone();
        let _ = blocking(move || store.remove(&sid).map_err(sandbox_status)).await;
        return Err(e);
    }
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}

/// StopPodSandbox: closes the host ports, kills the sandbox's containers, stops the sandbox.
pub(super) async fn stop(
    svc: &CriService,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    let id = req.pod_sandbox_id;
    svc.close_host_ports(&id);
    let this = svc.clone();
    blocking(move || {
        for c in this.sandbox_containers(&id) {
            this.containers
                .stop(&c, Duration::ZERO)
                .map_err(container_status)?;
        }
        this.sandboxes.stop(&id).map_err(sandbox_status)
    })
    .await?;
    Ok(cri::StopPodSandboxResponse {})
}

/// RemovePodSandbox: closes the host ports, removes the sandbox's containers and the sandbox.
pub(super) async fn remove(
    svc: &CriService,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    let id = req.pod_sandbox_id;
    svc.close_host_ports(&id);
    let this = svc.clone();
    blocking(move || {
        for c in this.sandbox_containers(&id) {
            this.containers.remove(&c).map_err(container_status)?;
        }
        this.sandboxes.remove(&id).map_err(sandbox_status)
    })
    .await?;
    Ok(cri::RemovePodSandboxResponse {})
}

/// PodSandboxStatus: state, metadata and the pod IP.
pub(super) async fn status(
    svc: &CriService,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse, Status> {
    let s = svc
        .sandboxes
        .info(&req.pod_sandbox_id)
        .map_err(sandbox_status)?;
    let (state, _) = sandbox_to_cri(&s);
    let status = cri::PodSandboxStatus {
        id: s.id.clone(),
        metadata: s.config.metadata.clone(),
        state: state as i32,
        created_at: s.created_at_ns,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: s.ip.map(|i| i.to_string()).unwrap_or_default(),
            additional_ips: vec![],
        }),
        labels: s.config.labels.clone(),
        annotations: s.config.annotations.clone(),
        runtime_handler: String::new(),
    };
    Ok(cri::PodSandboxStatusResponse {
        status: Some(status),
        ..Default::default()
    })
}

/// ListPodSandbox: the sandboxes matching the filter (id prefix, state, labels).
pub(super) async fn list(
    svc: &CriService,
    req: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse, Status> {
    let filter = req.filter.unwrap_or_default();
    let items = svc
        .sandboxes
        .list()
        .map_err(sandbox_status)?
        .iter()
        .map(sandbox_to_cri)
        .filter(|(state, item)| {
            item.id.starts_with(&filter.id)
                && filter
                    .state
                    .as_ref()
                    .is_none_or(|f| f.state == *state as i32)
                && labels_match(&item.labels, &filter.label_selector)
        })
        .map(|(_, item)| item)
        .collect();
    Ok(cri::ListPodSandboxResponse { items })
}

impl CriService {
    /// Re-establishes the host ports of every ready sandbox (after a runtime restart). Must be
    /// called within a tokio runtime.
    pub fn restore_host_ports(&self) {
        for s in self
            .sandboxes
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.ready)
        {
            if let Err(e) = self.open_host_ports(&s) {
                tracing::warn!(sandbox = %s.id, error = %e, "restoring host ports");
            }
        }
    }

    /// Opens the host ports of a sandbox that has a pod IP (all or none).
    fn open_host_ports(&self, s: &SandboxInfo) -> Result<(), Status> {
        let Some(pod_ip) = s.ip else { return Ok(()) };
        self.ports
            .open(&s.id, pod_ip, &s.config.port_mappings)
            .map_err(host_port_status)
    }

    /// Closes the host ports of a sandbox.
    fn close_host_ports(&self, sandbox_id: &str) {
        self.ports.close(sandbox_id);
    }
}

//! Container lifecycle verbs (CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ListContainers, ContainerStatus, ReopenContainerLog) over the container store.

use std::collections::HashMap;
use std::time::Duration;

use berth_cri::v1 as cri;
use tonic::Status;

use super::convert::{container_params, container_status_to_cri};
use super::error::{container_status, image_status, internal, sandbox_status};
use super::meta::CriMeta;
use super::{CriService, blocking, labels_match, new_id};
use crate::container::{ContainerError, ContainerStatus};

/// CreateContainer: a container of the request's image in its sandbox, with its CRI metadata.
pub(super) async fn create(
    svc: &CriService,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse, Status> {
    let config = req.config.unwrap_or_default();
    let sandbox = svc
        .sandboxes
        .info(&req.pod_sandbox_id)
        .map_err(sandbox_status)?;
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    let image = svc
        .images
        .resolve(&image_name)
        .map_err(image_status)?
        .ok_or_else(|| Status::not_found(format!("image {image_name:?} not present")))?;
    let id = new_id();
    let log_path = match (&sandbox.log_directory, config.log_path.is_empty()) {
        (Some(dir), false) => dir.join(&config.log_path),
        _ => svc
            .containers
            .path(&id)
            .map_err(container_status)?
            .with_extension("log"),
    };
    let params = container_params(&config, &sandbox);
    let meta = CriMeta::new(&config, &sandbox.id, image_name, image.id.clone());
    let layers = svc.images.snapshot_dirs(&image);
    let this = svc.clone();
    let cid = id.clone();
    blocking(move || {
        let img_cfg = image.config.config().clone();
        this.containers
            .create(&cid, &layers, img_cfg.as_ref(), params, &log_path)
            .map_err(container_status)?;
        this.save_meta(&cid, &meta)
    })
    .await?;
    Ok(cri::CreateContainerResponse { container_id: id })
}

/// StartContainer.
pub(super) async fn start(
    svc: &CriService,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse, Status> {
    let id = req.container_id;
    let store = svc.containers.clone();
    blocking(move || store.start(&id).map_err(container_status)).await?;
    Ok(cri::StartContainerResponse {})
}

/// StopContainer: SIGTERM, SIGKILL after the timeout; a container that is gone counts as stopped.
pub(super) async fn stop(
    svc: &CriService,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse, Status> {
    let store = svc.containers.clone();
    let grace = Duration::from_secs(req.timeout.max(0) as u64);
    blocking(move || match store.stop(&req.container_id, grace) {
        Ok(_) | Err(ContainerError::NotFound(_)) => Ok(()),
        Err(e) => Err(container_status(e)),
    })
    .await?;
    Ok(cri::StopContainerResponse {})
}

/// RemoveContainer.
pub(super) async fn remove(
    svc: &CriService,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse, Status> {
    let id = req.container_id;
    let store = svc.containers.clone();
    blocking(move || store.remove(&id).map_err(container_status)).await?;
    Ok(cri::RemoveContainerResponse {})
}

/// ListContainers: the containers matching the filter (id prefix, state, sandbox, labels).
pub(super) async fn list(
    svc: &CriService,
    req: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let all = svc.containers.list().map_err(container_status)?;
    let containers = all
        .iter()
        .map(|s| (s, svc.to_cri_status(s), svc.meta(&s.record.id)))
        .filter(|(_, st, meta)| {
            st.id.starts_with(&f.id)
                && f.state.as_ref().is_none_or(|v| v.state == st.state)
                && (f.pod_sandbox_id.is_empty()
                    || meta
                        .as_ref()
                        .is_some_and(|m| m.sandbox_id == f.pod_sandbox_id))
                && labels_match(&st.labels, &f.label_selector)
        })
        .map(|(_, st, meta)| cri::Container {
            id: st.id.clone(),
            pod_sandbox_id: meta.map(|m| m.sandbox_id).unwrap_or_default(),
            metadata: st.metadata.clone(),
            image: st.image.clone(),
            image_ref: st.image_ref.clone(),
            state: st.state,
            created_at: st.created_at,
            labels: st.labels.clone(),
            annotations: st.annotations.clone(),
            image_id: st.image_id.clone(),
        })
        .collect();
    Ok(cri::ListContainersResponse { containers })
}

/// ContainerStatus.
pub(super) async fn status(
    svc: &CriService,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse, Status> {
    let s = svc
        .containers
        .status(&req.container_id)
        .map_err(container_status)?;
    Ok(cri::ContainerStatusResponse {
        status: Some(svc.to_cri_status(&s)),
        info: HashMap::new(),
    })
}

/// ReopenContainerLog: asks the container's shim (SIGUSR1) to reopen its log file.
pub(super) async fn reopen_log(
    svc: &CriService,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse, Status> {
    let id = req.container_id;
    let dir = svc.containers.path(&id).map_err(container_status)?;
    let pid = std::fs::read_to_string(dir.join("state").join(crate::shim::SHIM_PID_FILE))
        .map_err(|_| Status::not_found(id.clone()))?;
    let pid: i32 = pid.trim().parse().map_err(internal)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(internal)?;
    Ok(cri::ReopenContainerLogResponse {})
}

impl CriService {
    /// The CRI status of a container, with its CRI metadata.
    pub(super) fn to_cri_status(&self, s: &ContainerStatus) -> cri::ContainerStatus {
        container_status_to_cri(s, self.meta(&s.record.id).unwrap_or_default())
    }
}

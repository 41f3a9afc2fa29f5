//! The CRI metadata of a container (its sandbox, name, attempt, image, labels, annotations and
//! mounts as CRI gave them): fields the container store has no use for, kept next to the
//! container's state as `containers/<id>/cri.json` so they survive runtime restarts.

use std::collections::HashMap;

use berth_cri::v1 as cri;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::CriService;
use super::error::{container_status, internal};

/// The file in a container's directory holding its [`CriMeta`].
const META_FILE: &str = "cri.json";

/// CRI metadata of a container kept next to its state (`containers/<id>/cri.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct CriMeta {
    /// The sandbox the container belongs to.
    pub(super) sandbox_id: String,
    /// The CRI metadata name.
    pub(super) name: String,
    /// The CRI metadata attempt.
    pub(super) attempt: u32,
    /// The image as the request named it.
    pub(super) image: String,
    /// The image's id.
    pub(super) image_id: String,
    /// The container's CRI labels.
    pub(super) labels: HashMap<String, String>,
    /// The container's CRI annotations.
    pub(super) annotations: HashMap<String, String>,
    /// CRI mounts as (container path, host path, readonly).
    pub(super) mounts: Vec<(String, String, bool)>,
}

impl CriMeta {
    /// The metadata of a container created from `config` in `sandbox_id` with `image`
    /// (as named) resolved to `image_id`.
    pub(super) fn new(
        config: &cri::ContainerConfig,
        sandbox_id: &str,
        image: String,
        image_id: String,
    ) -> Self {
        CriMeta {
            sandbox_id: sandbox_id.to_string(),
            name: config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            attempt: config.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            image,
            image_id,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config
                .mounts
                .iter()
                .map(|m| (m.container_path.clone(), m.host_path.clone(), m.readonly))
                .collect(),
        }
    }
}

impl CriService {
    /// The CRI metadata of container `id`, if it has readable metadata.
    pub(super) fn meta(&self, id: &str) -> Option<CriMeta> {
        let dir = self.containers.path(id).ok()?;
        serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).ok()?).ok()
    }

    /// Writes the CRI metadata of container `id` (blocking).
    pub(super) fn save_meta(&self, id: &str, meta: &CriMeta) -> Result<(), Status> {
        let dir = self.containers.path(id).map_err(container_status)?;
        let json = serde_json::to_vec(meta).map_err(internal)?;
        berth_fs::write_atomic(&dir.join(META_FILE), &json).map_err(internal)
    }

    /// The ids of the containers of sandbox `sandbox_id`.
    pub(super) fn sandbox_containers(&self, sandbox_id: &str) -> Vec<String> {
        self.containers
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                self.meta(&c.record.id)
                    .is_some_and(|m| m.sandbox_id == sandbox_id)
            })
            .map(|c| c.record.id)
            .collect()
    }
}

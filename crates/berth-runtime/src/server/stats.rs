//! ContainerStats and ListContainerStats: CPU and memory usage read from the containers'
//! cgroups.

use berth_cri::v1 as cri;
use tonic::Status;

use super::error::container_status;
use super::{CriService, labels_match};
use crate::container::{ContainerState, ContainerStatus};

/// ContainerStats.
pub(super) async fn container_stats(
    svc: &CriService,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse, Status> {
    let s = svc
        .containers
        .status(&req.container_id)
        .map_err(container_status)?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(svc.stats_of(&s)),
    })
}

/// ListContainerStats: the stats of the running containers matching the filter.
pub(super) async fn list_container_stats(
    svc: &CriService,
    req: cri::ListContainerStatsRequest,
) -> Result<cri::ListContainerStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let stats = svc
        .containers
        .list()
        .map_err(container_status)?
        .iter()
        .filter(|s| s.record.id.starts_with(&f.id) && s.state() == ContainerState::Running)
        .filter(|s| {
            let meta = svc.meta(&s.record.id);
            (f.pod_sandbox_id.is_empty()
                || meta
                    .as_ref()
                    .is_some_and(|m| m.sandbox_id == f.pod_sandbox_id))
                && labels_match(
                    &meta.map(|m| m.labels).unwrap_or_default(),
                    &f.label_selector,
                )
        })
        .map(|s| svc.stats_of(s))
        .collect();
    Ok(cri::ListContainerStatsResponse { stats })
}

impl CriService {
    /// A container's CRI attributes with its current CPU and memory usage.
    fn stats_of(&self, s: &ContainerStatus) -> cri::ContainerStats {
        let st = self.to_cri_status(s);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let usage = crate::cgroup::usage(
            std::path::Path::new("/sys/fs/cgroup"),
            &s.record.cgroup_path,
        )
        .unwrap_or_default();
        let value = |v: u64| Some(cri::UInt64Value { value: v });
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: st.id,
                metadata: st.metadata,
                labels: st.labels,
                annotations: st.annotations,
            }),
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: value(usage.cpu_ns),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: value(usage.working_set_bytes),
                usage_bytes: value(usage.memory_bytes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

//! The Pod's sandbox: adopting the ready one that carries the Pod's UID label or running a new
//! one (with backoff after failures), and stopping it once all containers have ended for good.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::{Sandbox, Worker, remove_sandbox};
use crate::labels;
use crate::pod::status::{self, PodView};
use crate::pod::{confine, decide, spec};

impl Worker {
    /// Stops the sandbox of a Pod whose containers have all ended for good (as the kubelet
    /// does): its network goes, the exited containers and their logs stay until deletion.
    pub(super) async fn stop_finished_sandbox(&mut self, view: &PodView) {
        let finished = matches!(
            status::phase(view, decide::restart_policy(&self.pod)),
            "Succeeded" | "Failed"
        );
        if !finished || self.sandbox_stopped {
            return;
        }
        let Some(id) = self.sandbox.as_ref().map(|s| s.id.clone()) else {
            return;
        };
        let req = cri::StopPodSandboxRequest { pod_sandbox_id: id };
        match self.ctx.cri.runtime.clone().stop_pod_sandbox(req).await {
            Ok(_) => self.sandbox_stopped = true,
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "stopping a finished pod's sandbox failed")
            }
        }
    }

    /// The newest ready sandbox carrying this Pod's UID label, with all sandboxes of the Pod.
    pub(super) async fn find_sandbox(&self) -> Option<cri::PodSandbox> {
        let all = list_sandboxes(&self.ctx.cri, &self.uid()).await.ok()?;
        all.into_iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at)
    }

    /// Adopts the Pod's ready sandbox or runs a new one.
    pub(super) async fn ensure_sandbox(&mut self) -> Result<(), tonic::Status> {
        if self.sandbox.is_some() {
            return Ok(());
        }
        if self.sandbox_backoff.waiting(Instant::now()) {
            return Err(tonic::Status::unavailable(
                "waiting before the next sandbox attempt",
            ));
        }
        let mut rt = self.ctx.cri.runtime.clone();
        let all = list_sandboxes(&self.ctx.cri, &self.uid()).await?;
        let ready = all
            .iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at);
        let attempt = u32::try_from(all.len()).unwrap_or(0);
        let log_dir = spec::log_directory(&self.ctx.config.data_dir, &self.pod);
        let config = spec::sandbox_config(&self.pod, attempt, log_dir.clone());
        let began = Instant::now();
        let id = match ready {
            Some(s) => {
                tracing::debug!(pod = %self.pod.name_any(), sandbox = %s.id, "adopted the pod sandbox");
                s.id.clone()
            }
            None => {
                let _ = std::fs::create_dir_all(&log_dir);
                let req = cri::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                };
                match rt.run_pod_sandbox(req).await {
                    Ok(r) => r.into_inner().pod_sandbox_id,
                    Err(e) => {
                        self.sandbox_backoff.exited(Instant::now(), Duration::ZERO);
                        self.event(
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {}", e.message()),
                        );
                        return Err(e);
                    }
                }
            }
        };
        // Sandboxes of earlier attempts that are no longer ready hold nothing we need.
        for old in all
            .iter()
            .filter(|s| s.id != id && s.state != cri::PodSandboxState::SandboxReady as i32)
        {
            remove_sandbox(&self.ctx.cri, &old.id, 0).await;
        }
        let st = rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await?;
        // On the node's network the pod's IP is the node's, as the kubelet reports it.
        let ip = if confine::host_network(&self.pod) {
            Some(self.ctx.config.node_ip.to_string())
        } else {
            st.into_inner()
                .status
                .and_then(|s| s.network)
                .map(|n| n.ip)
                .filter(|ip| !ip.is_empty())
        };
        tracing::debug!(pod = %self.pod.name_any(), took = ?began.elapsed(), "sandbox ready");
        self.sandbox = Some(Sandbox { id, ip, config });
        Ok(())
    }
}

/// Every sandbox carrying `uid`'s label.
pub(super) async fn list_sandboxes(
    cri_: &CriClient,
    uid: &str,
) -> Result<Vec<cri::PodSandbox>, tonic::Status> {
    let filter = cri::PodSandboxFilter {
        label_selector: HashMap::from([(labels::POD_UID.to_string(), uid.to_string())]),
        ..Default::default()
    };
    let r = cri_
        .runtime
        .clone()
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await?;
    Ok(r.into_inner().items)
}

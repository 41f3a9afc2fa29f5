//! Tearing a Pod down: graceful deletion (Ready off, drain, stop with the grace period, remove
//! the sandbox, delete the object with a UID precondition), cleanup after a force delete, and
//! removing sandboxes with their containers.

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::events::EventType;

use super::{Sandbox, Worker, sandbox};
use crate::pod::{decide, spec};

impl Worker {
    /// Graceful deletion: Ready=False, drain, stop with the grace period, remove the sandbox, then
    /// delete the Pod object with grace 0 and a UID precondition.
    pub(super) async fn terminate(mut self) {
        let grace = decide::grace_period(&self.pod);
        tracing::info!(pod = %self.pod.name_any(), grace_s = grace.as_secs(), "stopping the deleted pod");
        if self.sandbox.is_none()
            && let Some(sb) = self.find_sandbox().await
        {
            self.sandbox = Some(Sandbox {
                id: sb.id,
                ip: None,
                config: Default::default(),
            });
        }
        // Ready=False first, so every consumer (the service proxy) drops the Pod before SIGTERM.
        // (berth's API server currently removes a Pod with a deletionTimestamp and no finalizers
        // on any update, so the object may vanish here; the containers are still stopped below.)
        self.write_status(true).await;
        tokio::time::sleep(decide::drain(grace)).await;
        for t in self.tracks.values_mut() {
            t.probes.clear();
        }
        let observed = self.observe().await;
        let grace_secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        let mut stops = Vec::new();
        for (name, instances) in &observed {
            for i in instances.iter().filter(|i| !i.exited()) {
                self.event(
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                );
                stops.push(stop_container(&self.ctx.cri, &i.id, grace_secs));
            }
        }
        futures::future::join_all(stops).await;
        self.remove_all_sandboxes(0).await;
        tracing::debug!(pod = %self.pod.name_any(), "containers stopped, sandbox removed");
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.pod.namespace().unwrap_or_default(),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.pod.name_any(), &params).await {
            Ok(_) => tracing::info!(pod = %self.pod.name_any(), "pod stopped and deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "deleting the pod failed")
            }
        }
    }

    /// The Pod vanished without a graceful deletion (force delete): stop and remove everything.
    pub(super) async fn cleanup(mut self) {
        for t in self.tracks.values_mut() {
            t.probes.clear();
        }
        let grace = spec::termination_grace_seconds(&self.pod);
        // A force-deleted Pod gets a short grace: its object is already gone.
        self.remove_all_sandboxes(grace.min(2)).await;
        tracing::info!(pod = %self.pod.name_any(), "pod gone; sandbox removed");
    }

    /// Stops and removes every sandbox of this Pod (containers are stopped with `grace` s).
    async fn remove_all_sandboxes(&self, grace: i64) {
        let Ok(all) = sandbox::list_sandboxes(&self.ctx.cri, &self.uid()).await else {
            return;
        };
        for sb in all {
            remove_sandbox(&self.ctx.cri, &sb.id, grace).await;
        }
    }
}

/// Stops a container, SIGTERM then SIGKILL after `grace` seconds (the runtime's part).
pub(super) async fn stop_container(cri_: &CriClient, id: &str, grace: i64) {
    let req = cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout: grace,
    };
    if let Err(e) = cri_.runtime.clone().stop_container(req).await {
        tracing::warn!(container = %id, error = %e, "stopping a container failed");
    }
}

/// Stops a sandbox's containers (grace `grace` s), then stops and removes the sandbox.
pub async fn remove_sandbox(cri_: &CriClient, id: &str, grace: i64) {
    let mut rt = cri_.runtime.clone();
    let filter = cri::ContainerFilter {
        pod_sandbox_id: id.to_string(),
        ..Default::default()
    };
    if let Ok(r) = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
    {
        let running = r
            .into_inner()
            .containers
            .into_iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32);
        futures::future::join_all(
            running.map(|c| async move { stop_container(cri_, &c.id, grace).await }),
        )
        .await;
    }
    if let Err(e) = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
    {
        tracing::warn!(sandbox = %id, error = %e, "stopping a sandbox failed");
    }
    if let Err(e) = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
    {
        tracing::warn!(sandbox = %id, error = %e, "removing a sandbox failed");
    }
}

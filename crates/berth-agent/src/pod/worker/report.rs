//! What the worker reports: the Pod status (computed by [`status::compute`] from the observed
//! instances and the tracks, patched only when it changed) and Events.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Worker;
use crate::pod::decide;
use crate::pod::spec;
use crate::pod::status::{self, ContainerView, Instance, PodView};

impl Worker {
    /// The status inputs from the observed instances and the tracks.
    pub(super) fn view(
        &self,
        observed: &HashMap<String, Vec<Instance>>,
        deleting: bool,
    ) -> PodView {
        let containers = self
            .containers()
            .into_iter()
            .map(|c| {
                let instances = observed.get(&c.name).cloned().unwrap_or_default();
                let (cur, prev) = decide::current_and_previous(&instances);
                let t = self.tracks.get(&c.name);
                let probed =
                    |i: &Instance| t.and_then(|t| t.probed.as_deref()) == Some(i.id.as_str());
                let on_current = cur.is_some_and(probed);
                ContainerView {
                    image: spec::image(&c),
                    current: cur.cloned(),
                    previous: prev.cloned(),
                    waiting: t.and_then(|t| t.waiting.clone()),
                    ready: on_current && t.is_some_and(|t| t.ready && t.started),
                    started: on_current && t.is_some_and(|t| t.started),
                    name: c.name,
                }
            })
            .collect();
        PodView {
            pod_ip: self.sandbox.as_ref().and_then(|s| s.ip.clone()),
            host_ip: self.ctx.config.node_ip.to_string(),
            containers,
            deleting,
        }
    }

    /// Writes the status of what was last observed (used when the sandbox failed).
    pub(super) async fn write_status(&mut self, deleting: bool) {
        let observed = self.observe().await;
        let view = self.view(&observed, deleting);
        self.write_status_view(&view).await;
    }

    /// Patches the status subresource when the computed status differs from the last written.
    pub(super) async fn write_status_view(&mut self, view: &PodView) {
        let mut base = (*self.pod).clone();
        base.status = self.written.clone().or(base.status);
        let next = status::compute(&base, view, k8s_openapi::jiff::Timestamp::now());
        if self.written.as_ref() == Some(&next) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.pod.namespace().unwrap_or_default(),
        );
        let patch = json!({"status": next});
        match api
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.written = Some(next),
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "writing the pod status failed")
            }
        }
    }

    /// Records an Event about the Pod (in the background: Events never hold the worker up).
    pub(super) fn event(&self, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        let reference = self.pod.object_ref(&());
        let recorder = self.ctx.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::debug!(error = %e, "recording an event failed");
            }
        });
    }
}

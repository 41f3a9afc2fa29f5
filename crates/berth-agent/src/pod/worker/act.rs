//! Acting on each container's next step ([`decide::next`]): removing stale instances, creating
//! and starting instances, and holding crash-looping containers back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::Container;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::Worker;
use crate::pod::confine::Confinement;
use crate::pod::decide::{self, Next};
use crate::pod::spec::{self, FieldValues};
use crate::pod::status::Instance;

impl Worker {
    /// Acts on every container; returns whether anything was done (then the state is re-read).
    pub(super) async fn act(&mut self, observed: &HashMap<String, Vec<Instance>>) -> bool {
        let policy = decide::restart_policy(&self.pod).to_string();
        let mut acted = false;
        for c in self.containers() {
            let instances = observed.get(&c.name).cloned().unwrap_or_default();
            for id in decide::stale_instances(&instances) {
                let _ = self
                    .ctx
                    .cri
                    .runtime
                    .clone()
                    .remove_container(cri::RemoveContainerRequest { container_id: id })
                    .await;
            }
            let (cur, _) = decide::current_and_previous(&instances);
            let cur = cur.cloned();
            let now = Instant::now();
            let track = self.tracks.entry(c.name.clone()).or_default();
            let mut newly_exited = false;
            if let Some(i) = cur
                .as_ref()
                .filter(|i| i.exited() && track.counted_exit.as_deref() != Some(i.id.as_str()))
            {
                track.counted_exit = Some(i.id.clone());
                newly_exited = true;
                if decide::should_restart(&policy, i.exit_code) {
                    track.backoff.exited(now, i.ran());
                }
                track.probes.clear();
                track.probed = None;
            }
            let left = track.backoff.remaining(now);
            match decide::next(&policy, cur.as_ref(), left) {
                Next::Create => acted |= self.create(&c, 0).await,
                Next::Restart => {
                    let n = cur.as_ref().map_or(0, |i| i.restart_count + 1);
                    acted |= self.create(&c, n).await;
                }
                Next::Start(id) => acted |= self.start(&c, &id).await,
                Next::Keep => {
                    self.track(&c.name).waiting = None;
                    if let Some(i) = cur.as_ref().filter(|i| i.running()) {
                        self.ensure_probes(&c, i).await;
                    }
                }
                Next::BackOff(_) => {
                    // The whole step, not the time left, so the status does not change each second.
                    let step = self.track(&c.name).backoff.delay();
                    let msg = format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        step.as_secs(),
                        c.name,
                        self.pod.name_any(),
                        self.pod.namespace().unwrap_or_default(),
                        self.uid()
                    );
                    self.track(&c.name).waiting = Some(("CrashLoopBackOff".into(), msg));
                    if newly_exited {
                        let note = format!(
                            "Back-off restarting failed container {} in pod {}",
                            c.name,
                            self.pod.name_any()
                        );
                        self.event(EventType::Warning, "BackOff", note);
                    }
                }
                Next::Done => self.track(&c.name).waiting = None,
            }
        }
        acted
    }

    /// Pulls the image as its policy says, creates and starts instance `restart_count` of `c`.
    /// Returns whether a container was created.
    async fn create(&mut self, c: &Container, restart_count: u32) -> bool {
        let began = Instant::now();
        if let Err(waiting) = self.ensure_image(c).await {
            self.track(&c.name).waiting = Some(waiting);
            return false;
        }
        let image_user = if spec::needs_image_user(c, &self.pod) {
            self.image_user(c).await
        } else {
            spec::ImageUser::Uid(0)
        };
        if let Some(msg) = spec::non_root_violation(c, &self.pod, &image_user) {
            self.event(EventType::Warning, "Failed", format!("Error: {msg}"));
            self.track(&c.name).waiting = Some(("CreateContainerConfigError".into(), msg));
            return false;
        }
        let confinement = match Confinement::of(&self.pod, c, &self.ctx.config.data_dir) {
            Ok(confinement) => confinement,
            Err(msg) => {
                self.event(EventType::Warning, "Failed", format!("Error: {msg}"));
                self.track(&c.name).waiting = Some(("CreateContainerConfigError".into(), msg));
                return false;
            }
        };
        self.ensure_liveness(c).await;
        let Some(sandbox) = self.sandbox.as_ref() else {
            return false;
        };
        let fields = FieldValues {
            pod_ip: sandbox.ip.clone(),
            node_name: self.ctx.config.node_name.clone(),
            host_ip: self.ctx.config.node_ip.to_string(),
        };
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(spec::container_config(
                &self.pod,
                c,
                restart_count,
                &fields,
                &confinement,
            )),
            sandbox_config: Some(sandbox.config.clone()),
        };
        let id = match self.ctx.cri.runtime.clone().create_container(req).await {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                self.runtime_failed(&c.name, "CreateContainerError", e.message());
                self.track(&c.name)
                    .backoff
                    .exited(Instant::now(), Duration::ZERO);
                return false;
            }
        };
        self.event(
            EventType::Normal,
            "Created",
            format!("Created container {}", c.name),
        );
        let created = began.elapsed();
        self.start(c, &id).await;
        tracing::debug!(pod = %self.pod.name_any(), container = %c.name, ?created, took = ?began.elapsed(), "container started");
        true
    }

    /// Starts a created instance.
    async fn start(&mut self, c: &Container, id: &str) -> bool {
        let req = cri::StartContainerRequest {
            container_id: id.to_string(),
        };
        match self.ctx.cri.runtime.clone().start_container(req).await {
            Ok(_) => {
                self.track(&c.name).waiting = None;
                self.event(
                    EventType::Normal,
                    "Started",
                    format!("Started container {}", c.name),
                );
            }
            Err(e) => self.runtime_failed(&c.name, "RunContainerError", e.message()),
        }
        true
    }

    /// A CRI call for container `name` failed: a Warning event, and the container waits with
    /// `reason` (kubelet's CreateContainerError / RunContainerError) and the runtime's message.
    fn runtime_failed(&mut self, name: &str, reason: &str, message: &str) {
        self.event(EventType::Warning, "Failed", format!("Error: {message}"));
        self.track(name).waiting = Some((reason.into(), message.to_string()));
    }
}

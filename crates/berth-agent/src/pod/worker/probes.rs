//! Probes: looking up the liveness probe (the spec's, else the image's HEALTHCHECK), starting
//! the probe loops of a running instance and applying their verdicts.

use std::net::IpAddr;

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Probe};
use kube::runtime::events::EventType;

use super::{Worker, teardown};
use crate::pod::spec;
use crate::pod::status::Instance;
use crate::probe::{self, ProbeKind, ProbeTask, ProbeUpdate};

impl Worker {
    /// Looks the liveness probe up once: the spec's, else the image's HEALTHCHECK.
    pub(super) async fn ensure_liveness(&mut self, c: &Container) {
        if self.track(&c.name).liveness.is_some() {
            return;
        }
        let probe = match c.liveness_probe.clone() {
            Some(p) => Some(p),
            None => {
                let req = cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: spec::image(c),
                        ..Default::default()
                    }),
                    verbose: true,
                };
                match self.ctx.cri.image.clone().image_status(req).await {
                    Ok(r) => probe::healthcheck_probe(&r.into_inner()),
                    Err(_) => None,
                }
            }
        };
        self.track(&c.name).liveness = Some(probe);
    }

    /// Starts the probes for a running instance once (startup first; the others after it).
    pub(super) async fn ensure_probes(&mut self, c: &Container, inst: &Instance) {
        if self.track(&c.name).probed.as_deref() == Some(inst.id.as_str()) {
            return;
        }
        self.ensure_liveness(c).await;
        let t = self.track(&c.name);
        t.probes.clear();
        t.probed = Some(inst.id.clone());
        t.started = c.startup_probe.is_none();
        t.ready = c.readiness_probe.is_none();
        match c.startup_probe.clone() {
            Some(p) => {
                let task = self.spawn_probe(ProbeKind::Startup, c, p, &inst.id);
                self.track(&c.name).probes.push(task);
            }
            None => self.spawn_main_probes(c, &inst.id),
        }
    }

    /// Starts the liveness and readiness probes.
    fn spawn_main_probes(&mut self, c: &Container, id: &str) {
        let liveness = self
            .tracks
            .get(&c.name)
            .and_then(|t| t.liveness.clone())
            .flatten();
        let mut tasks = Vec::new();
        if let Some(p) = liveness {
            tasks.push(self.spawn_probe(ProbeKind::Liveness, c, p, id));
        }
        if let Some(p) = c.readiness_probe.clone() {
            tasks.push(self.spawn_probe(ProbeKind::Readiness, c, p, id));
        }
        self.track(&c.name).probes.extend(tasks);
    }

    fn spawn_probe(&self, kind: ProbeKind, c: &Container, p: Probe, id: &str) -> ProbeTask {
        let target = probe::Target {
            pod_ip: self
                .sandbox
                .as_ref()
                .and_then(|s| s.ip.as_deref())
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
            container_id: id.to_string(),
            ports: c.ports.clone().unwrap_or_default(),
        };
        probe::spawn(
            kind,
            c.name.clone(),
            p,
            target,
            self.ctx.cri.clone(),
            self.probe_tx.clone(),
        )
    }

    /// Applies a probe report.
    pub(super) async fn on_probe(&mut self, update: ProbeUpdate) {
        match update {
            ProbeUpdate::Failed {
                kind,
                container: _,
                message,
            } => {
                self.event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.title()),
                );
            }
            ProbeUpdate::Changed {
                kind,
                container,
                healthy,
            } => {
                let Some(c) = self.containers().into_iter().find(|c| c.name == container) else {
                    return;
                };
                let Some(id) = self.tracks.get(&container).and_then(|t| t.probed.clone()) else {
                    return;
                };
                match kind {
                    ProbeKind::Startup if healthy => {
                        self.track(&container).started = true;
                        self.spawn_main_probes(&c, &id);
                    }
                    ProbeKind::Startup => {}
                    ProbeKind::Readiness => self.track(&container).ready = healthy,
                    ProbeKind::Liveness if !healthy => self.kill_unhealthy(&c, &id).await,
                    ProbeKind::Liveness => {}
                }
            }
        }
    }

    /// Stops an instance that failed its liveness probe; the restart policy restarts it.
    async fn kill_unhealthy(&mut self, c: &Container, id: &str) {
        let t = self.track(&c.name);
        t.probes.clear();
        t.ready = false;
        let note = format!(
            "Container {} failed liveness probe, will be restarted",
            c.name
        );
        self.event(EventType::Normal, "Killing", note);
        let grace = spec::termination_grace_seconds(&self.pod);
        teardown::stop_container(&self.ctx.cri, id, grace).await;
    }
}

//! The per-Pod worker: drives one Pod through CRI to its spec and writes its status and Events.
//!
//! Each round it makes sure the sandbox exists (adopting one that carries the Pod's UID label),
//! lists the Pod's containers, decides per container ([`decide::next`]) and acts (pull, create,
//! start, restart after the crash-loop backoff), then computes the status ([`status::compute`])
//! and patches it when it changed. It polls CRI fast only while a container is starting and
//! wakes at once for a new Pod version or a probe verdict. A deletionTimestamp turns Ready off
//! first, waits a short drain, stops the containers with the grace period, removes the sandbox
//! and finally deletes the Pod with grace 0 and a UID precondition.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Probe};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::Ctx;
use super::decide::{self, Next};
use super::spec::{self, FieldValues};
use super::status::{self, ContainerView, Instance, PodView};
use crate::backoff::Backoff;
use crate::labels;
use crate::probe::{self, ProbeKind, ProbeTask, ProbeUpdate};

/// How often CRI is polled while a container is starting.
const FAST_POLL: Duration = Duration::from_millis(100);
/// How often CRI is polled otherwise (exit detection).
const SLOW_POLL: Duration = Duration::from_secs(1);

/// The Pod's sandbox.
struct Sandbox {
    id: String,
    ip: Option<String>,
    config: cri::PodSandboxConfig,
}

/// What the worker remembers about one spec container across rounds.
#[derive(Default)]
struct Track {
    /// Crash-loop backoff of restarts.
    backoff: Backoff,
    /// The exited instance already counted in `backoff`.
    counted_exit: Option<String>,
    /// Backoff of failed image pulls.
    pull_backoff: Backoff,
    /// Why the container is held back (reason, message), shown as its waiting state.
    waiting: Option<(String, String)>,
    /// Probe loops of `probed`.
    probes: Vec<ProbeTask>,
    /// The instance the probes run against.
    probed: Option<String>,
    /// Startup verdict of `probed`.
    started: bool,
    /// Readiness verdict of `probed`.
    ready: bool,
    /// The liveness probe: the spec's, else the image's HEALTHCHECK (looked up once).
    liveness: Option<Option<Probe>>,
}

/// One Pod's worker.
pub struct Worker {
    ctx: Arc<Ctx>,
    pod: Arc<Pod>,
    rx: watch::Receiver<Option<Arc<Pod>>>,
    sandbox: Option<Sandbox>,
    sandbox_backoff: Backoff,
    /// Whether the sandbox was stopped because the Pod finished.
    sandbox_stopped: bool,
    tracks: HashMap<String, Track>,
    /// Observed instances by id (an instance's timestamps and exit don't change once read).
    cache: HashMap<String, Instance>,
    /// The status last written (or read): a new one is written only when it differs.
    written: Option<PodStatus>,
    probe_tx: mpsc::UnboundedSender<ProbeUpdate>,
    probe_rx: mpsc::UnboundedReceiver<ProbeUpdate>,
}

impl Worker {
    /// A worker for `pod`, fed new versions through `rx`.
    pub fn new(ctx: Arc<Ctx>, pod: Arc<Pod>, rx: watch::Receiver<Option<Arc<Pod>>>) -> Self {
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        Worker {
            ctx,
            written: pod.status.clone(),
            pod,
            rx,
            sandbox: None,
            sandbox_backoff: Backoff::new(),
            sandbox_stopped: false,
            tracks: HashMap::new(),
            cache: HashMap::new(),
            probe_tx,
            probe_rx,
        }
    }

    /// Runs until the Pod is deleted (and cleaned up) or gone.
    pub async fn run(mut self) {
        loop {
            let latest = self.rx.borrow_and_update().clone();
            match latest {
                None => return self.cleanup().await,
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    self.pod = p;
                    return self.terminate().await;
                }
                Some(p) => self.pod = p,
            }
            let wait = self.round().await;
            tokio::select! {
                changed = self.rx.changed() => {
                    // The manager is gone (the agent stops): leave the containers running.
                    if changed.is_err() {
                        return;
                    }
                }
                Some(update) = self.probe_rx.recv() => self.on_probe(update).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn uid(&self) -> String {
        self.pod.uid().unwrap_or_default()
    }

    fn containers(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }

    /// One reconcile round; returns how long to sleep before the next.
    async fn round(&mut self) -> Duration {
        if self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
            && self.sandbox.is_none()
            && self.written.is_some()
            && self.find_sandbox().await.is_none()
        {
            // A finished Pod whose sandbox is gone stays finished (nothing is re-run).
            return Duration::from_secs(3600);
        }
        if let Err(e) = self.ensure_sandbox().await {
            tracing::warn!(pod = %self.pod.name_any(), error = %e, "pod sandbox");
            self.write_status(false).await;
            return self
                .sandbox_backoff
                .remaining(Instant::now())
                .max(SLOW_POLL);
        }
        let mut observed = self.observe().await;
        if self.act(&observed).await {
            observed = self.observe().await;
            // Instances that just started get their probes now (no probes: Ready at once),
            // not a poll later.
            for c in self.containers() {
                let running = observed.get(&c.name).and_then(|list| {
                    decide::current_and_previous(list)
                        .0
                        .filter(|i| i.running())
                        .cloned()
                });
                if let Some(i) = running {
                    self.ensure_probes(&c, &i).await;
                }
            }
        }
        let view = self.view(&observed, false);
        self.write_status_view(&view).await;
        self.stop_finished_sandbox(&view).await;
        self.next_wait(&view)
    }

    /// Stops the sandbox of a Pod whose containers have all ended for good (as the kubelet
    /// does): its network goes, the exited containers and their logs stay until deletion.
    async fn stop_finished_sandbox(&mut self, view: &PodView) {
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

    /// The sleep before the next round: fast while something is starting, until the earliest
    /// backoff ends, else the exit-detection poll.
    fn next_wait(&self, view: &PodView) -> Duration {
        let starting = view.containers.iter().any(|c| {
            c.waiting.is_none()
                && c.current
                    .as_ref()
                    .is_none_or(|i| i.state == cri::ContainerState::ContainerCreated)
        });
        if starting {
            return FAST_POLL;
        }
        let now = Instant::now();
        let backoffs = self
            .tracks
            .values()
            .flat_map(|t| [t.backoff.remaining(now), t.pull_backoff.remaining(now)]);
        backoffs
            .filter(|d| !d.is_zero())
            .fold(SLOW_POLL, Duration::min)
    }

    /// The newest ready sandbox carrying this Pod's UID label, with all sandboxes of the Pod.
    async fn find_sandbox(&self) -> Option<cri::PodSandbox> {
        let all = list_sandboxes(&self.ctx.cri, &self.uid()).await.ok()?;
        all.into_iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at)
    }

    /// Adopts the Pod's ready sandbox or runs a new one.
    async fn ensure_sandbox(&mut self) -> Result<(), tonic::Status> {
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
        let ip = st
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty());
        tracing::debug!(pod = %self.pod.name_any(), took = ?began.elapsed(), "sandbox ready");
        self.sandbox = Some(Sandbox { id, ip, config });
        Ok(())
    }

    /// The instances of each spec container in the current sandbox, by container name.
    async fn observe(&mut self) -> HashMap<String, Vec<Instance>> {
        let mut out: HashMap<String, Vec<Instance>> = HashMap::new();
        let Some(sandbox_id) = self.sandbox.as_ref().map(|s| s.id.clone()) else {
            return out;
        };
        let filter = cri::ContainerFilter {
            pod_sandbox_id: sandbox_id,
            label_selector: HashMap::from([(labels::POD_UID.to_string(), self.uid())]),
            ..Default::default()
        };
        let mut rt = self.ctx.cri.runtime.clone();
        let listed = match rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
        {
            Ok(r) => r.into_inner().containers,
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "listing containers failed");
                return out;
            }
        };
        self.cache
            .retain(|id, _| listed.iter().any(|c| &c.id == id));
        for c in listed {
            let Some(name) = c.labels.get(labels::CONTAINER_NAME).cloned() else {
                continue;
            };
            let fresh = self
                .cache
                .get(&c.id)
                .filter(|i| i.state as i32 == c.state)
                .cloned();
            let inst = match fresh {
                Some(i) => i,
                None => match instance(&self.ctx.cri, &c.id).await {
                    Some(i) => {
                        self.cache.insert(c.id.clone(), i.clone());
                        i
                    }
                    None => continue,
                },
            };
            out.entry(name).or_default().push(inst);
        }
        out
    }

    /// Acts on every container; returns whether anything was done (then the state is re-read).
    async fn act(&mut self, observed: &HashMap<String, Vec<Instance>>) -> bool {
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

    fn track(&mut self, name: &str) -> &mut Track {
        self.tracks.entry(name.to_string()).or_default()
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
            config: Some(spec::container_config(&self.pod, c, restart_count, &fields)),
            sandbox_config: Some(sandbox.config.clone()),
        };
        let id = match self.ctx.cri.runtime.clone().create_container(req).await {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {}", e.message()),
                );
                self.track(&c.name).waiting =
                    Some(("CreateContainerError".into(), e.message().to_string()));
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
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {}", e.message()),
                );
                self.track(&c.name).waiting =
                    Some(("RunContainerError".into(), e.message().to_string()));
            }
        }
        true
    }

    /// Makes the image present as the pull policy says; `Err` is the waiting reason and message.
    async fn ensure_image(&mut self, c: &Container) -> Result<(), (String, String)> {
        let image = spec::image(c);
        let now = Instant::now();
        if self.track(&c.name).pull_backoff.waiting(now) {
            let msg = format!("Back-off pulling image \"{image}\"");
            return Err(("ImagePullBackOff".into(), msg));
        }
        let mut img = self.ctx.cri.image.clone();
        let spec_ = cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        // Verbose: the same answer carries the image's HEALTHCHECK (see `ensure_liveness`).
        let status = img
            .image_status(cri::ImageStatusRequest {
                image: Some(spec_.clone()),
                verbose: true,
            })
            .await
            .map(tonic::Response::into_inner)
            .ok()
            .filter(|r| r.image.is_some());
        let present = status.is_some();
        let pull = match spec::should_pull(c, present) {
            Ok(p) => p,
            Err(msg) => {
                self.event(EventType::Warning, "ErrImageNeverPull", msg.clone());
                return Err(("ErrImageNeverPull".into(), msg));
            }
        };
        if !pull {
            let t = self.track(&c.name);
            if t.liveness.is_none() {
                let probe = c.liveness_probe.clone();
                t.liveness =
                    Some(probe.or_else(|| status.as_ref().and_then(probe::healthcheck_probe)));
            }
            self.event(
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(());
        }
        self.event(
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        let req = cri::PullImageRequest {
            image: Some(spec_),
            auth: None,
            sandbox_config: None,
        };
        match img.pull_image(req).await {
            Ok(_) => {
                self.track(&c.name).pull_backoff = Backoff::new();
                let secs = started.elapsed().as_secs_f64();
                self.event(
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in {secs:.3}s"),
                );
                Ok(())
            }
            Err(e) => {
                let t = self.track(&c.name);
                // The first failure shows ErrImagePull; retries wait 10 s doubling (ImagePullBackOff).
                t.pull_backoff.exited(Instant::now(), Duration::ZERO);
                t.pull_backoff.exited(Instant::now(), Duration::ZERO);
                let msg = format!("Failed to pull image \"{image}\": {}", e.message());
                self.event(EventType::Warning, "Failed", msg.clone());
                Err(("ErrImagePull".into(), msg))
            }
        }
    }

    /// The user `c`'s image runs as, from the runtime (root if it cannot tell).
    async fn image_user(&self, c: &Container) -> spec::ImageUser {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: spec::image(c),
                ..Default::default()
            }),
            verbose: false,
        };
        let status = self.ctx.cri.image.clone().image_status(req).await;
        spec::ImageUser::of(status.ok().and_then(|r| r.into_inner().image).as_ref())
    }

    /// Looks the liveness probe up once: the spec's, else the image's HEALTHCHECK.
    async fn ensure_liveness(&mut self, c: &Container) {
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
    async fn ensure_probes(&mut self, c: &Container, inst: &Instance) {
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
    async fn on_probe(&mut self, update: ProbeUpdate) {
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
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        stop_container(&self.ctx.cri, id, grace).await;
    }

    /// The status inputs from the observed instances and the tracks.
    fn view(&self, observed: &HashMap<String, Vec<Instance>>, deleting: bool) -> PodView {
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
    async fn write_status(&mut self, deleting: bool) {
        let observed = self.observe().await;
        let view = self.view(&observed, deleting);
        self.write_status_view(&view).await;
    }

    /// Patches the status subresource when the computed status differs from the last written.
    async fn write_status_view(&mut self, view: &PodView) {
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
    fn event(&self, type_: EventType, reason: &str, note: String) {
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

    /// Graceful deletion: Ready=False, drain, stop with the grace period, remove the sandbox, then
    /// delete the Pod object with grace 0 and a UID precondition.
    async fn terminate(mut self) {
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
    async fn cleanup(mut self) {
        for t in self.tracks.values_mut() {
            t.probes.clear();
        }
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        // A force-deleted Pod gets a short grace: its object is already gone.
        self.remove_all_sandboxes(grace.min(2)).await;
        tracing::info!(pod = %self.pod.name_any(), "pod gone; sandbox removed");
    }

    /// Stops and removes every sandbox of this Pod (containers are stopped with `grace` s).
    async fn remove_all_sandboxes(&self, grace: i64) {
        let Ok(all) = list_sandboxes(&self.ctx.cri, &self.uid()).await else {
            return;
        };
        for sb in all {
            remove_sandbox(&self.ctx.cri, &sb.id, grace).await;
        }
    }
}

/// Every sandbox carrying `uid`'s label.
async fn list_sandboxes(
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

/// Reads one container's status as an [`Instance`].
async fn instance(cri_: &CriClient, id: &str) -> Option<Instance> {
    let req = cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    };
    let st = cri_
        .runtime
        .clone()
        .container_status(req)
        .await
        .ok()?
        .into_inner()
        .status?;
    let restart_count = st
        .annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Instance {
        id: st.id,
        state: cri::ContainerState::try_from(st.state)
            .unwrap_or(cri::ContainerState::ContainerUnknown),
        started_at: st.started_at,
        finished_at: st.finished_at,
        exit_code: st.exit_code,
        reason: st.reason,
        message: st.message,
        image: st.image.map(|i| i.image).unwrap_or_default(),
        image_ref: st.image_ref,
        restart_count,
    })
}

/// Stops a container, SIGTERM then SIGKILL after `grace` seconds (the runtime's part).
async fn stop_container(cri_: &CriClient, id: &str, grace: i64) {
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

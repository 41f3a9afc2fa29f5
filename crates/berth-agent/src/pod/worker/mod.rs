//! The per-Pod worker: drives one Pod through CRI to its spec and writes its status and Events.
//!
//! Each round it makes sure the sandbox exists (adopting one that carries the Pod's UID label),
//! lists the Pod's containers, decides per container ([`decide::next`]) and acts (pull, create,
//! start, restart after the crash-loop backoff), then computes the status
//! ([`super::status::compute`]) and patches it when it changed. It polls CRI fast only while a
//! container is starting and wakes at once for a new Pod version or a probe verdict. A
//! deletionTimestamp turns Ready off first, waits a short drain, stops the containers with the
//! grace period, removes the sandbox and finally deletes the Pod with grace 0 and a UID
//! precondition.
//!
//! This module holds the worker's state and its loop (one round, the wait before the next); the
//! steps of a round live beside it, one concept each:
//! - `sandbox`: finding, adopting or running the Pod's sandbox, and stopping it once finished;
//! - `observe`: reading the Pod's container instances from CRI;
//! - `act`: acting on each container's next step (create, start, crash-loop backoff);
//! - `pull`: making images present as the pull policy says;
//! - `probes`: the startup, liveness and readiness probes and their verdicts;
//! - `report`: the status written to the API and the Events recorded;
//! - `teardown`: graceful deletion, cleanup of a vanished Pod, removing sandboxes.

mod act;
mod observe;
mod probes;
mod pull;
mod report;
mod sandbox;
mod teardown;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Probe};
use kube::ResourceExt;
use tokio::sync::{mpsc, watch};

use super::Ctx;
use super::decide;
use super::status::{Instance, PodView};
use crate::backoff::Backoff;
use crate::probe::{ProbeTask, ProbeUpdate};

pub use teardown::remove_sandbox;

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

    fn track(&mut self, name: &str) -> &mut Track {
        self.tracks.entry(name.to_string()).or_default()
    }
}

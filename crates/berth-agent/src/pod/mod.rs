//! Pod workers: one per Pod bound to this node.
//!
//! [`run`] watches the Pods with `spec.nodeName=<node>` and keeps one [`worker`] task per Pod UID,
//! handing it every new version of its Pod (or `None` once the Pod is gone). The watch starts
//! over with a full list whenever the agent returns from a silence (its Lease renewals failed:
//! the server may have deleted its Pods meanwhile, and a watch connection from before the
//! silence may be dead without knowing it). After every full list, and periodically, [`orphans`] removes sandboxes (and their containers) whose Pod no
//! longer exists, so Pods deleted while the agent was down are cleaned up too. Workers adopt
//! existing sandboxes and containers by their CRI labels, so restarting the agent duplicates
//! nothing.
//!
//! - [`spec`]: Pod spec -> CRI configs;
//! - [`confine`]: host namespaces and seccomp profiles passed through CRI;
//! - [`volumes`]: volume mounts (hostPath honoured, what berth lacks refused);
//! - [`orphans`]: removing the sandboxes of Pods that no longer exist;
//! - [`decide`]: the pure decisions (next step, restart policy, stale instances, grace);
//! - [`status`]: the pure status computation;
//! - [`worker`]: the per-Pod loop that drives CRI and writes status and Events.

pub mod confine;
pub mod decide;
pub mod orphans;
pub mod spec;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_cri::CriClient;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::AgentConfig;

/// What every worker shares.
pub struct Ctx {
    /// The API client.
    pub client: kube::Client,
    /// The runtime.
    pub cri: CriClient,
    /// The agent's settings.
    pub config: AgentConfig,
    /// Records Events as `berth-agent` / the node name.
    pub recorder: Recorder,
}

/// Why the pod manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The watch stream ended (kube-runtime's watcher does not end on its own).
    #[error("the pod watch ended")]
    WatchEnded,
}

/// A running worker and the channel that feeds it its Pod. Dropping it aborts the worker, so
/// stopping the agent stops its workers without touching their containers.
struct Handle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches this node's Pods and runs their workers until dropped; each tick of `relist` starts
/// the watch over with a full list (so Pods deleted meanwhile stop and their sandboxes go).
pub async fn run(ctx: Arc<Ctx>, mut relist: crate::lease::Reconnects) -> Result<(), PodError> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher::watcher(api.clone(), cfg.clone()).boxed();
    let mut pods = Manager {
        ctx: ctx.clone(),
        workers: HashMap::new(),
        listing: HashSet::new(),
        orphan_check: None,
    };
    let every = ctx.config.orphan_check;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => pods.handle(event),
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error (retrying)"),
                None => return Err(PodError::WatchEnded),
            },
            _ = tick.tick() => pods.check_orphans(),
            Ok(()) = relist.changed() => {
                tracing::info!("back in touch with the server: listing this node's Pods again");
                stream = watcher::watcher(api.clone(), cfg.clone()).boxed();
            }
        }
    }
}

/// The workers of this node's Pods and what the watch listed.
struct Manager {
    ctx: Arc<Ctx>,
    workers: HashMap<String, Handle>,
    /// UIDs seen in the current (re-)list of the watch.
    listing: HashSet<String>,
    /// The orphan check under way, if any (one at a time).
    orphan_check: Option<JoinHandle<()>>,
}

impl Manager {
    fn handle(&mut self, event: watcher::Event<Pod>) {
        self.workers.retain(|_, h| !h.task.is_finished());
        match event {
            watcher::Event::Init => self.listing.clear(),
            watcher::Event::InitApply(pod) => {
                self.listing.insert(pod.uid().unwrap_or_default());
                dispatch(&self.ctx, &mut self.workers, pod);
            }
            watcher::Event::Apply(pod) => dispatch(&self.ctx, &mut self.workers, pod),
            // The worker cleans up and ends; its handle goes once it has finished.
            watcher::Event::Delete(pod) => {
                if let Some(h) = self.workers.get(&pod.uid().unwrap_or_default()) {
                    let _ = h.pod.send(None);
                }
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was re-listing.
                for (_, h) in self
                    .workers
                    .iter()
                    .filter(|(u, _)| !self.listing.contains(*u))
                {
                    let _ = h.pod.send(None);
                }
                self.check_orphans();
            }
        }
    }

    /// Starts an orphan check unless one is still running. Sandboxes of Pods a worker still
    /// handles (running, or tearing down) are left to it.
    fn check_orphans(&mut self) {
        if self.orphan_check.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.workers.retain(|_, h| !h.task.is_finished());
        let owned = self.workers.keys().cloned().collect();
        self.orphan_check = Some(tokio::spawn(orphans::remove(self.ctx.clone(), owned)));
    }
}

impl Drop for Manager {
    /// A stopped agent removes nothing more.
    fn drop(&mut self) {
        if let Some(t) = &self.orphan_check {
            t.abort();
        }
    }
}

/// Hands a Pod version to its worker, starting one for a new UID.
fn dispatch(ctx: &Arc<Ctx>, workers: &mut HashMap<String, Handle>, pod: Pod) {
    let Some(uid) = pod.uid() else { return };
    let pod = Arc::new(pod);
    if let Some(h) = workers.get(&uid) {
        // A worker that was told its Pod is gone keeps that verdict.
        if h.pod.borrow().is_some() {
            let _ = h.pod.send(Some(pod));
        }
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let task = tokio::spawn(worker::Worker::new(ctx.clone(), pod, rx).run());
    workers.insert(uid, Handle { pod: tx, task });
}

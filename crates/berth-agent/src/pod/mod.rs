//! Pod workers: one per Pod bound to this node.
//!
//! [`run`] watches the Pods with `spec.nodeName=<node>` and keeps one [`worker`] task per Pod UID,
//! handing it every new version of its Pod (or `None` once the Pod is gone). After the first full
//! list it removes sandboxes (and their containers) whose Pod no longer exists, so Pods deleted
//! while the agent was down are cleaned up too. Workers adopt existing sandboxes and containers by
//! their CRI labels, so restarting the agent duplicates nothing.
//!
//! - [`spec`]: Pod spec -> CRI configs;
//! - [`confine`]: host namespaces and seccomp profiles passed through CRI;
//! - [`volumes`]: volume mounts (hostPath honoured, what berth lacks refused);
//! - [`decide`]: the pure decisions (next step, restart policy, stale instances, grace);
//! - [`status`]: the pure status computation;
//! - [`worker`]: the per-Pod loop that drives CRI and writes status and Events.

pub mod confine;
pub mod decide;
pub mod spec;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{AgentConfig, labels};

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

/// Watches this node's Pods and runs their workers until dropped.
pub async fn run(ctx: Arc<Ctx>) -> Result<(), PodError> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut workers: HashMap<String, Handle> = HashMap::new();
    let mut listing: HashSet<String> = HashSet::new();
    let mut orphans_checked = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch error (retrying)");
                continue;
            }
        };
        workers.retain(|_, h| !h.task.is_finished());
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(pod) => {
                listing.insert(pod.uid().unwrap_or_default());
                dispatch(&ctx, &mut workers, pod);
            }
            watcher::Event::Apply(pod) => dispatch(&ctx, &mut workers, pod),
            // The worker cleans up and ends; its handle goes once it has finished.
            watcher::Event::Delete(pod) => {
                if let Some(h) = workers.get(&pod.uid().unwrap_or_default()) {
                    let _ = h.pod.send(None);
                }
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was re-listing.
                for (_, h) in workers.iter().filter(|(u, _)| !listing.contains(*u)) {
                    let _ = h.pod.send(None);
                }
                if !orphans_checked {
                    orphans_checked = true;
                    tokio::spawn(remove_orphans(ctx.clone(), listing.clone()));
                }
            }
        }
    }
    Err(PodError::WatchEnded)
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

/// Removes sandboxes (with their containers) of Pods not in `live` (UIDs of the first full list).
async fn remove_orphans(ctx: Arc<Ctx>, live: HashSet<String>) {
    let mut rt = ctx.cri.runtime.clone();
    let sandboxes = match rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
    {
        Ok(r) => r.into_inner().items,
        Err(e) => {
            tracing::warn!(error = %e, "listing sandboxes for orphan cleanup failed");
            return;
        }
    };
    for sb in sandboxes {
        let Some(uid) = sb.labels.get(labels::POD_UID) else {
            continue;
        };
        if live.contains(uid) {
            continue;
        }
        tracing::info!(sandbox = %sb.id, pod_uid = %uid, "removing the sandbox of a Pod that no longer exists");
        worker::remove_sandbox(&ctx.cri, &sb.id, 2).await;
    }
}

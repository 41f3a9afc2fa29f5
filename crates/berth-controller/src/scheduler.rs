//! The scheduler controller: binds Pods without `spec.nodeName` to a fitting node through the
//! `pods/binding` subresource, or marks them `PodScheduled=False` with a FailedScheduling Event.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::ControllerOptions;
use crate::fit::{self, Decision};

/// How often an unschedulable Pod is tried again even when no node changed (Pods that free
/// resources elsewhere do not trigger it directly).
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(5);

/// Errors of one scheduling attempt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The Pod lacks a namespace (the API server always sets it).
    #[error("pod without namespace")]
    MissingMeta,
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    opts: ControllerOptions,
    /// One decision at a time, each on fresh lists, so two Pods never take the same room.
    lock: Mutex<()>,
}

/// Runs the scheduler until the future is dropped.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), Error> {
    let reporter = Reporter {
        controller: opts.reporter.clone(),
        instance: opts.instance.clone(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(pods, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        client,
        recorder,
        opts,
        lock: Mutex::new(()),
    });
    controller
        // Any node change may make room: retry every pending Pod.
        .watches(nodes, watcher::Config::default(), move |_node: Node| {
            store
                .state()
                .into_iter()
                .filter(|p| pending(p))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move { crate::outcome::log("scheduler", r, Error::is_not_found) })
        .await;
    Ok(())
}

impl Error {
    /// Whether the API said the object is gone (the Pod was deleted during the reconcile).
    fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(e) if crate::outcome::is_not_found(e))
    }
}

fn error_policy(_pod: Arc<Pod>, err: &Error, ctx: Arc<Ctx>) -> Action {
    if !err.is_not_found() {
        warn!(error = %err, "scheduling error; retrying");
    }
    Action::requeue(ctx.opts.retry_after)
}

/// Whether the Pod waits for a node: unbound, not terminating, not finished.
fn pending(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| s.node_name.is_none())
        && pod.meta().deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !pending(&pod) {
        return Ok(Action::await_change());
    }
    let ns = pod.namespace().ok_or(Error::MissingMeta)?;
    let name = pod.name_any();
    let _guard = ctx.lock.lock().await;
    let pods_ns: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // The cached copy may be stale: someone may have bound or deleted it meanwhile.
    let Some(fresh) = pods_ns.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if !pending(&fresh) {
        return Ok(Action::await_change());
    }
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    // Without nodes the answer does not depend on the Pods: spare the API server the list.
    let all = if nodes.is_empty() {
        Vec::new()
    } else {
        Api::<Pod>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await?
            .items
    };
    match fit::schedule(&fresh, &nodes, &all) {
        Decision::Bind(node) => {
            bind(&pods_ns, &name, &node).await?;
            info!(pod = %name, namespace = %ns, node = %node, "bound pod");
            Ok(Action::await_change())
        }
        Decision::Unschedulable(message) => {
            mark_unschedulable(&ctx, &pods_ns, &fresh, &message).await?;
            Ok(Action::requeue(UNSCHEDULABLE_RETRY))
        }
    }
}

async fn bind(pods: &Api<Pod>, name: &str, node: &str) -> Result<(), Error> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Sets `PodScheduled=False` and records a FailedScheduling Event, once per distinct message.
async fn mark_unschedulable(
    ctx: &Ctx,
    pods: &Api<Pod>,
    pod: &Pod,
    message: &str,
) -> Result<(), Error> {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let known = conditions.iter().any(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(message)
    });
    if known {
        return Ok(());
    }
    let mut next: Vec<PodCondition> = conditions
        .into_iter()
        .filter(|c| c.type_ != "PodScheduled")
        .collect();
    next.push(PodCondition {
        type_: "PodScheduled".to_string(),
        status: "False".to_string(),
        reason: Some("Unschedulable".to_string()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        ..PodCondition::default()
    });
    let patch = json!({"status": {"conditions": next}});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let event = Event {
        type_: EventType::Warning,
        reason: "FailedScheduling".to_string(),
        note: Some(message.to_string()),
        action: "Scheduling".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        // The condition already tells the story; a lost Event is not worth a retry loop.
        warn!(error = %e, "could not record FailedScheduling event");
    }
    info!(pod = %pod.name_any(), message, "pod unschedulable");
    Ok(())
}

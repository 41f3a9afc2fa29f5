//! The ModelService controller: keeps `replicas` Pods of the current template, rolls template
//! changes within maxSurge / maxUnavailable gated on Pod readiness, and writes the status.

use std::sync::Arc;

use berth_api::labels::TEMPLATE_HASH_LABEL;
use berth_api::{ModelService, ModelServiceStatus};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::ControllerOptions;
use crate::rollout::{self, Bounds, Counts};
use crate::status::{self, Observed};
use crate::template::PodTemplate;

/// Errors of one ModelService reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a namespace or name (the API server always sets them).
    #[error("ModelService without namespace or name")]
    MissingMeta,
    /// The rolling-update bounds are invalid.
    #[error(transparent)]
    Bound(#[from] rollout::BoundError),
}

struct Ctx {
    client: kube::Client,
    opts: ControllerOptions,
}

/// Runs the ModelService controller until the future is dropped.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), Error> {
    let services: Api<ModelService> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client, opts });
    Controller::new(services, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move { crate::outcome::log("modelservice", r, Error::is_not_found) })
        .await;
    Ok(())
}

impl Error {
    /// Whether the API said the object is gone (it was deleted during the reconcile).
    fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(e) if crate::outcome::is_not_found(e))
    }
}

fn error_policy(_ms: Arc<ModelService>, err: &Error, ctx: Arc<Ctx>) -> Action {
    if !err.is_not_found() {
        warn!(error = %err, "modelservice reconcile error; retrying");
    }
    Action::requeue(ctx.opts.retry_after)
}

/// A Pod of the service, classified.
struct Member {
    pod: Pod,
    current: bool,
    ready: bool,
}

async fn reconcile(ms: Arc<ModelService>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ms.namespace().ok_or(Error::MissingMeta)?;
    let name = ms.meta().name.clone().ok_or(Error::MissingMeta)?;
    if ms.meta().deletion_timestamp.is_some() {
        // Garbage collection of the owned Pods is the API server's job.
        return Ok(Action::await_change());
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let template = PodTemplate::from_spec(&name, &ms.spec);
    let hash = template.hash();
    let members = owned_pods(&pods, &ms, &name, &hash).await?;
    let (members, failed) = members
        .into_iter()
        .partition::<Vec<_>, _>(|m| !is_finished(&m.pod));
    for m in &failed {
        delete(&pods, &m.pod, "finished").await?;
    }
    let replicas = ms.spec.replicas;
    let bounds = Bounds::resolve(replicas, &ms.spec.max_surge(), &ms.spec.max_unavailable())?;
    let counts = count(&members);
    let plan = rollout::plan(replicas, bounds, counts);
    for _ in 0..plan.create_new {
        create(&pods, &ms, &name, &template, &hash).await?;
    }
    let victims = pick(&members, true, plan.delete_new, |_| true)
        .chain(pick(&members, false, plan.delete_old_unready, |m| !m.ready))
        .chain(pick(&members, false, plan.delete_old_ready, |m| m.ready));
    let mut deleted = Vec::new();
    for m in victims {
        delete(&pods, &m.pod, "scale down or rollout").await?;
        deleted.push(m.pod.name_any());
    }
    let remaining: Vec<&Member> = members
        .iter()
        .filter(|m| !deleted.contains(&m.pod.name_any()))
        .collect();
    let observed = Observed {
        generation: ms.meta().generation,
        desired: replicas,
        replicas: remaining.len() as i32 + plan.create_new,
        ready: remaining.iter().filter(|m| m.ready).count() as i32,
        updated: remaining.iter().filter(|m| m.current).count() as i32 + plan.create_new,
        updated_ready: remaining.iter().filter(|m| m.current && m.ready).count() as i32,
        max_unavailable: bounds.max_unavailable,
        progress_deadline_seconds: ms.spec.progress_deadline_seconds(),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = write_status(&ctx.client, &ns, &name, &ms, observed, now.clone()).await?;
    // A stalled rollout changes nothing that would wake the controller: look again when its
    // progress deadline would pass.
    Ok(
        match status::deadline_in(&next, observed.progress_deadline_seconds, &now) {
            Some(wait) => Action::requeue(wait),
            None => Action::await_change(),
        },
    )
}

/// The service's non-terminating Pods that it controls.
async fn owned_pods(
    pods: &Api<Pod>,
    ms: &ModelService,
    name: &str,
    hash: &str,
) -> Result<Vec<Member>, Error> {
    let lp = ListParams::default().labels(&status::selector(name));
    let uid = ms.meta().uid.clone();
    let list = pods.list(&lp).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.meta().deletion_timestamp.is_none())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .map(|pod| Member {
            current: pod.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) == Some(hash),
            ready: is_ready(&pod),
            pod,
        })
        .collect())
}

fn count(members: &[Member]) -> Counts {
    let n = |f: &dyn Fn(&Member) -> bool| members.iter().filter(|m| f(m)).count() as i32;
    Counts {
        new: n(&|m| m.current),
        new_ready: n(&|m| m.current && m.ready),
        old: n(&|m| !m.current),
        old_ready: n(&|m| !m.current && m.ready),
    }
}

/// Up to `k` Pods of one template generation matching `f`, the least useful first: not Ready,
/// then unscheduled, then the newest.
fn pick(
    members: &[Member],
    current: bool,
    k: i32,
    f: impl Fn(&Member) -> bool,
) -> impl Iterator<Item = &Member> {
    let mut chosen: Vec<&Member> = members
        .iter()
        .filter(|m| m.current == current && f(m))
        .collect();
    chosen.sort_by_key(|m| {
        let scheduled = m.pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
        let created = m.pod.meta().creation_timestamp.clone();
        (m.ready, scheduled, std::cmp::Reverse(created))
    });
    chosen.into_iter().take(usize::try_from(k).unwrap_or(0))
}

/// Whether the Pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the Pod has ended (Failed or Succeeded) and must be replaced.
fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

async fn create(
    pods: &Api<Pod>,
    ms: &ModelService,
    name: &str,
    t: &PodTemplate,
    hash: &str,
) -> Result<(), Error> {
    let mut labels = t.labels.clone();
    labels.insert(TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-{hash}-")),
            labels: Some(labels),
            owner_references: owner_ref(ms).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(t.spec.clone()),
        status: None,
    };
    let created = pods.create(&PostParams::default(), &pod).await?;
    info!(modelservice = name, pod = %created.name_any(), "created pod");
    Ok(())
}

/// The controller reference to `ms`; blockOwnerDeletion so foreground deletion of the service
/// waits for its Pods.
fn owner_ref(ms: &ModelService) -> Option<OwnerReference> {
    let mut o = ms.controller_owner_ref(&())?;
    o.block_owner_deletion = Some(true);
    Some(o)
}

async fn delete(pods: &Api<Pod>, pod: &Pod, why: &str) -> Result<(), Error> {
    let name = pod.name_any();
    match pods.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(pod = %name, why, "deleted pod");
            Ok(())
        }
        // Someone else (GC, a user) was faster: the goal is met.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ms: &ModelService,
    o: Observed,
    now: Time,
) -> Result<ModelServiceStatus, Error> {
    let next = status::compute(name, o, ms.status.as_ref(), now);
    if ms.status.as_ref() == Some(&next) {
        return Ok(next);
    }
    let api: Api<ModelService> = Api::namespaced(client.clone(), ns);
    let patch = json!({ "status": next });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(next)
}

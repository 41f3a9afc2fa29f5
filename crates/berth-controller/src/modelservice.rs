//! The ModelService controller: keeps `replicas` Pods of the current template, rolls template
//! changes within maxSurge / maxUnavailable gated on Pod readiness, and writes the status.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_api::labels::TEMPLATE_HASH_LABEL;
use berth_api::{ModelService, ModelServiceStatus};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::ControllerOptions;
use crate::rollout::{self, Bounds, Counts, Plan};
use crate::slowstart::{self, Batches, Owner, Verdict};
use crate::status::{self, Observed};
use crate::template::PodTemplate;

/// Errors of one ModelService reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The API server refused to create a Pod (e.g. a ResourceQuota is exhausted).
    #[error("creating a pod failed: {0}")]
    Create(#[source] kube::Error),
    /// The object lacks a namespace or name (the API server always sets them).
    #[error("ModelService without namespace or name")]
    MissingMeta,
    /// The rolling-update bounds are invalid.
    #[error(transparent)]
    Bound(#[from] rollout::BoundError),
}

/// How soon a reconcile that stopped early (more than a burst to do, or a changed spec) goes on.
const RESUME_AFTER: Duration = Duration::from_millis(200);

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    opts: ControllerOptions,
}

/// Runs the ModelService controller until the future is dropped.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), Error> {
    let services: Api<ModelService> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let reporter = Reporter {
        controller: opts.reporter.clone(),
        instance: opts.instance.clone(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Ctx {
        client,
        recorder,
        opts,
    });
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
        delete_named(&pods, &m.pod.name_any(), "finished").await?;
    }
    let replicas = ms.spec.replicas;
    let bounds = Bounds::resolve(replicas, &ms.spec.max_surge(), &ms.spec.max_unavailable())?;
    let plan = rollout::plan(replicas, bounds, count(&members));
    let services: Api<ModelService> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Watched {
        api: &services,
        name: &name,
        planned: owner_of(&ms),
    };
    let applied = match apply(&owner, &pods, &ms, &members, plan, &template, &hash).await? {
        Step::Applied(a) => a,
        Step::Stopped(action) => return Ok(action),
    };
    let remaining: Vec<&Member> = members
        .iter()
        .filter(|m| !applied.deleted.contains(&m.pod.name_any()))
        .collect();
    let observed = Observed {
        generation: ms.meta().generation,
        desired: replicas,
        replicas: remaining.len() as i32 + applied.created,
        ready: remaining.iter().filter(|m| m.ready).count() as i32,
        updated: remaining.iter().filter(|m| m.current).count() as i32 + applied.created,
        updated_ready: remaining.iter().filter(|m| m.current && m.ready).count() as i32,
        max_unavailable: bounds.max_unavailable,
        progress_deadline_seconds: ms.spec.progress_deadline_seconds(),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = write_status(&ctx.client, &ns, &name, &ms, observed, now.clone()).await?;
    if let Some(e) = applied.refused {
        // Once per reconcile: the batches stopped at the first refusal. Retried by error_policy.
        if let Error::Create(why) = &e {
            failed_create(&ctx.recorder, &ms, why).await;
        }
        return Err(e);
    }
    if applied.unfinished {
        // More than one burst to do: go on soon, after other services had their turn.
        return Ok(Action::requeue(RESUME_AFTER));
    }
    // A stalled rollout changes nothing that would wake the controller: look again when its
    // progress deadline would pass.
    Ok(
        match status::deadline_in(&next, observed.progress_deadline_seconds, &now) {
            Some(wait) => Action::requeue(wait),
            None => Action::await_change(),
        },
    )
}

/// What the create and delete batches of one reconcile came to.
struct Applied {
    /// Pods created.
    created: i32,
    /// Names of the Pods deleted.
    deleted: BTreeSet<String>,
    /// Whether the plan was bigger than one burst, so that part of it is left for later.
    unfinished: bool,
    /// Why the API server refused a Pod, which stopped the creations (and skipped deletions).
    refused: Option<Error>,
}

/// How the batches of one reconcile ended.
enum Step {
    /// They ran (maybe only one burst of them): write the status.
    Applied(Applied),
    /// The owner went away or changed meanwhile: end the reconcile with this action.
    Stopped(Action),
}

/// Carries out `plan` in slow-start batches: first the creations, then the deletions.
async fn apply(
    owner: &Watched<'_>,
    pods: &Api<Pod>,
    ms: &ModelService,
    members: &[Member],
    plan: Plan,
    template: &PodTemplate,
    hash: &str,
) -> Result<Step, Error> {
    let want = usize::try_from(plan.create_new).unwrap_or(0);
    let created = owner
        .in_batches(0..want, |_| create(pods, ms, owner.name, template, hash))
        .await?;
    match created.verdict {
        Verdict::Gone => {
            // The garbage collector may have listed the service's Pods before the last batch
            // was stored; those would never be collected, so take them back.
            for pod in &created.last {
                delete_named(pods, pod, "owner deleted while creating").await?;
            }
            return Ok(Step::Stopped(Action::await_change()));
        }
        Verdict::Changed => return Ok(Step::Stopped(Action::requeue(RESUME_AFTER))),
        Verdict::Continue => {}
    }
    if let Some(e) = created.failed {
        // A refused Pod (a ResourceQuota, admission): keep what was created and report; the
        // old Pods stay too, so a stalled rollout never takes away more than it added.
        return Ok(Step::Applied(Applied {
            created: i32::try_from(created.done.len()).unwrap_or(i32::MAX),
            deleted: BTreeSet::new(),
            unfinished: false,
            refused: Some(e),
        }));
    }
    let victims: Vec<&Member> = pick(members, true, plan.delete_new, |_| true)
        .chain(pick(members, false, plan.delete_old_unready, |m| !m.ready))
        .chain(pick(members, false, plan.delete_old_ready, |m| m.ready))
        .collect();
    let to_delete = victims.len();
    let deleted = owner
        .in_batches(victims.into_iter(), |m| {
            let pod = m.pod.metadata.name.as_deref().unwrap_or_default();
            delete_named(pods, pod, "scale down or rollout")
        })
        .await?;
    if let Some(e) = deleted.failed {
        return Err(e);
    }
    match deleted.verdict {
        // The garbage collector takes the rest.
        Verdict::Gone => Ok(Step::Stopped(Action::await_change())),
        Verdict::Changed => Ok(Step::Stopped(Action::requeue(RESUME_AFTER))),
        Verdict::Continue => Ok(Step::Applied(Applied {
            created: i32::try_from(created.done.len()).unwrap_or(i32::MAX),
            unfinished: created.done.len() < want || deleted.done.len() < to_delete,
            deleted: deleted.done.into_iter().collect(),
            refused: None,
        })),
    }
}

/// The owning ModelService as the reconcile planned for it, re-read between batches.
struct Watched<'a> {
    api: &'a Api<ModelService>,
    name: &'a str,
    planned: Owner,
}

/// The end of a run of batches.
struct Run {
    /// Names of the Pods acted on.
    done: Vec<String>,
    /// Names of the Pods of the last batch.
    last: Vec<String>,
    /// What the last look at the owner said.
    verdict: Verdict,
    /// The first error of the batch that ended the run, if one did.
    failed: Option<Error>,
}

impl Watched<'_> {
    /// Runs `op` on `items` in slow-start batches (a batch's operations concurrently), looking
    /// at the owner after each batch. Stops after a batch that had an error (the first error is
    /// kept in [`Run::failed`]), when the owner is gone or changed, or after one burst. Only the
    /// look at the owner fails the whole run.
    async fn in_batches<T, F, Fut>(
        &self,
        items: impl ExactSizeIterator<Item = T>,
        op: F,
    ) -> Result<Run, Error>
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<String, Error>>,
    {
        let mut items = items;
        let mut run = Run {
            done: Vec::new(),
            last: Vec::new(),
            verdict: Verdict::Continue,
            failed: None,
        };
        for size in Batches::new(items.len()) {
            let results = join_all(items.by_ref().take(size).map(&op)).await;
            let (ok, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
            run.last = ok.into_iter().filter_map(Result::ok).collect();
            run.done.extend(run.last.iter().cloned());
            if let Some(Err(e)) = failed.into_iter().next() {
                run.failed = Some(e);
                break;
            }
            let now = self.api.get_opt(self.name).await?;
            run.verdict = slowstart::verdict(&self.planned, now.as_ref().map(owner_of).as_ref());
            if run.verdict != Verdict::Continue {
                break;
            }
        }
        Ok(run)
    }
}

/// What the batches watch of a ModelService.
fn owner_of(ms: &ModelService) -> Owner {
    Owner {
        uid: ms.meta().uid.clone(),
        generation: ms.meta().generation,
        replicas: ms.spec.replicas,
        deleting: ms.meta().deletion_timestamp.is_some(),
    }
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
) -> Result<String, Error> {
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
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .map_err(Error::Create)?;
    info!(modelservice = name, pod = %created.name_any(), "created pod");
    Ok(created.name_any())
}

/// Records a FailedCreate Event on the service with the API server's words, as the ReplicaSet
/// controller does (`Error creating: pods "x" is forbidden: exceeded quota: ...`). Called once
/// per reconcile: the batches stop at the first refusal.
async fn failed_create(recorder: &Recorder, ms: &ModelService, e: &kube::Error) {
    let why = match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "FailedCreate".to_string(),
        note: Some(format!("Error creating: {why}")),
        action: "Create".to_string(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &ms.object_ref(&())).await {
        // The reconcile error is logged and retried anyway; a lost Event is not worth more.
        warn!(error = %err, "could not record FailedCreate event");
    }
}

/// The controller reference to `ms`; blockOwnerDeletion so foreground deletion of the service
/// waits for its Pods.
fn owner_ref(ms: &ModelService) -> Option<OwnerReference> {
    let mut o = ms.controller_owner_ref(&())?;
    o.block_owner_deletion = Some(true);
    Some(o)
}

/// Deletes Pod `name`; returns the name.
async fn delete_named(pods: &Api<Pod>, name: &str, why: &str) -> Result<String, Error> {
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(pod = %name, why, "deleted pod");
            Ok(name.to_string())
        }
        // Someone else (GC, a user) was faster: the goal is met.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(name.to_string()),
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

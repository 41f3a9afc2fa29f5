//! The controllers against a real `berth server`: the tests play the node agent (a Ready Node
//! with capacity, Pods flipped to Ready, terminating Pods finalized) while the ModelService
//! controller and the scheduler run in-process.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_api::labels::{MODELSERVICE_LABEL, TEMPLATE_HASH_LABEL};
use berth_api::{ModelService, ModelServiceSpec};
use berth_controller::ControllerOptions;
use berth_e2e::fake::register_node;
use berth_e2e::server::TestServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

const NS: &str = "default";

/// A server with the controllers running in a task that ends with the fixture.
struct Fixture {
    _server: TestServer,
    client: kube::Client,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

async fn setup() -> Fixture {
    setup_with(ControllerOptions::default()).await
}

async fn setup_with(opts: ControllerOptions) -> Fixture {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let c = client.clone();
    let controllers = tokio::spawn(async move {
        if let Err(e) = berth_controller::run(c, opts).await {
            eprintln!("controllers stopped: {e}");
        }
    });
    Fixture {
        _server: server,
        client,
        controllers,
    }
}

impl Fixture {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn services(&self) -> Api<ModelService> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Registers a Ready node with the given allocatable cpu and memory, as an agent would.
    async fn node(&self, name: &str, cpu: &str, memory: &str) {
        let labels = json!({"kubernetes.io/hostname": name});
        let resources = json!({"cpu": cpu, "memory": memory, "pods": "110"});
        register_node(&self.client, name, labels, resources).await;
    }

    async fn create_ms(&self, name: &str, replicas: i32, memory: &str) -> ModelService {
        let spec: ModelServiceSpec = serde_json::from_value(
            json!({"image":"localhost:5000/model:v1","replicas":replicas,
            "env":[{"name":"MODE","value":"one"}],
            "ports":[{"containerPort":8080,"name":"http"}],
            "resources":{"requests":{"cpu":"100m","memory":memory}}}),
        )
        .unwrap();
        let ms = ModelService::new(name, spec);
        self.services()
            .create(&PostParams::default(), &ms)
            .await
            .unwrap()
    }

    /// The live (not terminating) Pods of a service; terminating ones are finalized first, as
    /// the agent would once their containers stopped.
    async fn live_pods(&self, ms: &str) -> Vec<Pod> {
        let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}={ms}"));
        let mut live = Vec::new();
        for p in self.pods().list(&lp).await.unwrap().items {
            if p.meta().deletion_timestamp.is_some() {
                let _ = self
                    .pods()
                    .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
            } else {
                live.push(p);
            }
        }
        live
    }

    /// Marks a Pod Running and Ready through the status subresource, as the agent would.
    async fn make_ready(&self, pod: &str) {
        let status = json!({"status":{"phase":"Running","conditions":[
            {"type":"PodScheduled","status":"True"},{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}});
        self.pods()
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// Waits until the service has `n` live Pods, all bound; flips them Ready when `ready`.
    async fn converge(&self, ms: &str, n: usize, ready: bool) -> Vec<Pod> {
        let pods = eventually(&format!("{n} bound pods of {ms}"), || async {
            let pods = self.live_pods(ms).await;
            (pods.len() == n && pods.iter().all(|p| node_of(p).is_some())).then_some(pods)
        })
        .await;
        if ready {
            for p in pods.iter().filter(|p| !is_ready(p)) {
                self.make_ready(&p.name_any()).await;
            }
        }
        pods
    }

    async fn status_ready(&self, ms: &str, n: i32) -> ModelService {
        eventually(&format!("{ms} status {n} ready"), || async {
            let m = self.services().get(ms).await.unwrap();
            let s = m.status.clone()?;
            (s.ready_replicas == Some(n)
                && s.replicas == Some(n)
                && s.updated_replicas == Some(n)
                && s.observed_generation == m.meta().generation)
                .then_some(m)
        })
        .await
    }
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn is_ready(p: &Pod) -> bool {
    berth_controller::modelservice::is_ready(p)
}

fn condition<'a>(ms: &'a ModelService, t: &str) -> Option<&'a berth_api::ModelServiceCondition> {
    ms.status.as_ref()?.conditions.iter().find(|c| c.type_ == t)
}

async fn scale(f: &Fixture, ms: &str, replicas: i32) {
    let patch = json!({"spec":{"replicas":replicas}});
    f.services()
        .patch_scale(ms, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn replicas_are_created_bound_replaced_scaled_and_collected() {
    let f = setup().await;
    f.node("node-1", "8", "16Gi").await;
    let ms = f.create_ms("churn", 3, "256Mi").await;

    let pods = f.converge("churn", 3, true).await;
    let uid = ms.meta().uid.clone().unwrap();
    for p in &pods {
        assert_eq!(node_of(p), Some("node-1"));
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ModelService", "churn", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let hash = p.labels().get(TEMPLATE_HASH_LABEL).unwrap();
        assert!(
            p.name_any().starts_with(&format!("churn-{hash}-")),
            "{}",
            p.name_any()
        );
        assert_eq!(p.name_any().len(), format!("churn-{hash}-").len() + 5);
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("localhost:5000/model:v1"));
        assert_eq!(
            p.spec.as_ref().unwrap().restart_policy.as_deref(),
            Some("Always")
        );
    }
    let ms = f.status_ready("churn", 3).await;
    let available = condition(&ms, "Available").unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    assert_eq!(
        condition(&ms, "Progressing").unwrap().reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        ms.status.as_ref().unwrap().selector.as_deref(),
        Some("berth.dev/modelservice=churn")
    );

    // A deleted Pod is replaced.
    let victim = pods[0].name_any();
    f.pods()
        .delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let after = eventually("a replacement pod", || async {
        let live = f.live_pods("churn").await;
        (live.len() == 3 && live.iter().all(|p| p.name_any() != victim)).then_some(live)
    })
    .await;
    assert!(after.iter().all(|p| p.name_any() != victim));

    // A Pod that failed (as the agent reports it) is replaced too.
    let failed = after[0].name_any();
    let status =
        json!({"status":{"phase":"Failed","conditions":[{"type":"Ready","status":"False"}]}});
    f.pods()
        .patch_status(&failed, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    eventually("failed pod replaced", || async {
        let live = f.live_pods("churn").await;
        let gone = f
            .pods()
            .get_opt(&failed)
            .await
            .unwrap()
            .is_none_or(|p| p.meta().deletion_timestamp.is_some());
        (gone && live.len() == 3 && live.iter().all(|p| p.name_any() != failed)).then_some(())
    })
    .await;
    f.converge("churn", 3, true).await;
    f.status_ready("churn", 3).await;

    // Scale through the scale subresource.
    scale(&f, "churn", 5).await;
    f.converge("churn", 5, true).await;
    f.status_ready("churn", 5).await;
    scale(&f, "churn", 1).await;
    f.converge("churn", 1, true).await;
    f.status_ready("churn", 1).await;

    // Deleting the service lets the API server's GC take its Pods.
    f.services()
        .delete("churn", &DeleteParams::default())
        .await
        .unwrap();
    eventually("pods collected", || async {
        f.live_pods("churn").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_template_change_rolls_without_dropping_ready_pods() {
    let f = setup().await;
    f.node("node-1", "8", "16Gi").await;
    f.create_ms("roll", 3, "128Mi").await;
    let old: BTreeSet<String> = f
        .converge("roll", 3, true)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    f.status_ready("roll", 3).await;

    let patch = json!({"spec":{"env":[{"name":"MODE","value":"two"}]}});
    f.services()
        .patch("roll", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    // Defaults for 3 replicas: maxSurge 1, maxUnavailable 0 -> never fewer than 3 Ready Pods.
    let mut flipped = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = f.live_pods("roll").await;
        let ready = live.iter().filter(|p| is_ready(p)).count();
        assert!(
            ready >= 3,
            "only {ready} ready pods during the rollout: {:?}",
            names(&live)
        );
        assert!(
            live.len() <= 4,
            "more than replicas + maxSurge pods: {:?}",
            names(&live)
        );
        let fresh: Vec<&Pod> = live
            .iter()
            .filter(|p| !old.contains(&p.name_any()))
            .collect();
        if live.len() == 3 && fresh.len() == 3 && fresh.iter().all(|p| is_ready(p)) {
            break;
        }
        // Play the agent: one new Pod becomes Ready at a time.
        if let Some(p) = fresh.iter().find(|p| node_of(p).is_some() && !is_ready(p)) {
            f.make_ready(&p.name_any()).await;
            flipped += 1;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not finish: {:?}",
            names(&live)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(flipped, 3);
    let ms = f.status_ready("roll", 3).await;
    assert_eq!(
        condition(&ms, "Progressing").unwrap().reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let live = f.live_pods("roll").await;
    let hashes: BTreeSet<&String> = live
        .iter()
        .filter_map(|p| p.labels().get(TEMPLATE_HASH_LABEL))
        .collect();
    assert_eq!(hashes.len(), 1);
    let env = live[0].spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(env[0].value.as_deref(), Some("two"));
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            format!(
                "{}{}",
                p.name_any(),
                if is_ready(p) { "(ready)" } else { "" }
            )
        })
        .collect()
}

#[tokio::test]
async fn pods_that_fit_nowhere_stay_pending_with_a_reason() {
    let f = setup().await;
    f.node("small-node", "4", "1Gi").await;
    f.create_ms("huge", 2, "64Gi").await;
    f.create_ms("tiny", 1, "100Mi").await;

    // The one that fits is unaffected.
    let tiny = f.converge("tiny", 1, true).await;
    assert_eq!(node_of(&tiny[0]), Some("small-node"));
    f.status_ready("tiny", 1).await;

    let huge = eventually("unschedulable condition", || async {
        let pods = f.live_pods("huge").await;
        let marked = pods.iter().all(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled"
                            && c.status == "False"
                            && c.reason.as_deref() == Some("Unschedulable")
                            && c.message.as_deref()
                                == Some("0/1 nodes are available: 1 Insufficient memory.")
                    })
                })
        });
        (pods.len() == 2 && marked).then_some(pods)
    })
    .await;
    assert!(huge.iter().all(|p| node_of(p).is_none()));

    let events: Api<Event> = Api::namespaced(f.client.clone(), NS);
    let name = huge[0].name_any();
    eventually("FailedScheduling event", || async {
        berth_e2e::events::recorded(&events, "FailedScheduling", &name, "Insufficient memory")
            .await
            .then_some(())
    })
    .await;

    // Still pending, and the service reports it is not available.
    let ms = f.services().get("huge").await.unwrap();
    assert!(
        f.live_pods("huge")
            .await
            .iter()
            .all(|p| node_of(p).is_none())
    );
    assert_eq!(
        condition(&ms, "Available").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(f.live_pods("tiny").await.len(), 1);

    // A node with room appears: the pending Pods are retried and bound there.
    f.node("big-node", "16", "256Gi").await;
    let bound = f.converge("huge", 2, false).await;
    assert!(bound.iter().all(|p| node_of(p) == Some("big-node")));
    assert!(bound.iter().all(|p| {
        let conds = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conds
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    }));
}

/// Renews (or creates) the node's heartbeat Lease now, as the agent does every second.
async fn heartbeat(client: &kube::Client, node: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease: Lease = serde_json::from_value(
        json!({"metadata":{"name":node,"namespace":"kube-node-lease"},
        "spec":{"holderIdentity":node,"leaseDurationSeconds":5,"renewTime":now}}),
    )
    .unwrap();
    let pp = PatchParams::apply("test-agent").force();
    leases
        .patch(node, &pp, &Patch::Apply(&lease))
        .await
        .unwrap();
}

fn ready_of(n: &Node) -> Option<String> {
    let conds = n.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// The effects of the node's `node.kubernetes.io/unreachable` taints, sorted.
fn unreachable_effects(n: &Node) -> Vec<String> {
    let taints = n.spec.as_ref().and_then(|s| s.taints.clone());
    let mut effects: Vec<String> = taints
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key == "node.kubernetes.io/unreachable")
        .map(|t| t.effect)
        .collect();
    effects.sort();
    effects
}

/// At the default grace period: a node whose Lease stops renewing turns Ready=Unknown and is
/// tainted unreachable (NoSchedule and NoExecute), its Pods are replaced on the live node and
/// none lands back on it; once it renews again and posts Ready=True (as its agent does when it
/// sees its Node not Ready), the taints go and it takes Pods again.
#[tokio::test]
async fn pods_of_a_silent_node_move_to_a_live_one() {
    let f = setup().await;
    f.node("alive", "8", "16Gi").await;
    f.node("doomed", "8", "16Gi").await;
    // Both agents beat until "doomed" falls silent.
    let silent = Arc::new(AtomicBool::new(false));
    let (client, flag) = (f.client.clone(), silent.clone());
    let beats = tokio::spawn(async move {
        loop {
            heartbeat(&client, "alive").await;
            if !flag.load(Ordering::SeqCst) {
                heartbeat(&client, "doomed").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    f.create_ms("spread", 2, "128Mi").await;
    let pods = f.converge("spread", 2, true).await;
    // Replicas are spread over both nodes.
    let used: BTreeSet<&str> = pods.iter().filter_map(node_of).collect();
    assert_eq!(used, BTreeSet::from(["alive", "doomed"]));

    silent.store(true, Ordering::SeqCst);
    let nodes: Api<Node> = Api::all(f.client.clone());
    eventually(
        "doomed node Ready=Unknown and tainted unreachable",
        || async {
            let n = nodes.get("doomed").await.unwrap();
            (ready_of(&n).as_deref() == Some("Unknown")
                && unreachable_effects(&n) == ["NoExecute", "NoSchedule"])
            .then_some(())
        },
    )
    .await;
    let pods = eventually("both replicas on the live node", || async {
        let live = f.live_pods("spread").await;
        (live.len() == 2 && live.iter().all(|p| node_of(p) == Some("alive"))).then_some(live)
    })
    .await;
    assert_eq!(pods.len(), 2);
    let alive = nodes.get("alive").await.unwrap();
    assert_eq!(ready_of(&alive).as_deref(), Some("True"));
    assert!(unreachable_effects(&alive).is_empty());

    // Back: the Lease renews, but the taints stay until the node posts Ready=True.
    silent.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        unreachable_effects(&nodes.get("doomed").await.unwrap()).len(),
        2
    );
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "agent is posting ready status"}]}});
    nodes
        .patch_status("doomed", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    eventually("doomed node untainted", || async {
        unreachable_effects(&nodes.get("doomed").await.unwrap())
            .is_empty()
            .then_some(())
    })
    .await;
    // And it takes Pods again: two more replicas spread onto it.
    f.services()
        .patch(
            "spread",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    let pods = f.converge("spread", 4, false).await;
    assert_eq!(
        pods.iter().filter(|p| node_of(p) == Some("doomed")).count(),
        2
    );
    beats.abort();
}

/// `berth server` runs the controllers and the scheduler itself (no in-process controllers here).
#[tokio::test]
async fn berth_server_runs_the_controllers_itself() {
    let server = TestServer::start_with_controllers(&[]).await.unwrap();
    let client = server.client().await.unwrap();
    let f = Fixture {
        _server: server,
        client,
        controllers: tokio::spawn(async {}),
    };
    f.node("node-1", "4", "8Gi").await;
    f.create_ms("served", 2, "128Mi").await;
    let bound = eventually("2 pods of `served` bound to node-1", || async {
        let pods = f.live_pods("served").await;
        (pods.len() == 2 && pods.iter().all(|p| node_of(p) == Some("node-1"))).then_some(pods)
    })
    .await;
    assert!(bound.iter().all(|p| {
        p.owner_references()
            .iter()
            .any(|o| o.kind == "ModelService")
    }));
}

#[tokio::test]
async fn nodes_get_distinct_pod_cidrs_from_the_cluster_cidr() {
    let opts = ControllerOptions {
        node_ipam: Some(berth_controller::nodeipam::NodeIpamOptions {
            cluster_cidr: "10.66.0.0/16".parse().unwrap(),
            node_mask: 24,
        }),
        ..ControllerOptions::default()
    };
    let f = setup_with(opts).await;
    f.node("a", "2", "4Gi").await;
    f.node("b", "2", "4Gi").await;
    let nodes: Api<Node> = Api::all(f.client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let cidrs = loop {
        let list = nodes.list(&ListParams::default()).await.unwrap();
        let cidrs: Vec<String> = list
            .items
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        if cidrs.len() == 2 || Instant::now() > deadline {
            break cidrs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let distinct: BTreeSet<&String> = cidrs.iter().collect();
    assert_eq!(distinct.len(), 2, "two nodes, two ranges: {cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.66.") && c.ends_with("/24")),
        "{cidrs:?}"
    );
    // A node that already has a range keeps it.
    let a = nodes.get("a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        nodes.get("a").await.unwrap().spec.unwrap().pod_cidr,
        a.spec.unwrap().pod_cidr
    );
}

/// A rollout that stops moving (here: Pods that never become Ready) turns `Progressing` False
/// with ProgressDeadlineExceeded once `progressDeadlineSeconds` pass, with no other event to wake
/// the controller; a Pod becoming Ready makes it progress again.
#[tokio::test]
async fn a_stalled_rollout_exceeds_its_progress_deadline() {
    let f = setup().await;
    f.node("n1", "4", "8Gi").await;
    let spec: ModelServiceSpec = serde_json::from_value(json!({
        "image": "localhost:5000/model:v1", "replicas": 2, "progressDeadlineSeconds": 2,
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}))
    .unwrap();
    f.services()
        .create(&PostParams::default(), &ModelService::new("stuck", spec))
        .await
        .unwrap();
    let pods = f.converge("stuck", 2, false).await;
    let progressing = |m: &ModelService| {
        condition(m, "Progressing")
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
    };
    let timed_out = eventually("Progressing=False ProgressDeadlineExceeded", || async {
        let m = f.services().get("stuck").await.unwrap();
        (progressing(&m)? == ("False".into(), "ProgressDeadlineExceeded".into())).then_some(m)
    })
    .await;
    let message = condition(&timed_out, "Progressing").and_then(|c| c.message.clone());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("has timed out progressing")),
        "{message:?}"
    );
    f.make_ready(&pods[0].name_any()).await;
    eventually(
        "Progressing=True again after a Pod became ready",
        || async {
            let m = f.services().get("stuck").await.unwrap();
            (progressing(&m)? == ("True".into(), "ReplicaSetUpdated".into())).then_some(())
        },
    )
    .await;
}

//! Scheduling across nodes against a real `berth server` running its own controllers: replicas
//! spread evenly, nodeSelector and taints with tolerations are honoured (FailedScheduling in
//! Kubernetes' words), and the real `kubectl cordon`, `drain` and `uncordon` take a node out for
//! maintenance without the service ever dropping below `replicas - maxUnavailable` Ready Pods.
//! No agent runs: the test registers Nodes and plays the agents' part itself (marks bound Pods
//! Running and Ready, finishes graceful deletions).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use berth_api::labels::MODELSERVICE_LABEL;
use berth_api::{ModelService, ModelServiceSpec};
use berth_e2e::fake::register_node;
use berth_e2e::kubectl;
use berth_e2e::server::TestServer;
use berth_e2e::wait::eventually;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "default";

/// Registers a Ready node labelled `zone=<name>`, as an agent would.
async fn node(client: &kube::Client, name: &str) {
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    register_node(client, name, json!({"zone": name}), resources).await;
}

async fn create_ms(client: &kube::Client, name: &str, spec: serde_json::Value) {
    let mut spec = spec;
    spec["image"] = json!("localhost:5000/model:v1");
    spec["resources"] = json!({"requests": {"cpu": "10m", "memory": "16Mi"}});
    let spec: ModelServiceSpec = serde_json::from_value(spec).unwrap();
    Api::<ModelService>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ModelService::new(name, spec))
        .await
        .unwrap();
}

/// The service's Pods that are not terminating.
async fn live_pods(client: &kube::Client, ms: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}={ms}"));
    let all = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .unwrap()
        .items;
    all.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Live Pods of `ms` per node (bound ones only).
async fn per_node(client: &kube::Client, ms: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in live_pods(client, ms).await {
        if let Some(n) = node_of(&p) {
            *m.entry(n.to_string()).or_default() += 1;
        }
    }
    m
}

/// Plays the agents of every node (unless `paused`): bound Pods become Running and Ready;
/// graceful deletions are finished. Records the fewest Ready Pods of `watched` it ever saw
/// once `watching` is set.
struct FakeAgents {
    paused: Arc<AtomicBool>,
    watching: Arc<AtomicBool>,
    min_ready: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgents {
    fn start(client: kube::Client, watched: &'static str) -> Self {
        let paused = Arc::new(AtomicBool::new(false));
        let watching = Arc::new(AtomicBool::new(false));
        let min_ready = Arc::new(AtomicUsize::new(usize::MAX));
        let (f, w, m) = (paused.clone(), watching.clone(), min_ready.clone());
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, NS);
            loop {
                let all = pods.list(&ListParams::default()).await.unwrap().items;
                if w.load(Ordering::SeqCst) {
                    let n = all
                        .iter()
                        .filter(|p| {
                            p.labels().get(MODELSERVICE_LABEL).map(String::as_str) == Some(watched)
                        })
                        .filter(|p| ready(p))
                        .count();
                    m.fetch_min(n, Ordering::SeqCst);
                }
                for p in all.iter().filter(|_| !f.load(Ordering::SeqCst)) {
                    let name = p.name_any();
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                    } else if node_of(p).is_some() && !ready(p) {
                        let status = json!({"status":{"phase":"Running","conditions":[
                            {"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}]}});
                        let _ = pods
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        FakeAgents {
            paused,
            watching,
            min_ready,
            task,
        }
    }
}

impl Drop for FakeAgents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 6 replicas over 3 equal nodes land 2/2/2; a Pod whose nodeSelector names a tainted node
/// stays Pending with Kubernetes' FailedScheduling message until its service tolerates the taint.
#[tokio::test]
async fn replicas_spread_and_selectors_and_taints_are_honoured() {
    let server = TestServer::start_with_controllers(&[]).await.unwrap();
    let client = server.client().await.unwrap();
    for n in ["n1", "n2", "n3"] {
        node(&client, n).await;
    }
    create_ms(&client, "spread", json!({"replicas": 6})).await;
    let want = BTreeMap::from([("n1".into(), 2), ("n2".into(), 2), ("n3".into(), 2)]);
    eventually("6 replicas at 2/2/2", Duration::from_secs(60), || async {
        (per_node(&client, "spread").await == want).then_some(())
    })
    .await;

    let taint =
        json!({"spec":{"taints":[{"key":"dedicated","value":"gpu","effect":"NoSchedule"}]}});
    Api::<Node>::all(client.clone())
        .patch("n3", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    create_ms(
        &client,
        "gpu",
        json!({"replicas": 1, "nodeSelector": {"zone": "n3"}}),
    )
    .await;
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector.";
    let pending = eventually("the gpu pod pending", Duration::from_secs(60), || async {
        live_pods(&client, "gpu")
            .await
            .first()
            .map(|p| p.name_any())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually(
        "FailedScheduling event",
        Duration::from_secs(60),
        || async {
            berth_e2e::events::recorded(&events, "FailedScheduling", &pending, message)
                .await
                .then_some(())
        },
    )
    .await;
    assert_eq!(per_node(&client, "gpu").await, BTreeMap::new());

    let tolerate = json!({"spec":{"tolerations":[
        {"key":"dedicated","operator":"Equal","value":"gpu","effect":"NoSchedule"}]}});
    Api::<ModelService>::namespaced(client.clone(), NS)
        .patch("gpu", &PatchParams::default(), &Patch::Merge(&tolerate))
        .await
        .unwrap();
    let on_n3 = BTreeMap::from([("n3".into(), 1)]);
    eventually(
        "the tolerating pod on n3",
        Duration::from_secs(60),
        || async { (per_node(&client, "gpu").await == on_n3).then_some(()) },
    )
    .await;
}

/// A client that reports every answer as the server gave it. kube-rs clients retry 429 by
/// default, up to 15 times with a backoff that grows to minutes: the refused eviction under test
/// would come back only after all of them (what stalled this test for 4 to 8 minutes), and a
/// refusal that turned into a success on retry would pass unseen.
async fn unretried_client(server: &TestServer) -> kube::Client {
    let mut config = server.kube_config().await.unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

/// `kubectl cordon`, `drain` and `uncordon` with a service of 3 replicas, maxUnavailable 1, all
/// on the drained node: evictions go one at a time (a second one is refused with 429), the drain
/// completes as replacements become Ready elsewhere, and the service never has fewer than 2
/// Ready Pods.
// Two threads: kubectl runs blocking while the fake agents go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_a_service_off_a_node_without_dropping_it() {
    let server = TestServer::start_with_controllers(&[]).await.unwrap();
    let client = server.client().await.unwrap();
    let agents = FakeAgents::start(client.clone(), "web");
    node(&client, "n1").await;
    create_ms(
        &client,
        "web",
        json!({"replicas": 3,
        "strategy": {"rollingUpdate": {"maxUnavailable": 1}}}),
    )
    .await;
    eventually("3 ready pods on n1", Duration::from_secs(60), || async {
        let pods = live_pods(&client, "web").await;
        (pods
            .iter()
            .filter(|p| ready(p) && node_of(p) == Some("n1"))
            .count()
            == 3)
            .then_some(())
    })
    .await;
    node(&client, "n2").await;
    node(&client, "n3").await;
    kubectl::ok(&server, &["cordon", "n1"]);
    let n1 = Api::<Node>::all(client.clone()).get("n1").await.unwrap();
    assert_eq!(n1.spec.unwrap().unschedulable, Some(true));

    // Directly through the API: one eviction passes, the next would leave 1 Ready of 3.
    agents.paused.store(true, Ordering::SeqCst);
    agents.watching.store(true, Ordering::SeqCst);
    let pods: Api<Pod> = Api::namespaced(unretried_client(&server).await, NS);
    let names: Vec<String> = live_pods(&client, "web")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    pods.evict(&names[0], &EvictParams::default())
        .await
        .unwrap();
    let refused = pods
        .evict(&names[1], &EvictParams::default())
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 429, "{s:?}");
            assert_eq!(
                s.message,
                "Cannot evict pod as it would violate the pod's disruption budget."
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
    assert!(
        pods.get(&names[1])
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    agents.paused.store(false, Ordering::SeqCst);

    // The replacement avoids the cordoned node.
    eventually(
        "a ready replacement off n1",
        Duration::from_secs(60),
        || async {
            let pods = live_pods(&client, "web").await;
            let off = pods
                .iter()
                .filter(|p| ready(p) && node_of(p) != Some("n1"))
                .count();
            (pods.len() == 3 && off == 1).then_some(())
        },
    )
    .await;

    kubectl::ok(
        &server,
        &[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
        ],
    );
    let placed = per_node(&client, "web").await;
    assert_eq!(placed.get("n1"), None, "{placed:?}");
    assert_eq!(placed.values().sum::<usize>(), 3, "{placed:?}");
    assert!(
        agents.min_ready.load(Ordering::SeqCst) >= 2,
        "the service dropped to {} Ready Pods",
        agents.min_ready.load(Ordering::SeqCst)
    );

    // Uncordoned, n1 takes Pods again: the next replicas go where there are fewest.
    kubectl::ok(&server, &["uncordon", "n1"]);
    let scale = json!({"spec":{"replicas": 5}});
    Api::<ModelService>::namespaced(client.clone(), NS)
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    eventually("replicas back on n1", Duration::from_secs(60), || async {
        per_node(&client, "web")
            .await
            .get("n1")
            .is_some_and(|n| *n >= 1)
            .then_some(())
    })
    .await;
}

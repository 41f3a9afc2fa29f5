//! A runaway replica count against a real `berth server` running its own controllers: the
//! ModelService controller creates Pods in bounded slow-start batches and stops as soon as the
//! service is deleted, and the scheduler leaves Pods beyond a node's `pods` capacity Pending.
//! No agent runs; where a node is needed the test registers one, as an agent would.
#![allow(unused_crate_dependencies, clippy::unwrap_used)] // test crate: unwraps allowed; sees every dev-dependency

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_api::labels::MODELSERVICE_LABEL;
use berth_api::{ModelService, ModelServiceSpec};
use berth_e2e::fake::register_node;
use berth_e2e::server::TestServer;
use berth_e2e::wait::eventually;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const NS: &str = "default";

async fn create_ms(client: &kube::Client, name: &str, replicas: i32) {
    let spec: ModelServiceSpec = serde_json::from_value(json!({
        "image": "localhost:5000/model:v1", "replicas": replicas,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}))
    .unwrap();
    Api::<ModelService>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ModelService::new(name, spec))
        .await
        .unwrap();
}

/// Names of the service's Pods, terminating ones included.
async fn pod_names(client: &kube::Client, ms: &str) -> BTreeSet<String> {
    let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}={ms}"));
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect()
}

/// `replicas: 1000000`, deleted within a second: within 5 s no Pod is being created any more,
/// within 60 s all are gone, and then the server's memory is back within 20 % of where it
/// started (a short `--compaction-interval`, so compaction and the memory release run).
///
/// "Where it started" is a server that has done this kind of work once, on a small scale: a
/// fresh one has not yet filled its bounded caches (the store's page cache alone may take 8 MiB)
/// nor touched the code pages of creating and collecting Pods, and that one-time growth is not
/// what the runaway may leave behind.
#[tokio::test]
async fn a_runaway_service_deleted_at_once_stops_creating_and_is_collected() {
    let server = TestServer::start_with_controllers(&["--compaction-interval", "2s"])
        .await
        .unwrap();
    let client = server.client().await.unwrap();
    // The controllers' caches and watches are set up by the time the first Pod list answers.
    pod_names(&client, "runaway").await;
    warm_up(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = server.rss_bytes().unwrap();
    create_ms(&client, "runaway", 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Api::<ModelService>::namespaced(client.clone(), NS)
        .delete("runaway", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();

    tokio::time::sleep(Duration::from_secs(5).saturating_sub(deleted.elapsed())).await;
    let at_5s = pod_names(&client, "runaway").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_7s = pod_names(&client, "runaway").await;
    let new: Vec<&String> = at_7s.difference(&at_5s).collect();
    assert!(
        new.is_empty(),
        "pods still being created 5 s after the delete: {new:?}"
    );

    let within = Duration::from_secs(60).saturating_sub(deleted.elapsed());
    eventually("all pods of the deleted service gone", within, || async {
        pod_names(&client, "runaway").await.is_empty().then_some(())
    })
    .await;

    let limit = baseline + baseline / 5;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rss = server.rss_bytes().unwrap();
    while rss > limit && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = server.rss_bytes().unwrap();
    }
    assert!(
        rss <= limit,
        "server RSS {} MiB after all Pods are gone; {} MiB at the start",
        rss >> 20,
        baseline >> 20
    );
}

/// A small service created, left to create its Pods and deleted, until they are collected.
async fn warm_up(client: &kube::Client) {
    create_ms(client, "warm-up", 30).await;
    eventually("the warm-up's Pods", Duration::from_secs(60), || async {
        (pod_names(client, "warm-up").await.len() == 30).then_some(())
    })
    .await;
    Api::<ModelService>::namespaced(client.clone(), NS)
        .delete("warm-up", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the warm-up's Pods gone",
        Duration::from_secs(60),
        || async { pod_names(client, "warm-up").await.is_empty().then_some(()) },
    )
    .await;
}

/// Registers a Ready node that takes at most `max_pods` Pods, as an agent with `--max-pods` does.
async fn node(client: &kube::Client, name: &str, max_pods: u32) {
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": max_pods.to_string()});
    register_node(client, name, json!({}), resources).await;
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// With `pods: 3` on the only node, the fourth replica stays Pending with a FailedScheduling
/// Event saying "Too many pods".
#[tokio::test]
async fn pods_beyond_a_nodes_max_pods_stay_pending() {
    let server = TestServer::start_with_controllers(&[]).await.unwrap();
    let client = server.client().await.unwrap();
    node(&client, "small", 3).await;
    create_ms(&client, "four", 4).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}=four"));
    let message = "0/1 nodes are available: 1 Too many pods.";
    let pending = eventually(
        "3 bound pods and 1 unschedulable",
        Duration::from_secs(60),
        || async {
            let all = pods.list(&lp).await.unwrap().items;
            let bound = all.iter().filter(|p| node_of(p) == Some("small")).count();
            let unbound: Vec<&Pod> = all.iter().filter(|p| node_of(p).is_none()).collect();
            let marked = unbound.len() == 1
                && unbound[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.status == "False"
                                && c.message.as_deref() == Some(message)
                        })
                    });
            (all.len() == 4 && bound == 3 && marked).then(|| unbound[0].name_any())
        },
    )
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually(
        "FailedScheduling event",
        Duration::from_secs(30),
        || async {
            berth_e2e::events::recorded(&events, "FailedScheduling", &pending, "Too many pods")
                .await
                .then_some(())
        },
    )
    .await;

    // Still Pending a while later (the scheduler retries it every few seconds).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let p = pods.get(&pending).await.unwrap();
    assert_eq!(node_of(&p), None);
}

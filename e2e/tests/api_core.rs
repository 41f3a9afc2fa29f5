//! Built-in resources through kube-rs: pods/binding, graceful pod deletion, events served as both
//! core/v1 and events.k8s.io/v1, lease upserts, namespace deletion, the node token's limits and
//! streaming-list validation.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::time::Duration;

use berth_e2e::server::TestServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name},
        "spec":{"containers":[{"name":"c","image":"img:1"}],"terminationGracePeriodSeconds":30}}),
    )
    .unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected API error, got {other:?}"),
    }
}

async fn bind(client: &kube::Client, name: &str, node: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let body = json!({"apiVersion":"v1","kind":"Binding","metadata":{"name":name},
        "target":{"apiVersion":"v1","kind":"Node","name":node}});
    pods.create_subresource::<serde_json::Value, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &body,
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn binding_and_graceful_pod_deletion() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    bind(&client, "p", "node-1").await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    // Binding again is a conflict and changes nothing.
    assert_eq!(code(bind(&client, "p", "node-2").await.unwrap_err()), 409);
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-1")
    );

    // Field selector on spec.nodeName (what the agent watches).
    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=node-1"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 1);
    assert!(
        pods.list(&ListParams::default().fields("spec.nodeName=node-2"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // A scheduled pod is deleted gracefully: it stays with a deletionTimestamp until the node
    // agent confirms with a zero grace period.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("p").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());

    // An unscheduled pod goes at once.
    pods.create(&PostParams::default(), &pod("q"))
        .await
        .unwrap();
    pods.delete("q", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("q").await.unwrap().is_none());
}

#[tokio::test]
async fn events_are_one_store_in_two_versions() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let v1: Api<EventV1> = Api::namespaced(client.clone(), "default");
    let ev: EventV1 = serde_json::from_value(json!({"apiVersion":"events.k8s.io/v1","kind":"Event",
        "metadata":{"name":"ev1"},"eventTime":"2026-01-01T00:00:00.000000Z","reportingController":"berth.dev/test",
        "reportingInstance":"t","action":"Scale","reason":"Scaled","type":"Normal","note":"scaled to 3",
        "regarding":{"kind":"ModelService","namespace":"default","name":"churn","uid":"u-1"}}))
    .unwrap();
    v1.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let found = core
        .list(
            &ListParams::default()
                .fields("involvedObject.name=churn,involvedObject.kind=ModelService"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let e = &found.items[0];
    assert_eq!(e.message.as_deref(), Some("scaled to 3"));
    assert_eq!(e.involved_object.uid.as_deref(), Some("u-1"));
    assert_eq!(e.reporting_component.as_deref(), Some("berth.dev/test"));
    assert!(
        core.list(&ListParams::default().fields("involvedObject.name=other"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        v1.get("ev1").await.unwrap().note.as_deref(),
        Some("scaled to 3")
    );
}

#[tokio::test]
async fn lease_put_creates_and_namespace_deletion_removes_contents() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease =
        serde_json::from_value(json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
        "metadata":{"name":"node-1"},"spec":{"holderIdentity":"node-1","leaseDurationSeconds":40}}))
        .unwrap();
    leases
        .replace("node-1", &PostParams::default(), &lease)
        .await
        .unwrap();
    assert_eq!(
        leases
            .get("node-1")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("node-1")
    );

    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata":{"name":"team"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata":{"name":"c"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace contents not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(nss.get_opt("team").await.unwrap().is_none());
}

#[tokio::test]
async fn a_join_token_is_no_api_credential() {
    // Join tokens only buy a node credential (e2e/tests/join.rs covers what that may do).
    let server = TestServer::start().await.unwrap();
    let join = std::fs::read_to_string(server.data_dir().join("server/node-token")).unwrap();
    let (_, credential) = join.trim().split_once("::").unwrap();
    for token in [join.trim(), credential] {
        let mut cfg = server.kube_config().await.unwrap();
        cfg.auth_info.token = Some(token.to_string().into());
        let leases: Api<Lease> =
            Api::namespaced(kube::Client::try_from(cfg).unwrap(), "kube-node-lease");
        assert_eq!(
            code(leases.list(&ListParams::default()).await.unwrap_err()),
            401
        );
    }
}

#[tokio::test]
async fn send_initial_events_requires_not_older_than() {
    let server = TestServer::start().await.unwrap();
    let out = server
        .kubectl()
        .args(["get", "--raw", "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resourceVersionMatch"), "{err}");
}

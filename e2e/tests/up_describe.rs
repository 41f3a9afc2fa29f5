//! The inspection commands `berth up` points users to, against a real `berth server` (no agent:
//! the test writes the Pod status and Events itself): `berth get pods -o wide` shows node, IP and
//! restarts; `berth describe pod` shows conditions and Events written through core/v1 and through
//! events.k8s.io/v1 (how kube-runtime's Recorder, and so the agent, records them).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn berth(s: &TestServer, args: &[&str]) -> String {
    let out = s.berth().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn get_wide_and_describe_show_node_ip_restarts_conditions_and_both_event_apis() {
    let s = TestServer::start().await.unwrap();
    let client = s.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-1"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "x:1"}]}}))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": "10.77.0.9", "podIPs": [{"ip": "10.77.0.9"}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        "containerStatuses": [{"name": "web", "image": "x:1", "imageID": "sha256:1", "ready": true, "restartCount": 2,
            "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let wide = berth(&s, &["get", "pods", "-o", "wide"]);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = |name: &str| {
        row[header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name}: {wide}"))]
    };
    assert_eq!(
        (col("NAME"), col("READY"), col("STATUS")),
        ("web-1", "1/1", "Running"),
        "{wide}"
    );
    assert_eq!(
        (col("RESTARTS"), col("IP"), col("NODE")),
        ("2", "10.77.0.9", "node-a"),
        "{wide}"
    );

    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: Some("default".into()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let core: Event = Event {
        metadata: serde_json::from_value(json!({"name": "web-1.core"})).unwrap(),
        involved_object: regarding.clone(),
        reason: Some("CoreReason".into()),
        message: Some("written through core v1".into()),
        type_: Some("Normal".into()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("tester".into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    };
    Api::<Event>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &core)
        .await
        .unwrap();
    let v1 = k8s_openapi::api::events::v1::Event {
        metadata: serde_json::from_value(json!({"name": "web-1.v1"})).unwrap(),
        regarding: Some(regarding),
        reason: Some("V1Reason".into()),
        note: Some("written through events.k8s.io v1".into()),
        type_: Some("Warning".into()),
        action: Some("Testing".into()),
        reporting_controller: Some("tester-v1".into()),
        reporting_instance: Some("tester-v1-a".into()),
        event_time: Some(MicroTime(now)),
        ..Default::default()
    };
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &v1)
        .await
        .unwrap();

    let described = berth(&s, &["describe", "pod", "web-1"]);
    for want in [
        "Conditions:",
        "ContainersReady",
        "Events:",
        "Normal   CoreReason",
        "tester     written through core v1",
        "Warning  V1Reason",
        "tester-v1  written through events.k8s.io v1",
    ] {
        assert!(described.contains(want), "no {want:?} in:\n{described}");
    }
}

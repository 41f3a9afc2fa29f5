//! The API server started in-process over the in-memory store (the library entry point), checked
//! with kube-rs: idle watches get bookmarks, and streaming lists end their initial events with the
//! `k8s.io/initial-events-end` bookmark; Pod Security admission refuses host access where the
//! namespace's level does not allow it, naming the field.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_apiserver::{Config, Options};
use berth_store::MemStore;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

async fn start(dir: &std::path::Path) -> (berth_apiserver::Running, kube::Client) {
    let cfg = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        options: Options {
            bookmark_interval: Duration::from_millis(200),
            ..Options::default()
        },
        install_crds: Vec::new(),
        validators: Default::default(),
        tls_sans: Vec::new(),
    };
    let running = berth_apiserver::start(cfg, Arc::new(MemStore::new()))
        .await
        .unwrap();
    let kc = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (running, kube::Client::try_from(config).unwrap())
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata":{"name":name},"data":{"a":"b"}})).unwrap()
}

#[tokio::test]
async fn idle_watch_gets_bookmarks_at_the_last_revision() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(dir.path()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api.create(&PostParams::default(), &cm("x")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    running.stop();
}

#[tokio::test]
async fn streaming_list_ends_initial_events_with_a_marked_bookmark() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(dir.path()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    api.create(&PostParams::default(), &cm("b")).await.unwrap();
    let wp = WatchParams::default().initial_events().timeout(10);
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let mut added = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Added(c) => added.push(c.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, ["a", "b"]);
    running.stop();
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// The Status of a refused write.
fn refusal(result: kube::Result<Pod>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn pod_security_refuses_host_network_where_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(dir.path()).await;
    let pp = PostParams::default();
    let host_net = pod("web", json!({"hostNetwork": true}));
    let default: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = refusal(default.create(&pp, &host_net).await);
    assert_eq!(status.code, 403);
    assert_eq!(status.reason, "Forbidden");
    assert_eq!(
        status.message,
        "pods \"web\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "infra",
        "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}))
    .unwrap();
    namespaces.create(&pp, &ns).await.unwrap();
    let infra: Api<Pod> = Api::namespaced(client, "infra");
    let mut created = infra.create(&pp, &host_net).await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().host_network, Some(true));

    // Tightened later, the namespace still takes status writes to the Pod it already runs.
    let baseline =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}});
    namespaces
        .patch("infra", &PatchParams::default(), &Patch::Merge(&baseline))
        .await
        .unwrap();
    created.status = serde_json::from_value(json!({"phase": "Running"})).unwrap();
    let written = infra.replace_status("web", &pp, &created).await.unwrap();
    assert_eq!(written.status.unwrap().phase.as_deref(), Some("Running"));
    running.stop();
}

#[tokio::test]
async fn pod_security_refuses_unconfined_seccomp_in_default() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(dir.path()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let unconfined = pod(
        "free",
        json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
    );
    let status = refusal(pods.create(&PostParams::default(), &unconfined).await);
    assert_eq!(status.code, 403);
    assert!(
        status
            .message
            .contains("pod must not set securityContext.seccompProfile.type to \"Unconfined\""),
        "{}",
        status.message
    );
    running.stop();
}

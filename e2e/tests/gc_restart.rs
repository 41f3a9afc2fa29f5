//! Garbage collection survives a crash: `berth server` (a whole node) killed with SIGKILL right
//! after a ModelService is deleted collects its Pods once restarted, and the node stops their
//! containers. Needs root (CI runs as root).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use berth_api::labels::MODELSERVICE_LABEL;
use berth_api::{ModelService, ModelServiceSpec};
use berth_e2e::node::{container_processes, push_busybox};
use berth_e2e::server::TestServer;
use berth_e2e::wait::eventually_logged;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const NS: &str = "default";
const NAME: &str = "sleepers";

/// The Pods of the ModelService.
async fn pods_of(client: &kube::Client) -> Option<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}={NAME}"));
    api.list(&lp).await.ok().map(|l| l.items)
}

/// The container id of a Pod's (only) container, once it runs.
fn running_container(p: &Pod) -> Option<String> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    cs.state.as_ref()?.running.as_ref()?;
    let id = cs.container_id.as_deref()?.split_once("://")?.1;
    Some(id.to_string())
}

/// The ids of the containers (among `ids`) that still have a process on the node.
fn still_running(s: &TestServer, ids: &BTreeSet<String>) -> BTreeSet<String> {
    container_processes(s.data_dir())
        .into_iter()
        .map(|p| p.container_id)
        .filter(|id| ids.contains(id))
        .collect()
}

#[tokio::test]
async fn pods_of_a_service_deleted_just_before_a_crash_are_collected_after_restart() {
    let mut s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let image = push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    // sh as PID 1 ends on SIGTERM (a bare sleep would ignore it and wait out the grace period).
    let spec: ModelServiceSpec = serde_json::from_value(json!({
        "image": image, "replicas": 2,
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    }))
    .unwrap();
    let services: Api<ModelService> = Api::namespaced(client.clone(), NS);
    services
        .create(&PostParams::default(), &ModelService::new(NAME, spec))
        .await
        .unwrap();
    let ids: BTreeSet<String> =
        eventually_logged(&s, "2 running Pods", Duration::from_secs(180), || async {
            let ids: BTreeSet<String> = pods_of(&client)
                .await?
                .iter()
                .map(running_container)
                .collect::<Option<_>>()?;
            (ids.len() == 2).then_some(ids)
        })
        .await;
    assert_eq!(still_running(&s, &ids), ids, "the containers run");

    services
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    s.kill9().unwrap();
    // The containers outlive the server (their shims own them) until someone stops them.
    assert_eq!(still_running(&s, &ids), ids, "containers outlive the kill");

    s.start_again(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    eventually_logged(
        &s,
        "the Pods collected",
        Duration::from_secs(60),
        || async { pods_of(&client).await?.is_empty().then_some(()) },
    )
    .await;
    eventually_logged(
        &s,
        "their containers stopped",
        Duration::from_secs(60),
        || async { still_running(&s, &ids).is_empty().then_some(()) },
    )
    .await;
    let services: Api<ModelService> = Api::namespaced(client.clone(), NS);
    assert!(services.get_opt(NAME).await.unwrap().is_none());
}

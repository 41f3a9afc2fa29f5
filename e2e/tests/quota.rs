//! ResourceQuota against a real `berth server`: creates past a namespace's hard limits are refused
//! with Kubernetes' 403 "exceeded quota" message (through kube-rs and the real kubectl), parallel
//! creates never pass a limit together, Pods must state what a quota caps, and a ModelService
//! under a quota stops at it with a FailedCreate Event.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::time::Duration;

use berth_api::labels::MODELSERVICE_LABEL;
use berth_api::{ModelService, ModelServiceSpec};
use berth_e2e::kubectl::{fails, ok, write};
use berth_e2e::server::TestServer;
use berth_e2e::wait::eventually;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn quota(client: &kube::Client, ns: &str, name: &str, hard: Value) {
    let q: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}}))
            .unwrap();
    Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &q)
        .await
        .unwrap();
}

/// A Pod with one container `app`, with `resources` as given.
fn pod(name: &str, resources: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "app", "image": "localhost:5000/model:v1", "resources": resources}]}}))
    .unwrap()
}

async fn create(pods: &Api<Pod>, p: &Pod) -> Result<(), kube::core::Status> {
    match pods.create(&PostParams::default(), p).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(*s),
        Err(e) => panic!("creating a pod: {e}"),
    }
}

/// The refusal of creating `p`, asserted to be a 403 Forbidden.
async fn refused(pods: &Api<Pod>, p: &Pod) -> String {
    let s = create(pods, p).await.expect_err("create past the quota");
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}");
    s.message
}

/// `status.used[key]` of quota `name` once it equals `want`.
async fn used_becomes(api: &Api<ResourceQuota>, name: &str, key: &str, want: &str) {
    eventually(
        &format!("{name} used {key}={want}"),
        Duration::from_secs(30),
        || async {
            let q = api.get(name).await.unwrap();
            let used = q.status.and_then(|s| s.used).unwrap_or_default();
            (used.get(key).map(|v| v.0.as_str()) == Some(want)).then_some(())
        },
    )
    .await;
}

/// With `pods: "20"`, 20 Pods are created and the 21st is refused in Kubernetes' words, through
/// kube-rs and `kubectl create`; the quota shows 20/20; deleting one Pod makes room for one.
#[tokio::test]
async fn the_21st_pod_is_refused_by_a_quota_of_20() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    namespace(&client, "team").await;
    quota(&client, "team", "pods", json!({"pods": "20"})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    for i in 0..20 {
        create(&pods, &pod(&format!("p{i}"), json!({})))
            .await
            .unwrap();
    }
    assert_eq!(
        refused(&pods, &pod("p20", json!({}))).await,
        "pods \"p20\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=20, limited: pods=20"
    );
    assert!(pods.get_opt("p20").await.unwrap().is_none());

    let dir = tempfile::tempdir().unwrap();
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\nspec:\n  containers:\n  - name: app\n    image: localhost:5000/model:v1\n";
    let file = write(dir.path(), "pod.yaml", manifest);
    let err = fails(&server, &["create", "-n", "team", "-f", &file]);
    assert!(
        err.contains("pods \"extra\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=20, limited: pods=20"),
        "kubectl said: {err}"
    );

    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "team");
    used_becomes(&quotas, "pods", "pods", "20").await;
    let get = ok(&server, &["get", "quota", "-n", "team"]);
    assert!(get.contains("pods: 20/20"), "kubectl get quota: {get}");
    let describe = ok(&server, &["describe", "quota", "pods", "-n", "team"]);
    let row: Vec<&str> = describe
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods row in: {describe}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["pods", "20", "20"],
        "kubectl describe quota: {describe}"
    );

    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete("p0", &now).await.unwrap();
    create(&pods, &pod("p20", json!({}))).await.unwrap();
    let again = refused(&pods, &pod("p21", json!({}))).await;
    assert!(again.contains("exceeded quota: pods"), "{again}");
}

/// Ten parallel creates against `pods: "5"`: exactly five get in.
#[tokio::test]
async fn parallel_creates_never_pass_the_limit_together() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    namespace(&client, "race").await;
    quota(&client, "race", "five", json!({"pods": "5"})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "race");
    let all: Vec<Pod> = (0..10).map(|i| pod(&format!("p{i}"), json!({}))).collect();
    let results = join_all(all.iter().map(|p| create(&pods, p))).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 5, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code, 403);
        assert!(r.message.contains("exceeded quota: five"), "{}", r.message);
    }
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        5
    );
}

/// `requests.cpu: "1"`: 600m fits, a second 600m does not, and a Pod without a cpu request is
/// refused for not stating one.
#[tokio::test]
async fn a_cpu_quota_refuses_pods_past_it_and_pods_without_requests() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    namespace(&client, "cpu").await;
    quota(&client, "cpu", "compute", json!({"requests.cpu": "1"})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "cpu");
    let some = json!({"requests": {"cpu": "600m"}});
    create(&pods, &pod("a", some.clone())).await.unwrap();
    assert_eq!(
        refused(&pods, &pod("b", some)).await,
        "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    assert_eq!(
        refused(&pods, &pod("c", json!({}))).await,
        "pods \"c\" is forbidden: failed quota: compute: must specify requests.cpu for: app"
    );
    create(&pods, &pod("d", json!({"requests": {"cpu": "400m"}})))
        .await
        .unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "cpu");
    used_becomes(&quotas, "compute", "requests.cpu", "1").await;
}

async fn create_ms(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let spec: ModelServiceSpec = serde_json::from_value(json!({
        "image": "localhost:5000/model:v1", "replicas": replicas,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}))
    .unwrap();
    Api::<ModelService>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ModelService::new(name, spec))
        .await
        .map(|_| ())
}

/// A ModelService of 30 replicas under `pods: "20"` stops at 20 Pods with a FailedCreate Event
/// naming the quota; `count/modelservices.berth.dev: "1"` refuses a second service.
#[tokio::test]
async fn a_modelservice_under_a_quota_stops_at_it_and_says_why() {
    let server = TestServer::start_with_controllers(&[]).await.unwrap();
    let client = server.client().await.unwrap();
    namespace(&client, "ml").await;
    let hard = json!({"pods": "20", "count/modelservices.berth.dev": "1"});
    quota(&client, "ml", "team-quota", hard).await;
    create_ms(&client, "ml", "big", 30).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "ml");
    let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}=big"));
    let count = || async { pods.list(&lp).await.unwrap().items.len() };
    eventually("20 pods", Duration::from_secs(60), || async {
        (count().await == 20).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "ml");
    let needle = "is forbidden: exceeded quota: team-quota, requested: pods=1, used: pods=20, limited: pods=20";
    eventually("FailedCreate event", Duration::from_secs(30), || async {
        berth_e2e::events::recorded(&events, "FailedCreate", "big", needle)
            .await
            .then_some(())
    })
    .await;
    // The controller keeps retrying, and keeps being refused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(count().await, 20);

    let Err(kube::Error::Api(s)) = create_ms(&client, "ml", "second", 1).await else {
        panic!("a second ModelService passed count/modelservices.berth.dev: 1");
    };
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "modelservices.berth.dev \"second\" is forbidden: exceeded quota: team-quota, requested: count/modelservices.berth.dev=1, used: count/modelservices.berth.dev=1, limited: count/modelservices.berth.dev=1"
    );
}

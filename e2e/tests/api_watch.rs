//! kube-rs watchers against a real `berth server`: the default list+watch and streaming lists see
//! create, update and delete in order.

use std::time::Duration;

use berth_e2e::server::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name},"data":{"v":"0"}})).unwrap()
}

/// A compact trace of what a watcher reported about object names starting with `prefix`.
fn describe(ev: &Event<ConfigMap>, prefix: &str) -> Vec<String> {
    let name = |c: &ConfigMap| c.metadata.name.clone().unwrap_or_default();
    let v = |c: &ConfigMap| c.data.as_ref().and_then(|d| d.get("v").cloned()).unwrap_or_default();
    match ev {
        Event::Apply(c) | Event::InitApply(c) if name(c).starts_with(prefix) => vec![format!("apply {} v={}", name(c), v(c))],
        Event::Delete(c) if name(c).starts_with(prefix) => vec![format!("delete {}", name(c))],
        _ => vec![],
    }
}

async fn sees_create_update_delete(config: watcher::Config) {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("w-before")).await.unwrap();

    let mut stream = watcher::watcher(cms.clone(), config).boxed();
    let mut seen = Vec::new();
    // The initial state arrives first, ending with InitDone.
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), stream.try_next()).await.unwrap().unwrap() {
        let done = matches!(ev, Event::InitDone);
        seen.extend(describe(&ev, "w-"));
        if done {
            break;
        }
    }
    assert_eq!(seen, ["apply w-before v=0"]);

    cms.create(&PostParams::default(), &cm("w-new")).await.unwrap();
    cms.patch("w-new", &PatchParams::default(), &Patch::Merge(json!({"data":{"v":"1"}}))).await.unwrap();
    cms.delete("w-new", &DeleteParams::default()).await.unwrap();

    let want = ["apply w-before v=0", "apply w-new v=0", "apply w-new v=1", "delete w-new"];
    while seen.len() < want.len() {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next()).await.unwrap().unwrap().unwrap();
        seen.extend(describe(&ev, "w-"));
    }
    assert_eq!(seen, want);
}

#[tokio::test]
async fn default_watcher_sees_changes_in_order() {
    sees_create_update_delete(watcher::Config::default()).await;
}

#[tokio::test]
async fn streaming_list_watcher_sees_changes_in_order() {
    sees_create_update_delete(watcher::Config::default().streaming_lists()).await;
}

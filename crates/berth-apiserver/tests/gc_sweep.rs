//! Garbage collection across a restart of the API server (in-process, over one in-memory store
//! that outlives the server): owners deleted while no collector ran have their dependents
//! collected on start; a dependent with a live owner left only loses the dead reference; an
//! interrupted foreground deletion finishes; orphaned dependents stay, sweep after sweep.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_apiserver::{Config, Options};
use berth_store::{MemStore, Store};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

const CM: &str = "/registry/configmaps/default";

async fn start(
    dir: &std::path::Path,
    store: &Arc<MemStore>,
    gc_interval: Duration,
) -> (berth_apiserver::Running, Api<ConfigMap>) {
    let cfg = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        options: Options {
            gc_interval,
            ..Options::default()
        },
        install_crds: Vec::new(),
        validators: Default::default(),
        tls_sans: Vec::new(),
    };
    let running = berth_apiserver::start(cfg, store.clone()).await.unwrap();
    let kc = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
    let config = kube::config::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    (running, Api::namespaced(client, "default"))
}

/// A ConfigMap owned by the ConfigMaps `owners`.
fn cm(name: &str, owners: &[&ConfigMap]) -> ConfigMap {
    let refs: Vec<Value> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "name": o.metadata.name, "uid": o.metadata.uid})
        })
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}})).unwrap()
}

async fn create(api: &Api<ConfigMap>, name: &str, owners: &[&ConfigMap]) -> ConfigMap {
    api.create(&PostParams::default(), &cm(name, owners))
        .await
        .unwrap()
}

/// Stored object at `key`, parsed.
async fn stored(store: &MemStore, key: &str) -> Option<Value> {
    let kv = store.get(key).await.unwrap()?;
    Some(serde_json::from_slice(&kv.value).unwrap())
}

/// Deletes `name` behind the server's back, as if the server crashed right after the DELETE.
async fn delete_behind(store: &MemStore, name: &str) {
    let key = format!("{CM}/{name}");
    let kv = store.get(&key).await.unwrap().unwrap();
    store.delete(&key, kv.mod_revision).await.unwrap();
}

/// Waits (up to 30 s) until `api` has exactly the ConfigMaps `want` (besides kube-root-ca.crt).
async fn wait_names(api: &Api<ConfigMap>, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut names: Vec<String> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        names.sort();
        if names == want {
            return;
        }
        assert!(Instant::now() < deadline, "have {names:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn owner_names(c: &ConfigMap) -> Vec<String> {
    c.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.name.clone())
        .collect()
}

#[tokio::test]
async fn owners_deleted_while_no_collector_ran_are_collected_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    // An hour between sweeps: only the sweep at start can collect anything.
    let hour = Duration::from_secs(3600);
    let (running, api) = start(dir.path(), &store, hour).await;
    let gone = create(&api, "gone", &[]).await;
    let kept = create(&api, "kept", &[]).await;
    create(&api, "child", &[&gone]).await;
    create(&api, "grandchild-of-both", &[&gone, &kept]).await;
    create(&api, "child-of-kept", &[&kept]).await;
    // A foreground deletion of "fg" the crash interrupted: marked, its dependent not yet gone.
    let fg = create(&api, "fg", &[]).await;
    create(&api, "fg-child", &[&fg]).await;
    running.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;

    delete_behind(&store, "gone").await;
    let key = format!("{CM}/fg");
    let kv = store.get(&key).await.unwrap().unwrap();
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap();
    v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    v["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    store
        .update(&key, serde_json::to_vec(&v).unwrap(), kv.mod_revision)
        .await
        .unwrap();
    // Nothing collects while the server is down.
    assert!(stored(&store, &format!("{CM}/child")).await.is_some());

    let (running, api) = start(dir.path(), &store, hour).await;
    wait_names(&api, &["child-of-kept", "grandchild-of-both", "kept"]).await;
    let both = api.get("grandchild-of-both").await.unwrap();
    assert_eq!(owner_names(&both), ["kept"], "only the dead reference goes");
    running.stop();
}

#[tokio::test]
async fn periodic_sweeps_keep_orphaned_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new());
    let (running, api) = start(dir.path(), &store, Duration::from_millis(200)).await;
    let orphaner = create(&api, "orphaner", &[]).await;
    create(&api, "orphan", &[&orphaner]).await;
    let background = create(&api, "background", &[]).await;
    create(&api, "collected", &[&background]).await;

    let orphan = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    api.delete("orphaner", &orphan).await.unwrap();
    api.delete("background", &DeleteParams::default())
        .await
        .unwrap();
    wait_names(&api, &["orphan"]).await;
    // Several sweeps later the orphan is still there, owned by nobody.
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_names(&api, &["orphan"]).await;
    assert!(owner_names(&api.get("orphan").await.unwrap()).is_empty());

    running.stop();
}

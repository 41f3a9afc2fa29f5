//! The API server started in-process over the in-memory store (the library entry point), checked
//! with kube-rs: idle watches get bookmarks, and streaming lists end their initial events with the
//! `k8s.io/initial-events-end` bookmark.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_apiserver::{Config, Options};
use berth_store::MemStore;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
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

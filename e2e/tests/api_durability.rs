//! Durability of `berth server`: state survives a restart, and a kill -9 during a burst of
//! concurrent creates keeps every acknowledged write.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeSet;

use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name},"data":{"n":name}}),
    )
    .unwrap()
}

async fn names(api: &Api<ConfigMap>) -> BTreeSet<String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

#[tokio::test]
async fn state_survives_restart() {
    let mut server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &cm("keep-me"))
        .await
        .unwrap();
    server.restart().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let got = api.get("keep-me").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    // Revisions keep increasing after a restart.
    let next = api
        .create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    let rv = |c: &ConfigMap| {
        c.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(rv(&next) > rv(&created));
}

#[tokio::test]
async fn kill_9_during_a_burst_keeps_every_acknowledged_write() {
    let mut server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut writers = Vec::new();
    for w in 0..8 {
        let api = api.clone();
        let tx = tx.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("burst-{w}-{i}");
                match api.create(&PostParams::default(), &cm(&name)).await {
                    Ok(_) => {
                        if tx.send(name).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(tx);
    // Let the burst run until a good number of writes were acknowledged, then SIGKILL the server.
    let mut acked = BTreeSet::new();
    while acked.len() < 200 {
        acked.insert(rx.recv().await.expect("writers stopped early"));
    }
    server.kill9().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    while let Ok(name) = rx.try_recv() {
        acked.insert(name);
    }
    server.start_again(&[]).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let stored = names(&api).await;
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {lost:?}"
    );
}

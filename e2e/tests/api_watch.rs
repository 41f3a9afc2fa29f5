//! kube-rs watchers against a real `berth server`: the default list+watch and streaming lists see
//! create, update and delete in order.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::time::Duration;

use berth_e2e::server::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name},"data":{"v":"0"}}),
    )
    .unwrap()
}

/// A compact trace of what a watcher reported about object names starting with `prefix`.
fn describe(ev: &Event<ConfigMap>, prefix: &str) -> Vec<String> {
    let name = |c: &ConfigMap| c.metadata.name.clone().unwrap_or_default();
    let v = |c: &ConfigMap| {
        c.data
            .as_ref()
            .and_then(|d| d.get("v").cloned())
            .unwrap_or_default()
    };
    match ev {
        Event::Apply(c) | Event::InitApply(c) if name(c).starts_with(prefix) => {
            vec![format!("apply {} v={}", name(c), v(c))]
        }
        Event::Delete(c) if name(c).starts_with(prefix) => vec![format!("delete {}", name(c))],
        _ => vec![],
    }
}

async fn sees_create_update_delete(config: watcher::Config) {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("w-before"))
        .await
        .unwrap();

    let mut stream = watcher::watcher(cms.clone(), config).boxed();
    let mut seen = Vec::new();
    // The initial state arrives first, ending with InitDone.
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        let done = matches!(ev, Event::InitDone);
        seen.extend(describe(&ev, "w-"));
        if done {
            break;
        }
    }
    assert_eq!(seen, ["apply w-before v=0"]);

    cms.create(&PostParams::default(), &cm("w-new"))
        .await
        .unwrap();
    cms.patch(
        "w-new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data":{"v":"1"}})),
    )
    .await
    .unwrap();
    cms.delete("w-new", &DeleteParams::default()).await.unwrap();

    let want = [
        "apply w-before v=0",
        "apply w-new v=0",
        "apply w-new v=1",
        "delete w-new",
    ];
    while seen.len() < want.len() {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
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

/// Collects events until `pred` holds for the trace, skipping stream errors (the server is
/// restarting) — the watcher retries with backoff.
async fn until(
    stream: &mut (impl futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin),
    trace: &mut Vec<String>,
    pred: impl Fn(&[String]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !pred(trace) {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else {
            panic!("no watcher event in time; trace so far: {trace:?}");
        };
        match next {
            Some(Ok(Event::Init)) => trace.push("init".into()),
            Some(Ok(Event::InitDone)) => trace.push("init-done".into()),
            Some(Ok(ev)) => trace.extend(describe(&ev, "")),
            Some(Err(e)) => eprintln!("watcher error (retrying): {e}"),
            None => panic!("watcher stream ended"),
        }
    }
}

#[tokio::test]
async fn watcher_resumes_after_restart_from_its_resource_version() {
    let mut server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    cms.create(&PostParams::default(), &cm("r-a"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut trace = Vec::new();
    until(&mut stream, &mut trace, |t| {
        t.iter().any(|e| e == "init-done")
    })
    .await;

    server.restart().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    cms.create(&PostParams::default(), &cm("r-b"))
        .await
        .unwrap();
    until(&mut stream, &mut trace, |t| {
        t.iter().any(|e| e == "apply r-b v=0")
    })
    .await;
    // Exactly one initial list: after the restart the watcher resumed instead of relisting.
    assert_eq!(
        trace.iter().filter(|e| *e == "init").count(),
        1,
        "{trace:?}\n{}",
        server.log()
    );
    assert_eq!(
        trace.iter().filter(|e| e.starts_with("apply r-a")).count(),
        1,
        "{trace:?}"
    );
}

#[tokio::test]
async fn watcher_relists_after_compaction() {
    let mut server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    cms.create(&PostParams::default(), &cm("c-a"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut trace = Vec::new();
    until(&mut stream, &mut trace, |t| {
        t.iter().any(|e| e == "init-done")
    })
    .await;

    // All history before the restart is compacted: the watcher's resourceVersion is expired, it
    // gets the in-stream 410 and lists again (c-a comes back as part of a second initial list).
    server.stop().unwrap();
    server.start_again(&["--compact-on-start"]).await.unwrap();
    until(&mut stream, &mut trace, |t| {
        t.iter().filter(|e| *e == "init-done").count() == 2
    })
    .await;
    assert_eq!(
        trace,
        [
            "init",
            "apply c-a v=0",
            "init-done",
            "init",
            "apply c-a v=0",
            "init-done"
        ],
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn expired_resource_version_is_an_in_stream_410() {
    let server = TestServer::start_with(&["--compact-on-start"])
        .await
        .unwrap();
    let out = server
        .kubectl()
        .args([
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=10",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 1, "{body}");
    let ev: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
}

//! kube-rs CRUD against a real `berth server`, and the errors a client sees.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn cm(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion":"v1","kind":"ConfigMap",
        "metadata":{"name":name,"labels":{"app":"demo"}},"data":{"k":data}}))
    .unwrap()
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn configmap_crud_with_kube_rs() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &cm("one", "v1"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.as_deref().is_some_and(|u| u.len() == 36),
        "uid set: {meta:?}"
    );
    assert!(meta.creation_timestamp.is_some());
    let rv1: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let got = cms.get("one").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v1");

    // Update with the current resourceVersion succeeds and moves the resourceVersion.
    let mut next = got.clone();
    next.data = Some([("k".to_string(), "v2".to_string())].into());
    let updated = cms
        .replace("one", &PostParams::default(), &next)
        .await
        .unwrap();
    let rv2: i64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // The stale copy is refused with 409 Conflict and changes nothing.
    let err = api_err(
        cms.replace("one", &PostParams::default(), &got)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["k"], "v2");

    // Merge patch and list with a label selector.
    let patched = cms
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data":{"extra":"x"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["extra"], "x");
    cms.create(&PostParams::default(), &cm("two", "v"))
        .await
        .unwrap();
    let listed = cms
        .list(&ListParams::default().labels("app=demo"))
        .await
        .unwrap();
    let mut names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    assert!(listed.metadata.resource_version.is_some());
    let none = cms
        .list(&ListParams::default().labels("app in (other)"))
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // Paging with limit/continue returns every object once.
    let page1 = cms.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page1.items.len(), 1);
    let token = page1.metadata.continue_.clone().expect("continue token");
    let page2 = cms
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 1);
    assert_ne!(page1.items[0].metadata.name, page2.items[0].metadata.name);

    // Create of an existing name: 409 AlreadyExists.
    let err = api_err(
        cms.create(&PostParams::default(), &cm("one", "again"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    // Delete, then 404.
    cms.delete("one", &DeleteParams::default()).await.unwrap();
    let err = api_err(cms.get("one").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert!(cms.get_opt("one").await.unwrap().is_none());
}

#[tokio::test]
async fn missing_token_is_401_and_changes_nothing() {
    let server = TestServer::start().await.unwrap();
    let anon = server.anonymous_client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(anon, "default");
    let err = api_err(
        cms.create(&PostParams::default(), &cm("sneaky", "v"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));
    let admin: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    assert!(admin.get_opt("sneaky").await.unwrap().is_none());
}

#[tokio::test]
async fn create_in_missing_namespace_is_404() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "nope");
    let err = api_err(
        cms.create(&PostParams::default(), &cm("a", "v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    assert!(
        err.message.contains("namespaces \"nope\" not found"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn bad_selectors_are_400() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let err = api_err(
        cms.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("field label not supported: data.k"),
        "{}",
        err.message
    );
    let err = api_err(
        cms.list(&ListParams::default().labels("a in b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn continue_token_of_a_compacted_snapshot_is_410() {
    let mut server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    for n in ["a", "b", "c"] {
        cms.create(&PostParams::default(), &cm(n, "v"))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(1)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    server.stop().unwrap();
    server.start_again(&["--compact-on-start"]).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let err = api_err(
        cms.list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    // A fresh list works.
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
}

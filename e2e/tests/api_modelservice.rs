//! kube-rs against ModelServices (a CRD served by `berth server`): CRUD, status and scale
//! subresources, generation, finalizers, and garbage collection of owned Pods.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::time::Duration;

use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{Value, json};

/// A CRD a user might add (not one berth serves by itself).
fn widget_crd() -> Value {
    json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
      "metadata":{"name":"widgets.example.com"},
      "spec":{"group":"example.com","scope":"Namespaced","names":{"kind":"Widget","plural":"widgets"},
        "versions":[{"name":"v1","served":true,"storage":true,
          "schema":{"openAPIV3Schema":{"type":"object","properties":{
            "spec":{"type":"object","required":["size"],"properties":{"size":{"type":"integer"}}}}}}}]}})
}

fn crd_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    )
}

fn established(crd: &DynamicObject) -> bool {
    crd.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("berth.dev", "v1alpha1", "ModelService"),
        "modelservices",
    )
}

fn ms(name: &str, replicas: i64) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion":"berth.dev/v1alpha1","kind":"ModelService",
        "metadata":{"name":name},"spec":{"image":"img:1","replicas":replicas}}),
    )
    .unwrap()
}

async fn setup() -> (TestServer, Api<DynamicObject>, kube::Client) {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    // berth server installs the ModelService CRD at start.
    let crd = crd_api(&client)
        .get("modelservices.berth.dev")
        .await
        .unwrap();
    assert!(established(&crd), "{:?}", crd.data["status"]);
    assert_eq!(
        crd.data["status"]["acceptedNames"]["listKind"],
        "ModelServiceList"
    );
    let api = Api::namespaced_with(client.clone(), "default", &resource());
    (server, api, client)
}

#[tokio::test]
async fn a_created_crd_is_served_at_once() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let created = crd_api(&client)
        .create(
            &PostParams::default(),
            &serde_json::from_value(widget_crd()).unwrap(),
        )
        .await
        .unwrap();
    assert!(established(&created), "{:?}", created.data["status"]);
    assert_eq!(created.data["spec"]["names"]["singular"], "widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("example.com", "v1", "Widget"),
            "widgets",
        ),
    );
    let w: DynamicObject =
        serde_json::from_value(json!({"apiVersion":"example.com/v1","kind":"Widget",
        "metadata":{"name":"w"},"spec":{"size":3,"color":"red"}}))
        .unwrap();
    let stored = widgets.create(&PostParams::default(), &w).await.unwrap();
    // Pruned to the structural schema.
    assert_eq!(stored.data["spec"], json!({"size": 3}));
    // `required` is enforced.
    let bad: DynamicObject =
        serde_json::from_value(json!({"apiVersion":"example.com/v1","kind":"Widget",
        "metadata":{"name":"bad"},"spec":{}}))
        .unwrap();
    assert_eq!(
        status_code(
            widgets
                .create(&PostParams::default(), &bad)
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    // Deleting the CRD stops serving it.
    crd_api(&client)
        .delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        status_code(widgets.list(&ListParams::default()).await.unwrap_err()).0,
        404
    );
}

fn status_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected API error, got {other:?}"),
    }
}

#[tokio::test]
async fn modelservice_crud_status_scale_and_generation() {
    let (_server, api, _) = setup().await;
    let created = api
        .create(&PostParams::default(), &ms("churn", 2))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // Status written through the main resource is ignored; through /status it sticks and does
    // not bump the generation.
    let mut with_status = created.clone();
    with_status.data["status"] = json!({"replicas": 9});
    let after = api
        .replace("churn", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert!(after.data.get("status").is_none(), "{:?}", after.data);
    assert_eq!(after.metadata.generation, Some(1));
    let st = api
        .patch_status(
            "churn",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status":{"replicas":2,"readyReplicas":1},"spec":{"replicas":100}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["readyReplicas"], 1);
    assert_eq!(
        st.data["spec"]["replicas"], 2,
        "/status must not change spec"
    );
    assert_eq!(st.metadata.generation, Some(1));

    // A spec change bumps the generation; a label change does not.
    let spec = api
        .patch(
            "churn",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec":{"replicas":3}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    let label = api
        .patch(
            "churn",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata":{"labels":{"a":"b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(label.metadata.generation, Some(2));

    // Scale subresource reads and writes spec.replicas.
    let scale = api.get_scale("churn").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().replicas, 2);
    api.patch_scale(
        "churn",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec":{"replicas":6}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("churn").await.unwrap().data["spec"]["replicas"], 6);

    // Custom resources need a resourceVersion on update (422), and a stale one is 409.
    let mut no_rv = api.get("churn").await.unwrap();
    no_rv.metadata.resource_version = None;
    assert_eq!(
        status_code(
            api.replace("churn", &PostParams::default(), &no_rv)
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    assert_eq!(
        status_code(
            api.replace("churn", &PostParams::default(), &created)
                .await
                .unwrap_err()
        ),
        (409, "Conflict".into())
    );

    // Invalid spec: 422 naming the field; nothing stored.
    let (code, reason) = status_code(
        api.create(&PostParams::default(), &ms("neg", -1))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(api.get_opt("neg").await.unwrap().is_none());

    // dryRun=All validates without storing.
    api.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &ms("dry", 1),
    )
    .await
    .unwrap();
    assert!(api.get_opt("dry").await.unwrap().is_none());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_server, api, _) = setup().await;
    let mut obj = ms("held", 1);
    obj.metadata.finalizers = Some(vec!["berth.dev/test".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = api.get("held").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"finalizers":null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_a_modelservice_deletes_the_pods_it_owns() {
    let (_server, api, client) = setup().await;
    let owner = api
        .create(&PostParams::default(), &ms("owner", 2))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod = |name: &str, owned: bool| -> Pod {
        let mut p = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"labels":{"app":"owner"}},
            "spec":{"containers":[{"name":"c","image":"img:1"}]}});
        if owned {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion":"berth.dev/v1alpha1","kind":"ModelService",
                "name":"owner","uid": owner.metadata.uid.clone().unwrap(),"controller":true,"blockOwnerDeletion":true}]);
        }
        serde_json::from_value(p).unwrap()
    };
    for (name, owned) in [("owner-a", true), ("owner-b", true), ("bystander", false)] {
        pods.create(&PostParams::default(), &pod(name, owned))
            .await
            .unwrap();
    }
    // One owned pod already runs on a node: it is stopped gracefully, not yanked away.
    let mut running = pod("owner-run", true);
    running.spec.as_mut().unwrap().node_name = Some("node-1".into());
    pods.create(&PostParams::default(), &running).await.unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<Pod> = pods.list(&ListParams::default()).await.unwrap().items;
        let names: Vec<String> = left
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let run_terminating = left.iter().any(|p| {
            p.metadata.name.as_deref() == Some("owner-run")
                && p.metadata.deletion_timestamp.is_some()
        });
        if names == ["bystander", "owner-run"] && run_terminating {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "owned pods not collected: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The node agent confirms with a zero grace period.
    pods.delete(
        "owner-run",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("owner-run").await.unwrap().is_none());
}

/// Creates an owner with two owned pods; returns the pods API.
async fn owner_with_pods(api: &Api<DynamicObject>, client: &kube::Client, name: &str) -> Api<Pod> {
    let owner = api
        .create(&PostParams::default(), &ms(name, 2))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..2 {
        let p: Pod = serde_json::from_value(json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":format!("{name}-{i}"),"ownerReferences":[{"apiVersion":"berth.dev/v1alpha1","kind":"ModelService",
                "name":name,"uid":owner.metadata.uid.clone().unwrap(),"controller":true,"blockOwnerDeletion":true}]},
            "spec":{"containers":[{"name":"c","image":"img:1"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    pods
}

#[tokio::test]
async fn orphan_and_foreground_propagation() {
    let (_server, api, client) = setup().await;
    let pods = owner_with_pods(&api, &client, "orph").await;
    api.delete("orph", &DeleteParams::orphan()).await.unwrap();
    assert!(api.get_opt("orph").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 2, "orphaned pods stay");
    assert!(left.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty())
    }));

    let pods = owner_with_pods(&api, &client, "fg").await;
    api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let owner_gone = api.get_opt("fg").await.unwrap().is_none();
        let fg_pods = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("fg-"))
            })
            .count();
        if owner_gone {
            assert_eq!(
                fg_pods, 0,
                "foreground deletion removes dependents before the owner"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "foreground deletion did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn delete_collection_with_a_label_selector() {
    let (_server, api, _) = setup().await;
    for (name, team) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut o = ms(name, 1);
        o.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("team=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn controller_style_server_side_apply() {
    let (_server, api, client) = setup().await;
    api.create(&PostParams::default(), &ms("ctl", 2))
        .await
        .unwrap();
    // Status through SSA on /status (what a kube-rs controller does), forced.
    let pp = PatchParams::apply("berth-controller").force();
    let status = json!({"apiVersion":"berth.dev/v1alpha1","kind":"ModelService","status":{"replicas":2,"readyReplicas":2}});
    let out = api
        .patch_status("ctl", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["readyReplicas"], 2);
    assert_eq!(out.data["spec"]["replicas"], 2);
    let mf = out.metadata.managed_fields.unwrap_or_default();
    assert!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("berth-controller")
                && m.subresource.as_deref() == Some("status")),
        "{mf:?}"
    );

    // Apply creates a missing child; applying it again is a no-op that keeps its uid.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let child = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"ctl-0","labels":{"app":"ctl"}},
        "spec":{"containers":[{"name":"c","image":"img:1"}]}});
    let first = pods
        .patch("ctl-0", &pp, &Patch::Apply(&child))
        .await
        .unwrap();
    let second = pods
        .patch("ctl-0", &pp, &Patch::Apply(&child))
        .await
        .unwrap();
    assert_eq!(first.metadata.uid, second.metadata.uid);
    assert_eq!(
        first.metadata.resource_version, second.metadata.resource_version,
        "an apply that changes nothing must not write (watchers would see a spurious MODIFIED)"
    );
    assert_eq!(second.metadata.labels.unwrap()["app"], "ctl");
    // Apply without a fieldManager is rejected.
    let err = pods
        .patch("ctl-0", &PatchParams::default(), &Patch::Apply(&child))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400 || s.code == 422),
        "{err:?}"
    );
}

//! The API surface as kubectl uses it on built-in kinds: client-side apply's 3-way strategic merge
//! patches (dropped keys, env vars and labels disappear; re-applying prints `unchanged`),
//! server-side apply removing fields a manager stops applying, and `kubectl get` columns.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_e2e::kubectl::{ok, write};
use berth_e2e::server::TestServer;

fn configmap(data: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n  labels:\n{labels}\ndata:\n{data}"
    )
}

fn json_of(server: &TestServer, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(server, args)).expect("kubectl printed JSON")
}

#[tokio::test]
async fn client_side_apply_of_a_configmap_drops_removed_keys_and_labels() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(
        dir.path(),
        "v1.yaml",
        &configmap("  a: \"1\"\n  b: \"2\"\n", "    app: x\n    tier: web\n"),
    );
    let v2 = write(
        dir.path(),
        "v2.yaml",
        &configmap("  a: \"1\"\n  c: \"3\"\n", "    app: x\n"),
    );

    assert!(ok(&server, &["apply", "-f", &v1]).contains("configmap/settings created"));
    assert!(ok(&server, &["apply", "-f", &v1]).contains("configmap/settings unchanged"));
    let rv_before =
        json_of(&server, &["get", "cm", "settings", "-o", "json"])["metadata"]["resourceVersion"]
            .clone();

    // A key added by someone else survives the 3-way patch; keys dropped from the file go.
    ok(
        &server,
        &[
            "patch",
            "cm",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"extra":"kept"}}"#,
        ],
    );
    assert!(ok(&server, &["apply", "-f", &v2]).contains("configmap/settings configured"));
    let cm = json_of(&server, &["get", "cm", "settings", "-o", "json"]);
    assert_eq!(
        cm["data"],
        serde_json::json!({"a": "1", "c": "3", "extra": "kept"})
    );
    assert_eq!(cm["metadata"]["labels"], serde_json::json!({"app": "x"}));
    assert_ne!(cm["metadata"]["resourceVersion"], rv_before);
}

/// The server builds Tables with `berth_apiserver::table`: kube-apiserver's ConfigMap columns.
#[tokio::test]
async fn configmaps_print_their_data_count() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cm = write(
        dir.path(),
        "cm.yaml",
        &configmap("  a: \"1\"\n  b: \"2\"\n  c: \"3\"\n", "    app: x\n"),
    );
    ok(&server, &["apply", "-f", &cm]);
    let table = ok(&server, &["get", "configmaps", "settings"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{table}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], ["settings", "3"], "{table}");
}

#[tokio::test]
async fn client_side_apply_of_a_pod_removes_a_dropped_env_var() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pod = |env: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\nspec:\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n    env:\n{env}"
        )
    };
    let v1 = write(
        dir.path(),
        "v1.yaml",
        &pod("    - name: A\n      value: \"1\"\n    - name: B\n      value: \"2\"\n"),
    );
    let v2 = write(
        dir.path(),
        "v2.yaml",
        &pod("    - name: A\n      value: \"10\"\n"),
    );
    assert!(ok(&server, &["apply", "-f", &v1]).contains("pod/web created"));
    assert!(ok(&server, &["apply", "-f", &v2]).contains("pod/web configured"));
    let p = json_of(&server, &["get", "pod", "web", "-o", "json"]);
    assert_eq!(
        p["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "A", "value": "10"}])
    );
    assert_eq!(p["spec"]["containers"][0]["image"], "busybox");
    assert!(ok(&server, &["apply", "-f", &v2]).contains("pod/web unchanged"));
}

#[tokio::test]
async fn server_side_apply_removes_fields_the_manager_stopped_applying() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(
        dir.path(),
        "v1.yaml",
        &configmap("  a: \"1\"\n  b: \"2\"\n", "    app: x\n"),
    );
    let v2 = write(
        dir.path(),
        "v2.yaml",
        &configmap("  a: \"1\"\n", "    app: x\n"),
    );
    assert!(ok(&server, &["apply", "--server-side", "-f", &v1]).contains("serverside-applied"));
    // Another manager's key is not touched by the first manager's later applies.
    ok(
        &server,
        &[
            "patch",
            "cm",
            "settings",
            "--type=merge",
            "--field-manager=editor",
            "-p",
            r#"{"data":{"z":"26"}}"#,
        ],
    );
    ok(&server, &["apply", "--server-side", "-f", &v2]);
    let cm = json_of(
        &server,
        &[
            "get",
            "cm",
            "settings",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "z": "26"}));
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"kubectl") && managers.contains(&"editor"),
        "{managers:?}"
    );
}

#[tokio::test]
async fn namespaces_print_status_and_age() {
    let server = TestServer::start().await.unwrap();
    ok(&server, &["create", "namespace", "team-a"]);
    let table = ok(&server, &["get", "namespace", "team-a"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "STATUS", "AGE"], "{table}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], ["team-a", "Active"], "{table}");
}

//! The real `kubectl` against `berth server`: apply (client- and server-side), printer columns,
//! scale, explain, delete, watch, api-resources, and bad input that must change nothing.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_e2e::kubectl::{fails, ok, run, write};
use berth_e2e::server::TestServer;

/// The example manifests shipped with berth.
fn examples_dir() -> String {
    berth_e2e::repo_root()
        .join("manifests/examples")
        .to_string_lossy()
        .into_owned()
}

/// The churn-model example (one ModelService).
fn churn() -> String {
    std::fs::read_to_string(berth_e2e::repo_root().join("manifests/examples/churn-model.yaml"))
        .unwrap()
}

/// The `kubectl get` header for ModelServices, from the CRD's printer columns (priority 0).
fn expected_header() -> Vec<String> {
    let crd = berth_api::crd_json();
    let mut cols = vec!["NAME".to_string()];
    for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
    {
        if c["priority"].as_i64().unwrap_or(0) == 0 {
            cols.extend(
                c["name"]
                    .as_str()
                    .unwrap()
                    .to_uppercase()
                    .split_whitespace()
                    .map(String::from),
            );
        }
    }
    cols
}

/// A server with the ModelService CRD established, and a directory for manifests.
async fn setup() -> (TestServer, tempfile::TempDir) {
    setup_with(&[]).await
}

async fn setup_with(args: &[&str]) -> (TestServer, tempfile::TempDir) {
    let server = TestServer::start_with(args).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // berth server installs the ModelService CRD at start.
    ok(
        &server,
        &[
            "wait",
            "--for=condition=established",
            "crd/modelservices.berth.dev",
            "--timeout=20s",
        ],
    );
    (server, dir)
}

#[tokio::test]
async fn apply_get_scale_explain_delete() {
    let (server, _dir) = setup().await;
    let examples = examples_dir();
    let first = ok(&server, &["apply", "-f", &examples]);
    assert!(
        first.contains("modelservice.berth.dev/churn-model created"),
        "{first}"
    );
    let second = ok(&server, &["apply", "-f", &examples]);
    assert!(
        second.contains("modelservice.berth.dev/churn-model unchanged"),
        "{second}"
    );

    // `kubectl diff` (server-side dry run) sees no difference, then one, without changing anything.
    ok(&server, &["diff", "-f", &examples]);
    let edited = tempfile::tempdir().unwrap();
    let scaled = write(
        edited.path(),
        "churn.yaml",
        &churn().replace("replicas: 3", "replicas: 4"),
    );
    let diff = run(&server, &["diff", "-f", &scaled]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 4"));
    assert!(
        ok(&server, &["apply", "--dry-run=server", "-f", &scaled])
            .contains("configured (server dry run)")
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "3"
    );

    let table = ok(&server, &["get", "ms"]);
    let header: Vec<String> = table
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(header, expected_header(), "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..3],
        ["churn-model", "localhost:5000/churn-model:v1", "3"],
        "{table}"
    );

    let yaml = ok(&server, &["get", "ms", "churn-model", "-o", "yaml"]);
    let obj: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(obj["spec"]["image"], "localhost:5000/churn-model:v1");
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(obj["metadata"]["uid"].is_string());

    ok(&server, &["scale", "ms", "churn-model", "--replicas=5"]);
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "5"
    );
    // With a precondition kubectl reads the Scale and writes it back with PUT.
    let err = fails(
        &server,
        &[
            "scale",
            "ms",
            "churn-model",
            "--current-replicas=4",
            "--replicas=6",
        ],
    );
    assert!(err.contains("Expected replicas to be 4, was 5"), "{err}");
    ok(
        &server,
        &[
            "scale",
            "ms",
            "churn-model",
            "--current-replicas=5",
            "--replicas=6",
        ],
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "6"
    );

    let explain = ok(&server, &["explain", "ms.spec"]);
    assert!(explain.contains("image\t<string> -required-"), "{explain}");

    // Built-in kinds are documented too (their published schemas).
    let explain = ok(&server, &["explain", "pod.spec.containers.image"]);
    assert!(explain.contains("Container image name."), "{explain}");

    let resources = ok(&server, &["api-resources"]);
    let ms_line = resources
        .lines()
        .find(|l| l.starts_with("modelservices "))
        .unwrap_or_else(|| panic!("{resources}"));
    assert!(
        ms_line.split_whitespace().eq([
            "modelservices",
            "ms",
            "berth.dev/v1alpha1",
            "true",
            "ModelService"
        ]),
        "{ms_line}"
    );

    // `kubectl delete -f` returns (its wait for the deletion finishes) and the objects are gone.
    let deleted = ok(&server, &["delete", "-f", &examples, "--timeout=30s"]);
    assert!(
        deleted.contains("modelservice.berth.dev \"churn-model\" deleted"),
        "{deleted}"
    );
    let err = fails(&server, &["get", "ms", "churn-model"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[tokio::test]
async fn server_side_apply_conflicts_and_force() {
    let (server, dir) = setup().await;
    let mine = write(dir.path(), "mine.yaml", &churn());
    let theirs = write(
        dir.path(),
        "theirs.yaml",
        &churn().replace("replicas: 3", "replicas: 7"),
    );
    let out = ok(&server, &["apply", "--server-side", "-f", &mine]);
    assert!(out.contains("serverside-applied"), "{out}");
    ok(&server, &["apply", "--server-side", "-f", &mine]);

    let err = fails(
        &server,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &theirs,
        ],
    );
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "3"
    );

    ok(
        &server,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &theirs,
        ],
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "7"
    );

    // A change by an Update manager (kubectl scale) also conflicts with a later apply.
    ok(&server, &["scale", "ms", "churn-model", "--replicas=5"]);
    let err = fails(
        &server,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &theirs,
        ],
    );
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "5"
    );
    ok(
        &server,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &theirs,
        ],
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "7"
    );
}

#[tokio::test]
async fn get_watch_prints_a_row() {
    let (server, dir) = setup().await;
    let churn = write(dir.path(), "churn.yaml", &churn());
    ok(&server, &["apply", "-f", &churn]);
    let mut child = server
        .kubectl()
        .args(["get", "ms", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The watch never ends by itself: read until the row shows up, then kill it.
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.starts_with("churn-model");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = reader.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("churn-model") && l.contains("localhost:5000/churn-model:v1")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let (server, dir) = setup().await;
    let before = ok(&server, &["get", "ms,cm", "-A", "-o", "name"]);

    let malformed = write(
        dir.path(),
        "malformed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n",
    );
    fails(&server, &["apply", "-f", &malformed]);

    let unknown_kind = write(
        dir.path(),
        "kind.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: Bogus\nmetadata: {name: x}\n",
    );
    fails(&server, &["apply", "-f", &unknown_kind]);

    let wrong_version = write(
        dir.path(),
        "version.yaml",
        "apiVersion: berth.dev/v9\nkind: ModelService\nmetadata: {name: x}\nspec: {image: a}\n",
    );
    let err = fails(&server, &["apply", "-f", &wrong_version]);
    assert!(err.contains("berth.dev/v9"), "{err}");

    let invalid = write(
        dir.path(),
        "invalid.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: ModelService\nmetadata: {name: bad}\nspec: {image: 'Bad Image!!', replicas: -1, ports: [{containerPort: 0}]}\n",
    );
    let err = fails(&server, &["apply", "-f", &invalid]);
    for field in ["spec.image", "spec.replicas", "spec.ports[0].containerPort"] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }

    let unknown_field = write(
        dir.path(),
        "unknown.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: ModelService\nmetadata: {name: unk}\nspec: {image: a, foo: 1}\n",
    );
    let err = fails(&server, &["apply", "-f", &unknown_field]);
    assert!(err.contains("unknown field \"spec.foo\""), "{err}");

    assert_eq!(ok(&server, &["get", "ms,cm", "-A", "-o", "name"]), before);
}

#[tokio::test]
async fn legacy_discovery_mode_still_serves_kubectl() {
    let (server, dir) = setup_with(&["--legacy-discovery"]).await;
    let resources = ok(&server, &["api-resources"]);
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("modelservices ") && l.contains(" ms ")),
        "{resources}"
    );
    let explain = ok(&server, &["explain", "ms.spec"]);
    assert!(explain.contains("image\t<string> -required-"), "{explain}");
    let churn = write(dir.path(), "churn.yaml", &churn());
    assert!(ok(&server, &["apply", "-f", &churn]).contains("created"));
    ok(&server, &["scale", "ms", "churn-model", "--replicas=4"]);
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "ms",
                "churn-model",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "4"
    );
}

#[tokio::test]
async fn kube_rs_discovery_aggregated_and_legacy() {
    let (server, _dir) = setup().await;
    let client = server.client().await.unwrap();
    for discovery in [
        kube::Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
        kube::Discovery::new(client.clone()).run().await.unwrap(),
    ] {
        let group = discovery.get("berth.dev").expect("berth.dev discovered");
        let (ar, caps) = group
            .recommended_kind("ModelService")
            .expect("ModelService discovered");
        assert_eq!(ar.plural, "modelservices");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(sub, _)| sub.plural == "modelservices/scale" || sub.plural == "scale"),
            "{:?}",
            caps.subresources
        );
        assert!(
            discovery
                .get("")
                .and_then(|g| g.recommended_kind("ConfigMap"))
                .is_some()
        );
        assert!(
            discovery
                .get("coordination.k8s.io")
                .and_then(|g| g.recommended_kind("Lease"))
                .is_some()
        );
    }
}

#[tokio::test]
async fn pods_print_like_kubernetes_and_label_patches_work() {
    let (server, dir) = setup().await;
    let pod = write(
        dir.path(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    assert!(ok(&server, &["apply", "-f", &pod]).contains("pod/web created"));
    let table = ok(&server, &["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "0/1", "Pending", "0"], "{table}");
    ok(&server, &["label", "pod", "web", "tier=model"]);
    assert_eq!(
        ok(&server, &["get", "pods", "-l", "tier=model", "-o", "name"]).trim(),
        "pod/web"
    );
    assert!(
        ok(&server, &["get", "pods", "-l", "tier!=model", "-o", "name"])
            .trim()
            .is_empty()
    );
    // Client-side apply of a changed built-in object is a strategic merge patch.
    let changed = write(
        dir.path(),
        "pod2.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {extra: x}}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    assert!(ok(&server, &["apply", "-f", &changed]).contains("pod/web configured"));
    let labels = ok(
        &server,
        &["get", "pod", "web", "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(
        labels.contains("\"extra\":\"x\"") && labels.contains("\"tier\":\"model\""),
        "{labels}"
    );
}

#[tokio::test]
async fn recorder_events_show_in_kubectl_describe() {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (server, _dir) = setup().await;
    ok(&server, &["apply", "-f", &examples_dir()]);
    let client = server.client().await.unwrap();
    let ms: kube::Api<berth_api::ModelService> = kube::Api::namespaced(client.clone(), "default");
    let obj = ms.get("churn-model").await.unwrap();
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "berth-test".into(),
            instance: Some("t-1".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Scaled".into(),
        note: Some("scaled to 3 replicas".into()),
        action: "Scale".into(),
        secondary: None,
    };
    recorder.publish(&ev, &obj.object_ref(&())).await.unwrap();
    // A repeat is merged into the same event (a merge patch of events.k8s.io/v1).
    recorder.publish(&ev, &obj.object_ref(&())).await.unwrap();
    let described = ok(&server, &["describe", "ms", "churn-model"]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("Scaled") && events.contains("scaled to 3 replicas"),
        "{described}"
    );
}

#[tokio::test]
async fn unknown_fields_warn_or_fail_by_validation_mode() {
    let (server, dir) = setup().await;
    let manifest = churn().replace("  replicas: 3\n", "  replicas: 3\n  colour: blue\n");
    let path = write(dir.path(), "unknown.yaml", &manifest);
    let err = fails(&server, &["apply", "-f", &path]);
    assert!(err.contains("unknown field \"spec.colour\""), "{err}");
    let out = server
        .kubectl()
        .args(["apply", "--validate=warn", "-f", &path])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning") && stderr.contains("spec.colour"),
        "{stderr}"
    );
    // The unknown field was pruned, the rest stored.
    let spec = ok(
        &server,
        &["get", "ms", "churn-model", "-o", "jsonpath={.spec}"],
    );
    assert!(
        !spec.contains("colour") && spec.contains("churn-model:v1"),
        "{spec}"
    );
}

#[tokio::test]
async fn kubectl_create_of_core_kinds() {
    let (server, _dir) = setup().await;
    ok(&server, &["create", "namespace", "team"]);
    ok(
        &server,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "team",
            "--from-literal=a=b",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "-n",
            "team",
            "--from-literal=pw=hunter2",
        ],
    );
    assert_eq!(
        ok(
            &server,
            &["get", "ns", "team", "-o", "jsonpath={.status.phase}"]
        ),
        "Active"
    );
    assert_eq!(
        ok(
            &server,
            &["get", "cm", "cfg", "-n", "team", "-o", "jsonpath={.data.a}"]
        ),
        "b"
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "secret",
                "pw",
                "-n",
                "team",
                "-o",
                "jsonpath={.data.pw}"
            ]
        ),
        "aHVudGVyMg=="
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "secret",
                "pw",
                "-n",
                "team",
                "-o",
                "jsonpath={.type}"
            ]
        ),
        "Opaque"
    );
}

//! `berth apply/get/describe/delete/scale` against a real `berth server`, run as a user would
//! (the binary, a kubeconfig in KUBECONFIG), checking what they print and what the server holds.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_e2e::server::TestServer;
use kube::api::{Api, ListParams};
use serde_json::Value;

fn berth(server: &TestServer) -> Command {
    let mut c = Command::new(berth_e2e::berth_bin());
    c.env("KUBECONFIG", server.kubeconfig())
        .env("BERTH_LOG", "warn");
    c
}

fn run(server: &TestServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = berth(server)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().expect("wait for berth")
}

/// Runs berth, asserting success; returns stdout.
fn ok(server: &TestServer, args: &[&str]) -> String {
    let out = run(server, args, None);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs berth, asserting failure; returns stderr.
fn fails(server: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(server, args, stdin);
    assert!(
        !out.status.success(),
        "berth {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn examples() -> String {
    berth_e2e::repo_root()
        .join("manifests/examples")
        .display()
        .to_string()
}

async fn model_services(server: &TestServer, ns: Option<&str>) -> Vec<berth_api::ModelService> {
    let client = server.client().await.unwrap();
    let api: Api<berth_api::ModelService> = match ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    api.list(&ListParams::default()).await.unwrap().items
}

/// Splits a table into rows of whitespace-separated cells.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_get_scale_delete_round_trip() {
    let server = TestServer::start().await.unwrap();
    let dir = examples();
    assert_eq!(
        ok(&server, &["apply", "-f", &dir]),
        "modelservice.berth.dev/churn-model created\n"
    );
    assert_eq!(
        ok(&server, &["apply", "-f", &dir]),
        "modelservice.berth.dev/churn-model unchanged\n"
    );

    let table = cells(&ok(&server, &["get", "ms"]));
    assert_eq!(
        table[0],
        ["NAME", "IMAGE", "DESIRED", "READY", "UP-TO-DATE", "AGE"]
    );
    assert_eq!(
        table[1][..5],
        [
            "churn-model",
            "localhost:5000/churn-model:v1",
            "3",
            "<none>",
            "<none>"
        ]
    );
    assert_eq!(table.len(), 2);
    let wide = cells(&ok(&server, &["get", "modelservices", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "IMAGE",
            "DESIRED",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "PORT",
            "AGE"
        ]
    );
    assert_eq!(wide[1][6], "8000");

    let yaml: Value = serde_yaml::from_str(&ok(
        &server,
        &["get", "modelservice", "churn-model", "-o", "yaml"],
    ))
    .unwrap();
    assert_eq!(yaml["kind"], "ModelService");
    assert_eq!(yaml["spec"]["replicas"], 3);
    assert_eq!(yaml["spec"]["env"][0]["value"], "/app/models/churn.json");
    assert!(
        yaml["metadata"].get("managedFields").is_none(),
        "managedFields are hidden by default"
    );
    assert_eq!(
        ok(&server, &["get", "ms", "-o", "name"]),
        "modelservice.berth.dev/churn-model\n"
    );

    assert_eq!(
        ok(&server, &["scale", "ms", "churn-model", "--replicas", "5"]),
        "modelservice.berth.dev/churn-model scaled\n"
    );
    assert_eq!(
        model_services(&server, Some("default")).await[0]
            .spec
            .replicas,
        5
    );
    let json: Value =
        serde_json::from_str(&ok(&server, &["get", "ms/churn-model", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["replicas"], 5);

    // The replicas now belong to `berth scale`; apply refuses to take them silently.
    let err = fails(&server, &["apply", "-f", &dir], None);
    assert!(
        err.contains("Error from server (Conflict)") && err.contains(".spec.replicas"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(
        model_services(&server, Some("default")).await[0]
            .spec
            .replicas,
        5
    );
    assert_eq!(
        ok(&server, &["apply", "-f", &dir, "--force-conflicts"]),
        "modelservice.berth.dev/churn-model configured\n"
    );
    assert_eq!(
        model_services(&server, Some("default")).await[0]
            .spec
            .replicas,
        3
    );

    let described = ok(&server, &["describe", "ms", "churn-model"]);
    for line in [
        "Name:         churn-model",
        "Namespace:    default",
        "Kind:         ModelService",
        "Spec:",
        "  Image:",
        "Events:",
    ] {
        assert!(
            described.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in\n{described}"
        );
    }

    assert_eq!(
        ok(&server, &["delete", "ms", "churn-model"]),
        "modelservice.berth.dev \"churn-model\" deleted\n"
    );
    assert!(model_services(&server, None).await.is_empty());
    let err = fails(&server, &["get", "ms", "churn-model"], None);
    assert!(
        err.contains(
            "Error from server (NotFound): modelservices.berth.dev \"churn-model\" not found"
        ),
        "{err}"
    );
    let err = fails(&server, &["delete", "ms", "churn-model"], None);
    assert!(err.contains("(NotFound)"), "{err}");
    ok(
        &server,
        &["delete", "ms", "churn-model", "--ignore-not-found"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_fails_clearly_and_changes_nothing() {
    let server = TestServer::start().await.unwrap();
    let err = fails(
        &server,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: [oops\n"),
    );
    assert!(
        err.contains("error parsing STDIN") && err.contains("line"),
        "{err}"
    );

    // One good object before an unknown kind: nothing is applied.
    let two = format!(
        "{}\n---\napiVersion: widgets.example.com/v1\nkind: Widget\nmetadata: {{name: w}}\n",
        std::fs::read_to_string(berth_e2e::repo_root().join("manifests/examples/churn-model.yaml"))
            .unwrap()
    );
    let err = fails(&server, &["apply", "-f", "-"], Some(&two));
    assert!(
        err.contains("no matches for kind \"Widget\" in version \"widgets.example.com/v1\""),
        "{err}"
    );
    assert!(model_services(&server, None).await.is_empty());

    let err = fails(&server, &["get", "widgets"], None);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );

    let bad = "apiVersion: berth.dev/v1alpha1\nkind: ModelService\nmetadata: {name: bad}\nspec:\n  image: \"Not An Image\"\n  replicas: -1\n  ports:\n  - {name: http, containerPort: 70000}\n  readinessProbe: {httpGet: {path: /, port: grpc}}\n  service: {port: 0}\n";
    let err = fails(&server, &["apply", "-f", "-"], Some(bad));
    assert!(err.contains("The ModelService \"bad\" is invalid"), "{err}");
    for field in [
        "spec.image",
        "spec.replicas",
        "spec.ports[0].containerPort",
        "spec.readinessProbe.httpGet.port",
        "spec.service.port",
    ] {
        assert!(
            err.contains(&format!("* {field}: ")),
            "{field} not named in {err}"
        );
    }
    assert!(model_services(&server, None).await.is_empty());

    let err = fails(&server, &["scale", "ms", "nope", "--replicas", "2"], None);
    assert!(err.contains("(NotFound)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_stdin_multi_documents_and_all_namespaces() {
    let server = TestServer::start().await.unwrap();
    let churn =
        std::fs::read_to_string(berth_e2e::repo_root().join("manifests/examples/churn-model.yaml"))
            .unwrap();
    let docs = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: team-a}}\n---\n{}\n---\n# empty document\n",
        churn.replace("namespace: default", "namespace: team-a")
    );
    let out = run(&server, &["apply", "-f", "-"], Some(&docs));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "namespace/team-a created\nmodelservice.berth.dev/churn-model created\n"
    );
    ok(&server, &["apply", "-f", &examples()]);

    let all = cells(&ok(&server, &["get", "ms", "-A"]));
    assert_eq!(all[0][..2], ["NAMESPACE", "NAME"]);
    let mut rows: Vec<(String, String)> = all[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("default".into(), "churn-model".into()),
            ("team-a".into(), "churn-model".into())
        ]
    );
    let only_a = cells(&ok(
        &server,
        &["get", "ms", "-n", "team-a", "-l", "app=churn-model"],
    ));
    assert_eq!(only_a.len(), 2);
    let none = run(&server, &["get", "ms", "-l", "app=other"], None);
    assert!(none.status.success());
    assert_eq!(
        String::from_utf8_lossy(&none.stderr).trim(),
        "No resources found in default namespace."
    );

    let err = fails(
        &server,
        &["apply", "-n", "default", "-f", "-"],
        Some(&churn.replace("namespace: default", "namespace: team-a")),
    );
    assert!(
        err.contains("does not match the namespace \"default\""),
        "{err}"
    );

    assert_eq!(
        ok(&server, &["delete", "-f", &examples()]),
        "modelservice.berth.dev \"churn-model\" deleted\n"
    );
    assert_eq!(model_services(&server, None).await.len(), 1);
    let out = run(
        &server,
        &["delete", "ms", "-n", "team-a", "-l", "app=other"],
        None,
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found"
    );
    assert_eq!(
        ok(
            &server,
            &["delete", "ms", "-n", "team-a", "-l", "app=churn-model"]
        ),
        "modelservice.berth.dev \"churn-model\" deleted\n"
    );
    assert!(model_services(&server, None).await.is_empty());
}

/// A running `berth get ... -w` whose stdout lines arrive on a channel; killed on drop.
struct Watching {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watching {
    fn start(server: &TestServer, args: &[&str]) -> Watching {
        let mut child = berth(server)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines }
    }

    /// The next line (the timeout guards against hanging forever; it is not a timing assertion).
    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from berth get -w")
    }

    /// Skips lines until one satisfies `f`.
    fn until(&self, f: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.next();
            if f(&line) {
                return line;
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_streams_rows() {
    let server = TestServer::start().await.unwrap();
    ok(&server, &["apply", "-f", &examples()]);
    let w = Watching::start(&server, &["get", "ms", "-w"]);
    assert!(w.next().starts_with("NAME"));
    assert_eq!(
        cells(&w.next())[0][..3],
        ["churn-model", "localhost:5000/churn-model:v1", "3"]
    );
    ok(&server, &["scale", "ms", "churn-model", "--replicas", "7"]);
    let row = w.until(|l| cells(l)[0].get(2).is_some_and(|d| d == "7"));
    assert!(row.starts_with("churn-model "), "{row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_streams_yaml_documents() {
    let server = TestServer::start().await.unwrap();
    ok(&server, &["apply", "-f", &examples()]);
    let w = Watching::start(&server, &["get", "ms", "churn-model", "-w", "-o", "yaml"]);
    assert_eq!(w.next(), "---");
    w.until(|l| l == "  replicas: 3");
    ok(&server, &["scale", "ms", "churn-model", "--replicas", "4"]);
    w.until(|l| l == "---");
    w.until(|l| l == "  replicas: 4");
    let err = fails(&server, &["get", "ms,cm", "-w"], None);
    assert!(err.contains("single resource type"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_flag_wins_over_the_environment() {
    let server = TestServer::start().await.unwrap();
    ok(&server, &["apply", "-f", &examples()]);
    let out = berth(&server)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .args(["get", "ms", "-o", "name", "--kubeconfig"])
        .arg(server.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "modelservice.berth.dev/churn-model\n"
    );
    let out = berth(&server)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .args(["get", "ms"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KUBECONFIG"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_shows_the_objects_events() {
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    let server = TestServer::start().await.unwrap();
    ok(&server, &["apply", "-f", &examples()]);
    let ms = &model_services(&server, Some("default")).await[0];
    let events: Api<Event> = Api::namespaced(server.client().await.unwrap(), "default");
    let about = |name: &str, uid: Option<String>| ObjectReference {
        api_version: Some("berth.dev/v1alpha1".into()),
        kind: Some("ModelService".into()),
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid,
        ..Default::default()
    };
    let event = |name: &str, reason: &str, message: &str, involved: ObjectReference| Event {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Normal".into()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("modelservice-controller".into()),
            host: None,
        }),
        ..Default::default()
    };
    let ours = event(
        "e1",
        "ScalingReplicaSet",
        "created pod churn-model-abc",
        about("churn-model", ms.metadata.uid.clone()),
    );
    let other = event(
        "e2",
        "Unrelated",
        "about another object",
        about("other-model", None),
    );
    events.create(&Default::default(), &ours).await.unwrap();
    events.create(&Default::default(), &other).await.unwrap();

    let out = ok(&server, &["describe", "ms", "churn-model"]);
    let events_section = out
        .split("\nEvents:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no events in\n{out}"));
    assert!(events_section.contains("ScalingReplicaSet"), "{out}");
    assert!(
        events_section.contains("modelservice-controller  created pod churn-model-abc"),
        "{out}"
    );
    assert!(!events_section.contains("Unrelated"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_waits_for_finalizers_unless_told_not_to() {
    let server = TestServer::start().await.unwrap();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\ndata: {a: b}\n";
    let out = run(&server, &["apply", "-f", "-"], Some(cm));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let err = fails(
        &server,
        &["delete", "configmap", "held", "--timeout", "1s"],
        None,
    );
    assert!(
        err.contains("timed out waiting for \"held\" to be deleted"),
        "{err}"
    );
    assert_eq!(
        ok(&server, &["delete", "cm", "held", "--wait=false"]),
        "configmap \"held\" deleted\n"
    );

    // Releasing the finalizer lets the deletion finish; a waiting delete then returns.
    let client = server.client().await.unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    cms.patch(
        "held",
        &Default::default(),
        &kube::api::Patch::Merge(&release),
    )
    .await
    .unwrap();
    let out = run(
        &server,
        &["delete", "cm", "held", "--ignore-not-found"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cms.get_opt("held").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_reported() {
    let server = TestServer::start().await.unwrap();
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let dead = berth_e2e::free_port();
    let moved = kubeconfig.replace(&format!(":{}", server.port()), &format!(":{dead}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig.yaml");
    std::fs::write(&path, moved).unwrap();
    let err = fails(
        &server,
        &["get", "ms", "--kubeconfig", path.to_str().unwrap()],
        None,
    );
    assert!(err.contains("Unable to connect to the server"), "{err}");
}

#[test]
fn crd_command_prints_the_committed_manifest() {
    let out = Command::new(berth_e2e::berth_bin())
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        berth_e2e::repo_root().join("manifests/crds/modelservices.berth.dev.yaml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
    let crd: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(crd["metadata"]["name"], "modelservices.berth.dev");
}

//! `berth up` as a user runs it (needs root): the server starts in-process, churn-model is built,
//! pushed, applied and becomes Ready, the printed curl line works through the service port,
//! SIGTERM stops it cleanly, and a second `berth up` on the same data dir resumes without
//! duplicate Pods. Ports, bridge and pod CIDR are the test's own; everything is removed at the end.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_api::ModelService;
use berth_e2e::node::{Leftovers, NodeSetup};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

/// One `berth up` process plus what it printed so far.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

/// The test's node: its data dir, names and ports; tears everything down on drop.
struct Node {
    dir: tempfile::TempDir,
    setup: NodeSetup,
    api_port: u16,
    service_port: u16,
    running: Option<Up>,
}

impl Node {
    fn new() -> Node {
        Node {
            dir: tempfile::Builder::new()
                .prefix("berth-e2e-up-")
                .tempdir_in("/var/tmp")
                .unwrap(),
            setup: NodeSetup::new(),
            api_port: berth_e2e::free_port(),
            service_port: berth_e2e::free_port(),
            running: None,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir().join("up.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Starts `berth up` with stdout piped (read line by line) and stderr to up.log.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(berth_e2e::berth_bin())
            .arg("up")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args([
                "--api-port",
                &self.api_port.to_string(),
                "--bind-address",
                "127.0.0.1",
            ])
            .args(self.setup.args())
            .args(["--service-port", &self.service_port.to_string()])
            .arg("--source-dir")
            .arg(berth_e2e::repo_root())
            .env("BERTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.running = Some(Up {
            child,
            lines,
            stdout: Vec::new(),
        });
    }

    /// Waits for the printed curl line; returns it.
    fn wait_for_curl_line(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let tail = self.log_tail_fn();
        let up = self.running.as_mut().expect("berth up runs");
        loop {
            match up.lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => {
                    let is_curl = line.trim_start().starts_with("curl -X POST");
                    up.stdout.push(line.clone());
                    if is_curl {
                        return line.trim().to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = up.child.wait().unwrap();
                    panic!(
                        "berth up exited ({status}) before it was ready; stdout {:?}\nlog:\n{}",
                        up.stdout,
                        tail()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "berth up not ready after {within:?}; stdout {:?}\nlog:\n{}",
                up.stdout,
                tail()
            );
        }
    }

    fn log_tail_fn(&self) -> impl Fn() -> String + use<> {
        let path = self.log_path();
        move || {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut up = self.running.take().expect("berth up runs");
        Command::new("kill")
            .args(["-TERM", &up.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = up.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "berth up did not stop after SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn client(&self) -> kube::Client {
        let kc =
            kube::config::Kubeconfig::read_from(self.data_dir().join("server/kubeconfig.yaml"))
                .unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut up) = self.running.take() {
            let _ = up.child.kill();
            let _ = up.child.wait();
        }
        self.setup.teardown(self.dir.path());
    }
}

/// POSTs `body` to 127.0.0.1:`port`/predict; returns (status, body).
fn predict(port: u16, body: &str) -> std::io::Result<(u16, String)> {
    berth_e2e::http::request(port, "POST", "/predict", body)
}

/// The port and body of `curl -X POST localhost:PORT/predict -d 'BODY'`.
fn parse_curl(line: &str) -> (u16, String) {
    let rest = line
        .strip_prefix("curl -X POST localhost:")
        .expect("curl line shape");
    let (port, rest) = rest.split_once("/predict -d '").expect("curl line shape");
    (
        port.parse().unwrap(),
        rest.strip_suffix('\'').expect("quoted body").to_string(),
    )
}

async fn live_pods(client: &kube::Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels("berth.dev/modelservice=churn-model");
    api.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// A `berth` client command against the node's server.
fn berth(node: &Node, args: &[&str]) -> String {
    let out = Command::new(berth_e2e::berth_bin())
        .args(args)
        .env("KUBECONFIG", node.data_dir().join("server/kubeconfig.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `get pods -o wide` shows where each Pod runs; `describe` shows conditions and the agent's
/// events (recorded through events.k8s.io/v1).
fn check_get_and_describe(node: &Node, pod: &str) {
    let wide = berth(node, &["get", "pods", "-o", "wide"]);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for col in ["NAME", "READY", "STATUS", "RESTARTS", "IP", "NODE"] {
        assert!(header.contains(&col), "no {col} column: {wide}");
    }
    let (ip_col, node_col) = (
        header.iter().position(|c| *c == "IP").unwrap(),
        header.iter().position(|c| *c == "NODE").unwrap(),
    );
    let cidr_prefix = node
        .setup
        .cluster_cidr
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
        + ".";
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{wide}");
    for row in &rows {
        assert_eq!(row.get(node_col), Some(&"e2e-node"), "{wide}");
        assert!(
            row.get(ip_col)
                .is_some_and(|ip| ip.starts_with(&cidr_prefix)),
            "{wide}"
        );
        assert_eq!(row[1], "1/1", "{wide}");
    }

    let described = berth(node, &["describe", "pod", pod]);
    for want in [
        "Conditions:",
        "Ready",
        "Events:",
        "Started container",
        "Pulled",
    ] {
        assert!(described.contains(want), "no {want:?} in:\n{described}");
    }
    let described = berth(node, &["describe", "ms", "churn-model"]);
    for want in ["Conditions:", "Available", "Progressing"] {
        assert!(described.contains(want), "no {want:?} in:\n{described}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_churn_model_stops_on_sigterm_and_resumes() {
    let mut node = Node::new();
    node.start();
    let curl = node.wait_for_curl_line(Duration::from_secs(600));
    let (port, body) = parse_curl(&curl);
    assert_eq!(port, node.service_port, "{curl}");
    let up = node.running.as_ref().unwrap();
    assert!(
        up.stdout.iter().any(|l| l == "churn-model: 3/3 ready"),
        "{:?}",
        up.stdout
    );
    let (status, answer) = predict(port, &body).unwrap();
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(answer["churn_probability"].is_f64(), "{answer}");

    let client = node.client().await;
    let mut first: Vec<String> = live_pods(&client)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    first.sort();
    assert_eq!(first.len(), 3);

    check_get_and_describe(&node, &first[0]);

    let status = node.stop();
    assert!(
        status.success(),
        "berth up exited with {status} on SIGTERM; log:\n{}",
        node.log_tail()
    );

    // Again on the same data dir: the same three Pods come back Ready, nothing is duplicated.
    node.start();
    let curl = node.wait_for_curl_line(Duration::from_secs(300));
    let client = node.client().await;
    let mut again: Vec<String> = live_pods(&client)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    again.sort();
    assert_eq!(again, first, "berth up again changed the Pods");
    let (port, body) = parse_curl(&curl);
    let (status, answer) = predict(port, &body).unwrap();
    assert_eq!(status, 200, "{answer}");

    // A real rollout through the agent: `berth rollout status` follows it to the end.
    let services: Api<ModelService> = Api::namespaced(client.clone(), "default");
    let patch = serde_json::json!({"spec": {"env": [{"name": "MODEL_PATH", "value": "/app/models/churn.json"},
        {"name": "LOG_LEVEL", "value": "debug"}]}});
    services
        .patch(
            "churn-model",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let rolled = berth(
        &node,
        &["rollout", "status", "ms/churn-model", "--timeout", "3m"],
    );
    assert!(
        rolled.ends_with("modelservice \"churn-model\" successfully rolled out\n"),
        "{rolled}"
    );
    eprintln!("berth rollout status printed:\n{rolled}");
    let pods = live_pods(&client).await;
    assert_eq!(pods.len(), 3, "{rolled}");
    for p in &pods {
        let env = p.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "LOG_LEVEL" && e.value.as_deref() == Some("debug")),
            "{rolled}"
        );
        assert!(p.metadata.deletion_timestamp.is_none());
    }
    let (status, answer) = predict(port, &body).unwrap();
    assert_eq!(status, 200, "{answer}");

    // Clean up through the API, as a user would, and check the machine is clean before stopping.
    let services: Api<ModelService> = Api::namespaced(client.clone(), "default");
    services
        .delete("churn-model", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let left = api.list(&ListParams::default()).await.unwrap().items.len();
        let leftovers = node.setup.leftovers(node.data_dir());
        if left == 0 && leftovers == Leftovers::default() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} pods and {leftovers:?} left; log:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = node.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn up_refuses_to_start_without_root() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(berth_e2e::berth_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(!data.exists(), "berth up created state before refusing");
}

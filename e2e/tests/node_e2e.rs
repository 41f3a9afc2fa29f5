//! A whole node, end to end, as a user runs it: `berth server` with its registry, controllers,
//! embedded runtime, agent and service proxy; ModelServices applied with `berth`/`kubectl`; real
//! containers; requests through the service port. Needs root (CI runs as root).
//!
//! Each test has a node of its own (bridge, pod CIDR and ports: `TestServer::start_node`), so they
//! run in parallel.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_api::ModelService;
use berth_e2e::node::{Leftovers, push_busybox, push_churn_model};
use berth_e2e::server::TestServer;
use berth_e2e::wait::eventually_logged;
use berth_e2e::workload::web_service;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const NS: &str = "default";

// ---------------------------------------------------------------------------------------------
// Helpers

use berth_e2e::http::request as http;

const PREDICT: &str = r#"{"tenure_months": 2, "monthly_charges": 95.5, "support_tickets": 5, "contract_monthly": true, "paperless_billing": 1, "num_products": 1}"#;

fn run_ok(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The churn-model example manifest with the image and service port of this test.
fn churn_manifest(image: &str, service_port: u16) -> Value {
    let text =
        std::fs::read_to_string(berth_e2e::repo_root().join("manifests/examples/churn-model.yaml"))
            .unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    v["spec"]["image"] = json!(image);
    v["spec"]["service"]["port"] = json!(service_port);
    v
}

/// Applies `obj` with `berth apply -f` (a file in the server's data dir).
fn berth_apply(s: &TestServer, obj: &Value) {
    let path = s.data_dir().join(format!(
        "{}.yaml",
        obj["metadata"]["name"].as_str().unwrap()
    ));
    std::fs::write(&path, serde_yaml::to_string(obj).unwrap()).unwrap();
    run_ok(
        "berth apply",
        s.berth().args(["apply", "-f"]).arg(&path).output(),
    );
}

fn pods(client: &kube::Client) -> Api<Pod> {
    Api::namespaced(client.clone(), NS)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

fn container_id(p: &Pod) -> Option<String> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    cs.container_id
        .as_deref()?
        .split_once("://")
        .map(|(_, id)| id.to_string())
}

/// The live (not terminating) Pods of ModelService `ms`.
async fn live_pods(client: &kube::Client, ms: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("berth.dev/modelservice={ms}"));
    let list = pods(client)
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until `ms` has exactly `n` Pods, all Running and Ready and none terminating, and its
/// status says n/n ready.
async fn wait_ready(s: &TestServer, client: &kube::Client, ms: &str, n: usize) -> Vec<Pod> {
    let api: Api<ModelService> = Api::namespaced(client.clone(), NS);
    eventually_logged(
        s,
        &format!("{n} Ready pods of {ms}"),
        Duration::from_secs(180),
        || async {
            let all = pods(client)
                .list(&ListParams::default().labels(&format!("berth.dev/modelservice={ms}")))
                .await
                .ok()?
                .items;
            let ready = all.iter().filter(|p| {
                is_ready(p)
                    && p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
            let status = api.get(ms).await.ok()?.status?;
            (all.len() == n && ready.count() == n && status.ready_replicas == Some(n as i32))
                .then_some(all)
        },
    )
    .await
}

/// Waits until nothing of the node's pods is left on the machine.
async fn wait_clean(s: &TestServer) {
    let node = s.node().expect("node server").clone();
    let dir = s.data_dir().to_path_buf();
    let left = eventually_logged(s, "the node to be clean", Duration::from_secs(90), || {
        let left = node.leftovers(&dir);
        async move { (left == Leftovers::default()).then_some(left) }
    })
    .await;
    assert_eq!(left, Leftovers::default());
}

/// Host pid of the process `comm` in container `id`.
fn host_pid_of(data_dir: &Path, id: &str, comm: &str) -> Option<u32> {
    berth_e2e::node::container_processes(data_dir)
        .into_iter()
        .find(|p| p.container_id == id && p.comm == comm)
        .map(|p| p.pid)
}

async fn events_of(client: &kube::Client, pod: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    api.list(&lp)
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn churn_model_serves_predictions_scales_and_cleans_up() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let image = push_churn_model(s.data_dir(), s.registry_port().unwrap(), "v1").unwrap();
    let port = berth_e2e::free_port();
    berth_apply(&s, &churn_manifest(&image, port));

    let ready = wait_ready(&s, &client, "churn-model", 3).await;
    for p in &ready {
        let st = p.status.as_ref().unwrap();
        assert!(
            st.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()),
            "pod IP of {}",
            p.name_any()
        );
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some("e2e-node")
        );
    }
    let (code, body) = http(port, "POST", "/predict", PREDICT).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["churn_probability"]
            .as_f64()
            .is_some_and(|p| (0.0..=1.0).contains(&p)),
        "{body}"
    );

    // `berth get pods -o wide` shows node, IP and restarts.
    let wide = run_ok(
        "berth get pods -o wide",
        s.berth().args(["get", "pods", "-o", "wide"]).output(),
    );
    assert!(
        wide.contains("e2e-node") && wide.contains("RESTARTS"),
        "{wide}"
    );
    let ip = ready[0].status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(wide.contains(&ip), "{wide}");

    // Scale 3 -> 5 with berth, 5 -> 1 with kubectl.
    run_ok(
        "berth scale",
        s.berth()
            .args(["scale", "ms/churn-model", "--replicas", "5"])
            .output(),
    );
    wait_ready(&s, &client, "churn-model", 5).await;
    run_ok(
        "kubectl scale",
        s.kubectl()
            .args(["scale", "modelservice/churn-model", "--replicas=1"])
            .output(),
    );
    wait_ready(&s, &client, "churn-model", 1).await;
    assert_eq!(http(port, "POST", "/predict", PREDICT).unwrap().0, 200);

    // Deleting the service removes every container, sandbox, mount, veth and cgroup; a Pod object
    // goes only after its agent stopped its containers (graceful deletion).
    run_ok(
        "berth delete",
        s.berth()
            .args(["delete", "ms", "churn-model", "--wait=false"])
            .output(),
    );
    let lp = ListParams::default().labels("berth.dev/modelservice=churn-model");
    eventually_logged(&s, "pods to go", Duration::from_secs(60), || async {
        pods(&client)
            .list(&lp)
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let left = s.node().unwrap().leftovers(s.data_dir());
    assert!(
        left.containers.is_empty() && left.processes.is_empty(),
        "Pods went before their containers: {left:?}"
    );
    wait_clean(&s).await;
}

#[tokio::test]
async fn rolling_update_under_load_loses_no_request() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let image = push_churn_model(s.data_dir(), s.registry_port().unwrap(), "v1").unwrap();
    let port = berth_e2e::free_port();
    berth_apply(&s, &churn_manifest(&image, port));
    let before: BTreeSet<String> = wait_ready(&s, &client, "churn-model", 3)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();

    // Steady load: two clients in a loop, every answer must be a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::<String>::new())),
    );
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match http(port, "POST", "/predict", PREDICT) {
                        Ok((200, _)) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failed.lock().unwrap().push(format!("{other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    // v1 -> v2: a changed env value rolls every Pod.
    let api: Api<ModelService> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"env": [{"name": "MODEL_PATH", "value": "/app/models/churn.json"}, {"name": "LOG_LEVEL", "value": "debug"}]}});
    api.patch(
        "churn-model",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let rollout = s
        .berth()
        .args(["rollout", "status", "ms/churn-model", "--timeout", "3m"])
        .output();
    let after = eventually_logged(
        &s,
        "the rollout to finish",
        Duration::from_secs(180),
        || async {
            let ms = api.get("churn-model").await.ok()?;
            let st = ms.status.clone()?;
            let pods = pods(&client)
                .list(&ListParams::default().labels("berth.dev/modelservice=churn-model"))
                .await
                .ok()?
                .items;
            let done = st.observed_generation == ms.metadata.generation
                && st.updated_replicas == Some(3)
                && st.ready_replicas == Some(3)
                && pods.len() == 3
                && pods
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p));
            done.then(|| {
                pods.iter()
                    .map(|p| p.name_any())
                    .collect::<BTreeSet<String>>()
            })
        },
    )
    .await;
    // Keep the load on a moment past the end of the rollout, then stop it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    assert!(
        before.is_disjoint(&after),
        "every Pod replaced: before {before:?}, after {after:?}"
    );
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failed.len(),
        failed.len() + ok.load(Ordering::SeqCst),
        &failed[..failed.len().min(5)]
    );
    assert!(ok.load(Ordering::SeqCst) > 50, "the load really ran");
    let out = rollout.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("successfully rolled out"),
        "berth rollout status: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    run_ok(
        "berth delete",
        s.berth().args(["delete", "ms", "churn-model"]).output(),
    );
    wait_clean(&s).await;
}

#[tokio::test]
async fn probes_restarts_and_replacement_heal_the_service() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let image = push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    let port = berth_e2e::free_port();
    berth_apply(&s, &web_service(&image, "web", 2, port));
    let ready = wait_ready(&s, &client, "web", 2).await;
    let names: BTreeSet<String> = ready.iter().map(|p| p.name_any()).collect();

    // The service balances over both Pods (each answers its host name = its Pod name).
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let (code, body) = http(port, "GET", "/", "").unwrap();
        assert_eq!(code, 200);
        seen.insert(body.trim().to_string());
    }
    assert_eq!(seen, names, "requests reach both Pods");

    // A readiness failure takes a Pod out of the service without restarting it.
    let (code, unready) = http(port, "GET", "/cgi-bin/unready", "").unwrap();
    assert_eq!(code, 200);
    let unready = unready.trim().to_string();
    let other = names.iter().find(|n| **n != unready).unwrap().clone();
    eventually_logged(
        &s,
        "the Pod to turn not Ready",
        Duration::from_secs(30),
        || async {
            let p = pods(&client).get(&unready).await.ok()?;
            (!is_ready(&p)).then_some(())
        },
    )
    .await;
    for _ in 0..10 {
        let (code, body) = http(port, "GET", "/", "").unwrap();
        assert_eq!(
            (code, body.trim()),
            (200, other.as_str()),
            "only the Ready Pod serves"
        );
    }
    assert_eq!(
        restarts(&pods(&client).get(&unready).await.unwrap()),
        0,
        "readiness does not restart"
    );

    // A failing liveness probe restarts the container (the only Ready Pod answers /cgi-bin/sick).
    let (_, sick) = http(port, "GET", "/cgi-bin/sick", "").unwrap();
    assert_eq!(sick.trim(), other);
    eventually_logged(
        &s,
        "the liveness restart",
        Duration::from_secs(60),
        || async {
            let p = pods(&client).get(&other).await.ok()?;
            (restarts(&p) == 1 && is_ready(&p)).then_some(())
        },
    )
    .await;
    let reasons: BTreeSet<String> = events_of(&client, &other)
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(
        reasons.contains("Unhealthy") && reasons.contains("Killing"),
        "events of {other}: {reasons:?}"
    );

    // Killing a container's process from outside: the container is restarted.
    let p = pods(&client).get(&unready).await.unwrap();
    let id = container_id(&p).unwrap();
    let pid = host_pid_of(s.data_dir(), &id, "httpd").expect("httpd's host pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    eventually_logged(
        &s,
        "the killed container to be restarted",
        Duration::from_secs(60),
        || async {
            let p = pods(&client).get(&unready).await.ok()?;
            (restarts(&p) == 1 && is_ready(&p)).then_some(())
        },
    )
    .await;

    // Deleting a Pod: a replacement appears.
    pods(&client)
        .delete(&unready, &DeleteParams::default())
        .await
        .unwrap();
    let now = wait_ready(&s, &client, "web", 2).await;
    let now: BTreeSet<String> = now.iter().map(|p| p.name_any()).collect();
    assert!(
        now.contains(&other) && !now.contains(&unready),
        "replacement: {now:?} (had {other}, {unready})"
    );

    run_ok(
        "berth delete",
        s.berth().args(["delete", "ms", "web"]).output(),
    );
    wait_clean(&s).await;
}

#[tokio::test]
async fn a_crashing_container_backs_off_with_growing_delays() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let image = push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    let ms = json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
        "metadata": {"name": "crash", "namespace": NS},
        "spec": {"image": image, "replicas": 1, "command": ["sh", "-c", "echo boom; exit 1"]}
    });
    berth_apply(&s, &ms);
    // Record when each restart count is first seen, and whether CrashLoopBackOff shows.
    let mut first_seen: BTreeMap<i32, Instant> = BTreeMap::new();
    let mut backoff_seen = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let name = loop {
        let list = live_pods(&client, "crash").await;
        if let Some(p) = list.first() {
            let r = restarts(p);
            first_seen.entry(r).or_insert_with(Instant::now);
            let waiting = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone());
            backoff_seen |= waiting.as_deref() == Some("CrashLoopBackOff");
            if r >= 3 {
                break p.name_any();
            }
        }
        assert!(
            Instant::now() < deadline,
            "restarts seen: {first_seen:?}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(backoff_seen, "waiting reason CrashLoopBackOff was shown");
    let gap = |a: i32, b: i32| first_seen[&b].duration_since(first_seen[&a]);
    let (d2, d3) = (gap(1, 2), gap(2, 3));
    assert!(
        d2 >= Duration::from_secs(8),
        "second restart waited {d2:?} (backoff 10 s)"
    );
    assert!(
        d3 > d2 + Duration::from_secs(5),
        "delays grow: {d2:?} then {d3:?}"
    );
    let reasons: Vec<String> = events_of(&client, &name)
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "BackOff"),
        "events: {reasons:?}"
    );
    // The log of the previous instance is kept.
    let logs = s
        .kubectl()
        .args(["logs", &name, "--previous"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("boom"),
        "kubectl logs --previous: {logs:?}"
    );
}

#[tokio::test]
async fn an_unschedulable_service_reports_why_and_harms_nothing() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let image = push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    let port = berth_e2e::free_port();
    berth_apply(&s, &web_service(&image, "web", 1, port));
    wait_ready(&s, &client, "web", 1).await;
    let huge = json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
        "metadata": {"name": "huge", "namespace": NS},
        "spec": {"image": image, "replicas": 1, "command": ["sleep", "3600"],
                 "resources": {"requests": {"memory": "100000Gi"}}}
    });
    berth_apply(&s, &huge);
    let (pod, message) = eventually_logged(
        &s,
        "PodScheduled=False",
        Duration::from_secs(60),
        || async {
            let p = live_pods(&client, "huge").await.into_iter().next()?;
            let c = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")?
                .clone();
            (c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
                .then(|| (p.name_any(), c.message.unwrap_or_default()))
        },
    )
    .await;
    assert!(
        message.to_lowercase().contains("memory"),
        "says why: {message}"
    );
    let events = events_of(&client, &pod).await;
    assert!(
        events.iter().any(|(r, _)| r == "FailedScheduling"),
        "{events:?}"
    );
    let describe = run_ok(
        "berth describe",
        s.berth().args(["describe", "pod", &pod]).output(),
    );
    assert!(describe.contains("FailedScheduling"), "{describe}");
    // The running service is untouched and still serves.
    assert_eq!(http(port, "GET", "/", "").unwrap().0, 200);
    assert_eq!(
        live_pods(&client, "web")
            .await
            .iter()
            .map(restarts)
            .sum::<i32>(),
        0
    );
}

#[tokio::test]
async fn containers_survive_a_server_restart_and_status_converges() {
    // A short node grace period: the server stays down longer than it in the second round, and
    // the restarted node lifecycle controller must not take that silence for a lost node.
    let mut s = TestServer::start_node(&["--node-grace-period", "3s"])
        .await
        .unwrap();
    let client = s.client().await.unwrap();
    let image = push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    let port = berth_e2e::free_port();
    berth_apply(&s, &web_service(&image, "web", 2, port));
    let before = wait_ready(&s, &client, "web", 2).await;
    let ids: BTreeMap<String, String> = before
        .iter()
        .map(|p| (p.name_any(), container_id(p).unwrap()))
        .collect();
    let pids: Vec<u32> = ids
        .values()
        .map(|id| host_pid_of(s.data_dir(), id, "httpd").unwrap())
        .collect();

    for (round, hard) in [(1, false), (2, true)] {
        if hard {
            s.kill9().unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        } else {
            s.stop().unwrap();
        }
        for pid in &pids {
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "round {round}: container process {pid} outlives the server"
            );
        }
        s.start_again(&[]).await.unwrap();
        // Give the restarted agent time to (wrongly) start anything twice before looking.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let client = s.client().await.unwrap();
        let after = wait_ready(&s, &client, "web", 2).await;
        let now: BTreeMap<String, String> = after
            .iter()
            .map(|p| (p.name_any(), container_id(p).unwrap()))
            .collect();
        assert_eq!(now, ids, "round {round}: same Pods, same containers");
        assert_eq!(
            after.iter().map(restarts).sum::<i32>(),
            0,
            "round {round}: nothing restarted"
        );
        let left = s.node().unwrap().leftovers(s.data_dir());
        assert_eq!(
            (left.sandboxes.len(), left.containers.len()),
            (2, 2),
            "round {round}: no duplicates: {left:?}"
        );
        assert_eq!(
            http(port, "GET", "/", "").unwrap().0,
            200,
            "round {round}: the service answers"
        );
    }
    let client = s.client().await.unwrap();
    let api: Api<ModelService> = Api::namespaced(client.clone(), NS);
    api.delete("web", &DeleteParams::default()).await.unwrap();
    wait_clean(&s).await;
}

//! `berth rollout status` against a real `berth server` with its controllers: the test plays the
//! node agent (a Ready Node, Pods flipped Ready, terminating Pods finalized) so the rollout's
//! progress is under its control.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::io::Read as _;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use berth_api::labels::MODELSERVICE_LABEL;
use berth_api::{ModelService, ModelServiceSpec};
use berth_e2e::fake::register_node;
use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

struct Cluster {
    server: TestServer,
    client: kube::Client,
}

impl Cluster {
    async fn start() -> Cluster {
        // A long grace period: the test's node posts no Lease, and must not be declared lost.
        let server = TestServer::start_with_controllers(&["--node-grace-period", "10m"])
            .await
            .unwrap();
        let client = server.client().await.unwrap();
        let c = Cluster { server, client };
        c.node().await;
        c
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn services(&self) -> Api<ModelService> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn node(&self) {
        let resources = json!({"cpu": "8", "memory": "16Gi", "pods": "110"});
        register_node(&self.client, "n1", json!({}), resources).await;
    }

    async fn create(&self, name: &str, replicas: i32) {
        let spec: ModelServiceSpec = serde_json::from_value(json!({"image": "localhost:5000/m:v1", "replicas": replicas,
            "env": [{"name": "MODE", "value": "one"}], "ports": [{"containerPort": 8080, "name": "http"}]}))
        .unwrap();
        self.services()
            .create(&PostParams::default(), &ModelService::new(name, spec))
            .await
            .unwrap();
    }

    async fn set_env(&self, name: &str, value: &str) {
        let patch = json!({"spec": {"env": [{"name": "MODE", "value": value}]}});
        self.services()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// One step of the agent's work: finalize terminating Pods, make one bound Pod Ready.
    /// Returns whether it changed anything.
    async fn agent_step(&self, name: &str) -> bool {
        let lp = ListParams::default().labels(&format!("{MODELSERVICE_LABEL}={name}"));
        let mut changed = false;
        for p in self.pods().list(&lp).await.unwrap().items {
            if p.metadata.deletion_timestamp.is_some() {
                let _ = self
                    .pods()
                    .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
                changed = true;
                continue;
            }
            let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if bound && !berth_controller::modelservice::is_ready(&p) {
                let status = json!({"status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
                self.pods()
                    .patch_status(
                        &p.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await
                    .unwrap();
                return true;
            }
        }
        changed
    }

    /// Plays the agent until `name` is rolled out according to its status.
    async fn settle(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.agent_step(name).await;
            let ms = self.services().get(name).await.unwrap();
            let want = Some(ms.spec.replicas);
            if let Some(s) = &ms.status
                && s.observed_generation == ms.metadata.generation
                && s.ready_replicas == want
                && s.updated_replicas == want
                && s.replicas == want
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not settle: {:?}",
                ms.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn rollout(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.server.berth();
        c.args(["rollout", "status"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_follows_an_env_change_until_rolled_out() {
    let c = Cluster::start().await;
    c.create("roll", 2).await;
    c.settle("roll").await;
    let out = c.rollout(&["ms/roll"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "modelservice \"roll\" successfully rolled out"
    );

    c.set_env("roll", "two").await;
    let mut child = c.rollout(&["ms/roll", "--timeout", "2m"]).spawn().unwrap();
    // Pods become Ready one by one, slowly enough for the command to see the steps.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "rollout status did not finish");
        c.agent_step("roll").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "no progress lines: {stdout}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("Waiting for rollout")),
        "{stdout}"
    );
    assert!(
        stdout.contains("updated replicas are available")
            || stdout.contains("new replicas have been updated"),
        "{stdout}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("modelservice \"roll\" successfully rolled out")
    );
    // Lines are printed when the progress changes, not repeated.
    assert!(lines.windows(2).all(|w| w[0] != w[1]), "{stdout}");
    let pods = c
        .pods()
        .list(&ListParams::default().labels(&format!("{MODELSERVICE_LABEL}=roll")))
        .await
        .unwrap();
    for p in pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let env = p.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        assert_eq!(
            env[0].value.as_deref(),
            Some("two"),
            "a Pod of the old spec remains"
        );
    }
    c.services()
        .delete("roll", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_times_out_and_reports_a_snapshot_without_watch() {
    let c = Cluster::start().await;
    c.create("stuck", 2).await;
    c.settle("stuck").await;
    // Nobody plays the agent after this change: the new Pods never become Ready.
    c.set_env("stuck", "two").await;
    let out = c
        .rollout(&["ms", "stuck", "--timeout", "3s"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(stdout.contains("Waiting for rollout"), "{stdout}");
    assert!(!stdout.contains("successfully"), "{stdout}");

    let out = c.rollout(&["ms/stuck", "--watch=false"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("Waiting for rollout"), "{stdout}");

    let out = c.rollout(&["ms/absent"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    let out = c.rollout(&["pods/x"]).output().unwrap();
    assert!(!out.status.success());
    c.services()
        .delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
}

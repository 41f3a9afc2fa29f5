//! `berth agent` as its own process, joining a `berth server --disable-agent` with the node token
//! and driving a separate `berth runtime` over CRI: the split a second machine uses. The agent is
//! killed while its Pod runs; the container keeps running and the restarted agent adopts it.
//! Needs root.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::node::NodeSetup;
use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// `berth runtime` in the host's network namespace on a bridge and pod CIDR of its own, rooted at
/// `DIR/runtime`; on drop it is killed and whatever its containers left is torn down.
struct Runtime {
    child: Child,
    setup: NodeSetup,
    dir: tempfile::TempDir,
}

impl Runtime {
    fn start() -> Runtime {
        let setup = NodeSetup::new();
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-agent-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let log = std::fs::File::create(dir.path().join("runtime.log")).unwrap();
        let pod_cidr = setup.cluster_cidr.replace(".0.0/16", ".0.0/24");
        let child = Command::new(berth_e2e::berth_bin())
            .arg("runtime")
            .arg("--listen")
            .arg(format!("unix://{}", dir.path().join("cri.sock").display()))
            .arg("--root")
            .arg(dir.path().join("runtime"))
            .args(["--bridge", &setup.bridge, "--pod-cidr", &pod_cidr])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.path().join("cri.sock").exists() {
            assert!(Instant::now() < deadline, "berth runtime did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Runtime { child, setup, dir }
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("cri.sock")
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("runtime")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.setup.teardown(self.dir.path());
    }
}

/// Starts `berth agent` for node `n1` against the server, with the node token, on the runtime.
fn start_agent(s: &TestServer, rt: &Runtime, data: &std::path::Path) -> Child {
    let token = std::fs::read_to_string(s.data_dir().join("server/node-token")).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("agent.log"))
        .unwrap();
    Command::new(berth_e2e::berth_bin())
        .args(["agent", "--server", &s.url(), "--token", token.trim()])
        .arg("--certificate-authority")
        .arg(s.data_dir().join("server/tls/ca.crt"))
        .args([
            "--node-name",
            "n1",
            "--kubelet-port",
            "0",
            "--disable-proxy",
            "--node-ip",
            "127.0.0.1",
            // The host's routes and NAT table are shared with parallel tests: leave them alone.
            "--disable-pod-routes",
        ])
        .arg("--container-runtime-endpoint")
        .arg(format!("unix://{}", rt.socket().display()))
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready_container(p: &Pod) -> Option<(String, i32)> {
    let st = p.status.as_ref()?;
    let ready = st
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let cs = st.container_statuses.as_ref()?.first()?;
    ready.then(|| {
        (
            cs.container_id.clone().unwrap_or_default(),
            cs.restart_count,
        )
    })
}

#[tokio::test]
async fn a_separate_agent_restarts_without_touching_its_containers() {
    let rt = Runtime::start();
    let cluster = rt.setup.cluster_cidr.clone();
    let s = TestServer::start_with_controllers(&["--cluster-cidr", &cluster])
        .await
        .unwrap();
    let data = tempfile::Builder::new()
        .prefix("berth-e2e-agent-data-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let client = s.client().await.unwrap();
    let mut agent = start_agent(&s, &rt, data.path());

    // The node registers with the node token and gets a pod CIDR from the server.
    let nodes: Api<Node> = Api::all(client.clone());
    let cidr = until("node n1 with a pod CIDR", || async {
        let n = nodes.get("n1").await.ok()?;
        n.spec?.pod_cidr
    })
    .await;
    let prefix = cluster.trim_end_matches("0.0/16");
    assert!(cidr.starts_with(prefix), "{cidr} from {cluster}");

    // A bare Pod bound to n1, its image in a peer registry (Debian's docker-registry).
    let registry = berth_e2e::peer::DockerRegistry::start().unwrap();
    let layout = berth_testkit::busybox::busybox_layout(data.path()).unwrap();
    let image = format!("{}/test/busybox:latest", registry.host());
    berth_e2e::peer::skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{image}"),
        None,
    )
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let (id, restarts) = until("the Pod Ready", || async {
        ready_container(&pods.get("sleeper").await.ok()?)
    })
    .await;
    assert_eq!(restarts, 0);

    // Kill the agent: the container keeps running; a new agent adopts it, nothing duplicated.
    agent.kill().unwrap();
    agent.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut agent = start_agent(&s, &rt, data.path());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (id2, restarts2) = until("the Pod Ready again", || async {
        ready_container(&pods.get("sleeper").await.ok()?)
    })
    .await;
    assert_eq!(
        (id2.as_str(), restarts2),
        (id.as_str(), 0),
        "same container, never restarted"
    );
    let sandboxes = std::fs::read_dir(rt.root().join("sandboxes"))
        .unwrap()
        .count();
    let containers = std::fs::read_dir(rt.root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(
        (sandboxes, containers),
        (1, 1),
        "no duplicates after the agent restart"
    );
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        all.items.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["sleeper"]
    );

    // Deleting the Pod: the agent stops and removes it, then the Pod object goes.
    pods.delete("sleeper", &Default::default()).await.unwrap();
    until("the Pod gone", || async {
        pods.get_opt("sleeper").await.ok()?.is_none().then_some(())
    })
    .await;
    let containers = std::fs::read_dir(rt.root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(containers, 0, "the container went before the Pod object");
    agent.kill().unwrap();
    agent.wait().unwrap();
}

//! Joining a machine with a join token: `berth agent --server URL --token TOKEN` against a `berth
//! server --disable-agent`, what the node credential it gets may do (the Node authorizer), and
//! the serving certificate naming an address added later (`--tls-san`) under the same CA.
//!
//! Most agents here have no container runtime (their CRI endpoint does not exist): joining comes
//! first, so they join, save their credentials and then wait for a runtime; the tests use the
//! saved credentials, and kill the agents. The node endpoint is tested on a whole node
//! (`TestServer::start_node`, root), and one agent is a whole node by itself ([`WholeNode`]:
//! the embedded runtime, a Pod running on it; root).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::node::NodeSetup;
use berth_e2e::server::TestServer;
use berth_e2e::wait::eventually;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::json;

/// A `berth agent` process with a data dir of its own; killed on drop.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `berth agent` for node `name` with `token` against `s`.
    fn start(s: &TestServer, name: &str, token: &str) -> Agent {
        Agent::start_in(tempfile::tempdir().unwrap(), s, name, Some(token))
    }

    /// Starts `berth agent` with the data dir `dir` (and `--token` if given).
    fn start_in(dir: tempfile::TempDir, s: &TestServer, name: &str, token: Option<&str>) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new(berth_e2e::berth_bin())
            .args(["agent", "--server", &s.url()])
            .args(token.map(|t| ["--token", t]).into_iter().flatten())
            .args([
                "--node-name",
                name,
                "--kubelet-port",
                "0",
                "--disable-proxy",
                "--disable-pod-routes",
            ])
            .arg("--container-runtime-endpoint")
            .arg(format!(
                "unix://{}",
                dir.path().join("no-runtime.sock").display()
            ))
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Waits until the agent has joined (its kubeconfig is saved) or has exited; true if joined.
    fn joined(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.kubeconfig().exists() {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return self.kubeconfig().exists();
            }
            assert!(
                Instant::now() < deadline,
                "agent neither joined nor exited: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the agent and hands back its data dir.
    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// A client with the node credential the agent saved.
    async fn client(&self) -> kube::Client {
        node_client(&self.kubeconfig()).await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn default_token(s: &TestServer) -> String {
    std::fs::read_to_string(s.data_dir().join("server/node-token"))
        .unwrap()
        .trim()
        .to_string()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

async fn node_names(s: &TestServer) -> Vec<String> {
    let nodes: Api<Node> = Api::all(s.client().await.unwrap());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect()
}

/// `berth token ARGS` against `s`; returns stdout (panics on failure).
fn berth_token(s: &TestServer, args: &[&str]) -> String {
    let out = s.berth().arg("token").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "berth token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_token_pins_the_ca_and_holds_a_secret() {
    let s = TestServer::start().await.unwrap();
    let token = default_token(&s);
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(s.data_dir().join("server/tls/ca.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let fingerprint = text.trim().rsplit('=').next().unwrap().replace(':', "");
    let (head, credential) = token.split_once("::").unwrap();
    assert_eq!(head, format!("B10{}", fingerprint.to_lowercase()));
    let (id, secret) = credential.split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16), "{token}");
}

#[tokio::test]
async fn a_wrong_ca_fingerprint_fails_and_registers_nothing() {
    let s = TestServer::start().await.unwrap();
    let token = default_token(&s);
    let (_, credential) = token.split_once("::").unwrap();
    let wrong = format!("B10{}::{credential}", "ab".repeat(32));
    let mut agent = Agent::start(&s, "n1", &wrong);
    assert!(!agent.joined());
    let log = agent.log();
    assert!(log.contains("but the join token pins abab"), "{log}");
    assert!(node_names(&s).await.is_empty());
    let secrets: Api<Secret> = Api::namespaced(s.client().await.unwrap(), "kube-system");
    assert!(
        secrets
            .get_opt("node-credential-n1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = TestServer::start().await.unwrap();
    let token = berth_token(&s, &["create", "--ttl", "1s"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut agent = Agent::start(&s, "n1", token.trim());
    assert!(!agent.joined());
    let log = agent.log();
    assert!(log.contains("expired at"), "{log}");
    assert!(node_names(&s).await.is_empty());
}

#[tokio::test]
async fn token_create_list_delete_round_trip() {
    let s = TestServer::start().await.unwrap();
    let token = berth_token(&s, &["create", "--ttl", "24h", "--description", "for e2e"]);
    let token = token.trim();
    let (_, credential) = token.split_once("::").unwrap();
    let (id, secret) = credential.split_once('.').unwrap();
    let list = berth_token(&s, &["list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("for e2e") && row.contains("23h"), "{row}");
    assert!(!list.contains(secret), "list shows no secrets: {list}");
    let default_id = default_token(&s).split_once("::").unwrap().1[..6].to_string();
    assert!(list.contains(&default_id), "{list}");

    let mut joined = Agent::start(&s, "n1", token);
    assert!(joined.joined(), "{}", joined.log());
    berth_token(&s, &["delete", id]);
    assert!(!berth_token(&s, &["list"]).contains(id));
    let mut refused = Agent::start(&s, "n2", token);
    assert!(!refused.joined());
    assert!(refused.log().contains("unknown"), "{}", refused.log());
    // Deleting the token does not revoke the credentials it bought; deleting the credential does.
    let nodes: Api<Node> = Api::all(joined.client().await);
    nodes.get("n1").await.unwrap();
    Api::<Secret>::namespaced(s.client().await.unwrap(), "kube-system")
        .delete("node-credential-n1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(nodes.get("n1").await.unwrap_err()), 401);
}

#[tokio::test]
async fn a_joined_agent_restarts_without_the_token() {
    let s = TestServer::start().await.unwrap();
    let mut agent = Agent::start(&s, "n1", &default_token(&s));
    assert!(agent.joined(), "{}", agent.log());
    let dir = agent.stop();
    let before = std::fs::read_to_string(dir.path().join("agent.log"))
        .unwrap()
        .len();
    let again = Agent::start_in(dir, &s, "n1", None);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The agent names its node once it has an API client, before it looks for its runtime.
    loop {
        let log = again.log()[before..].to_string();
        assert!(!log.contains("--token is needed"), "{log}");
        if log.contains("berth agent: node n1") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_token_without_fingerprint_needs_a_ca_file() {
    let s = TestServer::start().await.unwrap();
    let token = default_token(&s);
    let (_, credential) = token.split_once("::").unwrap();
    let mut agent = Agent::start(&s, "n1", credential);
    assert!(!agent.joined());
    assert!(
        agent.log().contains("carries no CA fingerprint"),
        "{}",
        agent.log()
    );
    assert!(node_names(&s).await.is_empty());
}

#[tokio::test]
async fn a_node_credential_is_confined_to_its_node() {
    let s = TestServer::start().await.unwrap();
    let admin = s.client().await.unwrap();
    let mut agent = Agent::start(&s, "n1", &default_token(&s));
    assert!(agent.joined(), "{}", agent.log());
    let node = agent.client().await;
    let admin_nodes: Api<Node> = Api::all(admin.clone());
    let other = serde_json::from_value(json!({"metadata": {"name": "n2"}})).unwrap();
    admin_nodes
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let secret = serde_json::from_value(json!({"metadata": {"name": "unrelated"},
        "stringData": {"k": "v"}}))
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let nodes: Api<Node> = Api::all(node.clone());
    let label = json!({"metadata": {"labels": {"x": "y"}}});
    let err = nodes
        .patch("n2", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap_err();
    assert_eq!(code(err), 403);
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();

    let ar = ApiResource::erase::<berth_api::ModelService>(&());
    let ms: Api<DynamicObject> = Api::namespaced_with(node.clone(), "default", &ar);
    let obj = DynamicObject::new("m", &ar).data(json!({"spec": {"image": "x"}}));
    match ms.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{}", e.message),
        other => panic!("created a ModelService: {other:?}"),
    }
    let secrets: Api<Secret> = Api::namespaced(node.clone(), "default");
    let err = secrets.get("unrelated").await.unwrap_err();
    assert_eq!(code(err), 403);

    // Deleting the Node revokes the credential.
    admin_nodes
        .delete("n1", &DeleteParams::default())
        .await
        .unwrap();
    let err = nodes.get("n2").await.unwrap_err();
    assert_eq!(code(err), 401);
}

#[tokio::test]
async fn anonymous_calls_to_the_node_endpoint_get_401() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let nodes: Api<Node> = Api::all(s.client().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    let port = loop {
        let list = nodes.list(&ListParams::default()).await.unwrap();
        let port = list.items.iter().find_map(|n| {
            Some(
                n.status
                    .as_ref()?
                    .daemon_endpoints
                    .as_ref()?
                    .kubelet_endpoint
                    .as_ref()?
                    .port,
            )
        });
        if let Some(p) = port.filter(|p| *p > 0) {
            break p;
        }
        assert!(Instant::now() < deadline, "no node endpoint published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/p/c");
    let status = |auth: Option<String>| {
        let mut c = Command::new("curl");
        c.args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url]);
        if let Some(a) = auth {
            c.args(["-H", &a]);
        }
        String::from_utf8(c.output().unwrap().stdout).unwrap()
    };
    assert_eq!(status(None), "401");
    let join = format!("Authorization: Bearer {}", default_token(&s));
    assert_eq!(
        status(Some(join)),
        "401",
        "the join token opens no node endpoint"
    );
    let admin = format!("Authorization: Bearer {}", s.token());
    assert_eq!(status(Some(admin)), "401", "nor does the admin token");
}

/// `berth agent` as one command makes a machine a node: the embedded runtime under its data dir
/// (no `--container-runtime-endpoint`), a bridge of its own; killed and torn down on drop.
struct WholeNode {
    child: Child,
    args: Vec<String>,
    setup: NodeSetup,
    dir: tempfile::TempDir,
}

impl WholeNode {
    /// Joins `s` as node `name` with pods in `cluster_cidr`.
    fn start(s: &TestServer, name: &str, cluster_cidr: &str) -> WholeNode {
        let setup = NodeSetup::new();
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-whole-node-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let args = Self::args(s, name, cluster_cidr, &setup.bridge, dir.path());
        let child = Self::spawn(&args, dir.path());
        WholeNode {
            child,
            args,
            setup,
            dir,
        }
    }

    fn args(s: &TestServer, name: &str, cidr: &str, bridge: &str, dir: &Path) -> Vec<String> {
        let dir = dir.to_string_lossy();
        [
            "agent",
            "--server",
            &s.url(),
            "--token",
            &default_token(s),
            "--data-dir",
            &dir,
            "--node-name",
            name,
            "--node-ip",
            "127.0.0.1",
            "--kubelet-port",
            "0",
            "--proxy-bind-address",
            "127.0.0.1",
            "--bridge",
            bridge,
            "--cluster-cidr",
            cidr,
            "--disable-pod-routes",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    fn spawn(args: &[String], dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .unwrap();
        Command::new(berth_e2e::berth_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Starts the stopped agent again, as before.
    fn restart(&mut self) {
        self.child = Self::spawn(&self.args, self.dir.path());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Asks the agent to stop (SIGTERM, as a service manager does) and waits until it has.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "agent ignored SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for WholeNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.setup.teardown(self.dir.path());
    }
}

/// Whether `ip` lies in the IPv4 network `cidr` (`A.B.C.D/N`).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let (net, len): (std::net::Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[tokio::test]
async fn one_agent_command_makes_a_whole_node() {
    // The control plane with its registry, no node of its own.
    let s = TestServer::start_node(&["--disable-agent"]).await.unwrap();
    let cluster = s.node().unwrap().cluster_cidr.clone();
    let image = berth_e2e::node::push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    let mut node = WholeNode::start(&s, "n1", &cluster);
    let client = s.client().await.unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let within = Duration::from_secs(60);
    let pod_cidr = eventually("n1 registered with a pod CIDR", within, || async {
        nodes.get("n1").await.ok()?.spec?.pod_cidr
    })
    .await;
    assert!(
        in_cidr(pod_cidr.split('/').next().unwrap(), &cluster),
        "{pod_cidr} in {cluster}"
    );
    let socket = node.dir.path().join("runtime/cri.sock");
    assert!(
        socket.exists(),
        "the embedded runtime listens under the data dir"
    );
    assert!(
        node.log()
            .contains(&format!("on unix://{}", socket.display())),
        "{}",
        node.log()
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running_pod = || async {
        let st = pods.get("sleeper").await.ok()?.status?;
        let c = st.container_statuses?.into_iter().next()?;
        let ip = st.pod_ip?;
        (st.phase.as_deref() == Some("Running")).then_some((ip, c.container_id?, c.restart_count))
    };
    let (pod_ip, id, _) = eventually("the Pod Running with an IP", within, running_pod).await;
    assert!(in_cidr(&pod_ip, &pod_cidr), "pod IP {pod_ip} in {pod_cidr}");
    let data_dir = node.dir.path().to_path_buf();
    let running = || {
        berth_e2e::node::container_processes(&data_dir)
            .iter()
            .any(|p| p.comm == "sleep")
    };
    assert!(running(), "the container runs under the agent's runtime");

    // Stopping the agent stops its runtime, not the containers (their shims own them).
    node.terminate();
    assert!(
        node.log().contains("stopping (containers keep running)"),
        "{}",
        node.log()
    );
    assert!(running(), "the container outlives the agent");

    // The agent started again adopts it: the same container, never restarted, not duplicated.
    node.restart();
    eventually("the agent back", within, || async {
        let log = node.log();
        (log.matches("berth agent: node n1").count() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = eventually("the Pod Running again", within, running_pod).await;
    assert_eq!(again, (pod_ip, id, 0), "the same container, adopted");
    let sleeps = berth_e2e::node::container_processes(&data_dir)
        .iter()
        .filter(|p| p.comm == "sleep")
        .count();
    assert_eq!(sleeps, 1, "one container, not two");
}

/// The subject alternative names of the certificate the server at `port` serves (openssl).
fn served_sans(port: u16) -> String {
    let fetch = format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null \
         | openssl x509 -noout -ext subjectAltName"
    );
    let out = Command::new("sh").args(["-c", &fetch]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_tls_san_added_later_is_served_and_the_token_stays_valid() {
    let mut s = TestServer::start().await.unwrap();
    let token = default_token(&s);
    assert!(!served_sans(s.port()).contains("api.berth.test"));
    s.stop().unwrap();
    s.start_again(&["--tls-san", "api.berth.test", "--tls-san", "192.0.2.7"])
        .await
        .unwrap();
    let sans = served_sans(s.port());
    assert!(sans.contains("DNS:api.berth.test"), "{sans}");
    assert!(sans.contains("IP Address:192.0.2.7"), "{sans}");
    assert!(sans.contains("IP Address:127.0.0.1"), "{sans}");
    assert_eq!(
        default_token(&s),
        token,
        "the CA, and so the token, unchanged"
    );
    // The CA clients already hold verifies the new certificate: agents still join with the token.
    let mut agent = Agent::start(&s, "n1", &token);
    assert!(agent.joined(), "{}", agent.log());
    assert_eq!(node_names(&s).await, ["n1"]);
}

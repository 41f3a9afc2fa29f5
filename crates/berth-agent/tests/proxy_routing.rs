//! The service proxy against an in-process API server: ModelServices and Pods created through
//! kube-rs, Pod IPs pointing at TCP backends on loopback (each on its own port, named `http` in
//! the Pod's container ports and reached through the ModelService's named `targetPort`).
//!
//! Each backend greets a connection with its name and a newline, then echoes what the client sent
//! once the client half-closes, so a reply shows both who served it and that bytes went both ways.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use berth_agent::proxy;
use berth_api::ModelService;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{LOCALHOST, free_ports, listen};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a test waits for the proxy to reflect a change (the watch is much faster).
const PATIENCE: Duration = Duration::from_secs(20);

/// An API server over the in-memory store with the ModelService CRD, a client, and the proxy.
struct Cluster {
    _dir: tempfile::TempDir,
    server: berth_apiserver::Running,
    client: kube::Client,
    proxy: JoinHandle<Result<(), proxy::ProxyError>>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = support::api::start(dir.path(), vec![berth_api::crd_json()]).await;
        let proxy = tokio::spawn(proxy::run(client.clone(), LOCALHOST));
        Cluster {
            _dir: dir,
            server,
            client,
            proxy,
        }
    }

    fn services(&self) -> Api<ModelService> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// A ModelService `name` served on `port`, its target the container port named `http`.
    async fn create_service(&self, name: &str, port: u16) {
        let ms: ModelService = serde_json::from_value(json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
            "metadata": {"name": name},
            "spec": {"image": "localhost:5000/model:v1", "replicas": 1,
                     "ports": [{"name": "http", "containerPort": 80}],
                     "service": {"port": port, "targetPort": "http"}}
        }))
        .unwrap();
        self.services()
            .create(&PostParams::default(), &ms)
            .await
            .unwrap();
    }

    /// A Pod of `service` on a node, its `http` port being `backend`'s, Ready as `ready` says.
    async fn create_pod(&self, service: &str, name: &str, backend: SocketAddr, ready: bool) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"berth.dev/modelservice": service, "pod-template-hash": "h1"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "model", "image": "localhost:5000/model:v1",
                     "ports": [{"name": "http", "containerPort": backend.port()}]}]}
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        self.set_status(name, backend.ip(), ready).await;
    }

    async fn set_status(&self, pod: &str, ip: IpAddr, ready: bool) {
        let status = if ready { "True" } else { "False" };
        let patch = json!({"status": {"phase": "Running", "podIP": ip.to_string(),
                                      "conditions": [{"type": "Ready", "status": status}]}});
        self.pods()
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    fn stop(self) {
        self.proxy.abort();
        self.server.stop();
    }
}

/// A TCP backend named `name` on a free loopback port.
struct Backend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start(name: &'static str) -> Backend {
        let (listener, addr) = listen().await;
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(greet_and_echo(conn, name));
            }
        });
        Backend { addr, task }
    }

    /// Closes the backend's listener (connections already accepted go on); returns once the
    /// port refuses connections.
    async fn close(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn greet_and_echo(mut conn: TcpStream, name: &str) {
    let _ = conn.write_all(format!("{name}\n").as_bytes()).await;
    let mut body = Vec::new();
    if conn.read_to_end(&mut body).await.is_ok() {
        let _ = conn.write_all(&body).await;
    }
}

/// A connection through the proxy that has been greeted by its backend.
struct Open {
    backend: String,
    reader: BufReader<TcpStream>,
}

impl Open {
    async fn connect(port: u16) -> std::io::Result<Open> {
        let conn = TcpStream::connect(SocketAddr::new(LOCALHOST, port)).await?;
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed without a backend",
            ));
        }
        Ok(Open {
            backend: line.trim_end().to_string(),
            reader,
        })
    }

    /// Sends `body`, half-closes, and returns the echo.
    async fn finish(mut self, body: &str) -> std::io::Result<String> {
        self.reader.get_mut().write_all(body.as_bytes()).await?;
        self.reader.get_mut().shutdown().await?;
        let mut echo = String::new();
        self.reader.read_to_string(&mut echo).await?;
        Ok(echo)
    }
}

/// One whole request through the proxy; returns the backend that served it.
async fn request(port: u16) -> std::io::Result<String> {
    let open = Open::connect(port).await?;
    let backend = open.backend.clone();
    let echo = open.finish("ping").await?;
    assert_eq!(
        echo, "ping",
        "the backend's echo came back through the proxy"
    );
    Ok(backend)
}

/// The backends serving `n` consecutive requests, or the first failure.
async fn serving(port: u16, n: usize) -> std::io::Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(request(port).await?);
    }
    Ok(seen)
}

/// Polls `check` until it returns true, failing the test after [`PATIENCE`].
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    let failure = format!("timed out waiting until {what}");
    support::eventually(PATIENCE, Duration::from_millis(50), &failure, check).await
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Connects to the proxy's `port` as soon as it accepts connections.
async fn connect_when_open(port: u16) -> TcpStream {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(SocketAddr::new(LOCALHOST, port)).await {
            Ok(conn) => return conn,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the service port never opened: {e}"),
        }
    }
}

async fn refused(port: u16) -> bool {
    matches!(TcpStream::connect(SocketAddr::new(LOCALHOST, port)).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test]
async fn requests_reach_every_ready_pod_and_leave_not_ready_and_deleting_ones() {
    let cluster = Cluster::start().await;
    let [port] = free_ports();
    let (a, b, c, d) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    );
    cluster.create_service("churn", port).await;
    cluster.create_pod("churn", "churn-a", a.addr, true).await;
    cluster.create_pod("churn", "churn-b", b.addr, true).await;
    cluster.create_pod("churn", "churn-c", c.addr, true).await;
    // Listening and Running, but never Ready: gets no traffic.
    cluster.create_pod("churn", "churn-d", d.addr, false).await;

    // Round-robin: once all three are in the set, three requests reach all three.
    eventually("all Ready pods serve", || async {
        serving(port, 3).await.ok() == Some(names(&["a", "b", "c"]))
    })
    .await;
    assert!(!serving(port, 12).await.unwrap().contains("d"));

    // A connection open to b when b stops being Ready is left to finish.
    let mut to_b = None;
    while to_b.is_none() {
        let open = Open::connect(port).await.unwrap();
        if open.backend == "b" {
            to_b = Some(open);
        }
    }
    cluster.set_status("churn-b", b.addr.ip(), false).await;
    eventually("b is out", || async {
        serving(port, 6).await.unwrap() == names(&["a", "c"])
    })
    .await;
    assert_eq!(to_b.unwrap().finish("late").await.unwrap(), "late");

    // Deleting with a grace period: the Pod stays (with a deletionTimestamp) and its backend
    // still listens, but it gets no new connections.
    cluster
        .pods()
        .delete("churn-c", &DeleteParams::default().grace_period(30))
        .await
        .unwrap();
    let deleting = cluster.pods().get("churn-c").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    eventually("c is out", || async {
        serving(port, 6).await.unwrap() == names(&["a"])
    })
    .await;

    // Ready again: back in.
    cluster.set_status("churn-b", b.addr.ip(), true).await;
    eventually("b is back", || async {
        serving(port, 4).await.unwrap() == names(&["a", "b"])
    })
    .await;
    cluster.stop();
}

#[tokio::test]
async fn a_ready_pod_whose_listener_is_closed_is_skipped_without_failing_the_client() {
    let cluster = Cluster::start().await;
    let [port] = free_ports();
    let (live, mut dying) = (Backend::start("live").await, Backend::start("dying").await);
    cluster.create_service("fraud", port).await;
    cluster
        .create_pod("fraud", "fraud-live", live.addr, true)
        .await;
    cluster
        .create_pod("fraud", "fraud-dying", dying.addr, true)
        .await;
    eventually("both pods serve", || async {
        serving(port, 2).await.ok() == Some(names(&["live", "dying"]))
    })
    .await;

    // The Pod stays Ready in the API, but nothing listens on its port any more: every request
    // still succeeds, served by the other one.
    dying.close().await;
    assert_eq!(serving(port, 10).await.unwrap(), names(&["live"]));
    cluster.stop();
}

#[tokio::test]
async fn a_connection_without_endpoints_waits_for_the_first_ready_pod() {
    let cluster = Cluster::start().await;
    let [port] = free_ports();
    let backend = Backend::start("first").await;
    cluster.create_service("slow", port).await;
    // The connection is accepted once the proxy has seen the service, and held until a Pod
    // becomes Ready.
    let conn = connect_when_open(port).await;
    cluster
        .create_pod("slow", "slow-1", backend.addr, true)
        .await;
    let mut reader = BufReader::new(conn);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.unwrap();
    assert_eq!(greeting, "first\n");
    cluster.stop();
}

#[tokio::test]
async fn a_connection_without_any_endpoint_is_closed_after_a_while() {
    let cluster = Cluster::start().await;
    let [port] = free_ports();
    cluster.create_service("empty", port).await;
    let mut conn = connect_when_open(port).await;
    // Not held forever: closed without a byte once the wait for an endpoint is over.
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut got)).await;
    assert!(read.expect("the connection was held for too long").is_ok());
    assert!(got.is_empty());
    cluster.stop();
}

#[tokio::test]
async fn changing_the_port_moves_the_listener_and_deleting_the_service_closes_it() {
    let cluster = Cluster::start().await;
    let [old_port, new_port] = free_ports();
    let backend = Backend::start("m").await;
    cluster.create_service("moving", old_port).await;
    cluster
        .create_pod("moving", "moving-1", backend.addr, true)
        .await;
    eventually("the old port serves", || async {
        request(old_port).await.is_ok()
    })
    .await;

    let patch = json!({"spec": {"service": {"port": new_port}}});
    cluster
        .services()
        .patch("moving", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the new port serves", || async {
        request(new_port).await.is_ok()
    })
    .await;
    eventually("the old port is closed", || refused(old_port)).await;

    cluster
        .services()
        .delete("moving", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the port is closed", || refused(new_port)).await;
    cluster.stop();
}

#[tokio::test]
async fn a_taken_port_is_reported_with_an_event_and_served_once_free() {
    let cluster = Cluster::start().await;
    let (holder, addr) = listen().await;
    let port = addr.port();
    let backend = Backend::start("x").await;
    cluster.create_service("taken", port).await;
    cluster
        .create_pod("taken", "taken-1", backend.addr, true)
        .await;

    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    eventually("a PortInUse event is recorded", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("PortInUse")
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("taken")
        })
    })
    .await;

    drop(holder);
    eventually("the freed port serves", || async {
        request(port).await.is_ok()
    })
    .await;
    cluster.stop();
}

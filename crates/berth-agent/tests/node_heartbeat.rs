//! The node's heartbeat across a cut link: the agent's Lease loop and Node status loop talk to an
//! in-process API server through a TCP relay the test can cut (bytes and new connections held,
//! as a link that drops packets until it comes back) and restore.
//!
//! While cut, renewals stop (each gives up after one beat, none piles up); the server, as the
//! node lifecycle controller would, marks the Node `Ready=Unknown`. Once restored, renewals
//! resume, the return is announced to the rest of the agent, and the agent posts `Ready=True`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_agent::node::{self, MachineInfo};
use berth_agent::{AgentConfig, lease};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{LOCALHOST, eventually, listen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long a test waits for something the agent does within a few beats.
const PATIENCE: Duration = Duration::from_secs(30);

/// Waits while the link is cut.
async fn while_cut(cut: &AtomicBool) {
    while cut.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies one direction, holding the bytes while the link is cut.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, cut: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while_cut(&cut).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A relay on a free loopback port to `upstream`; returns its address and the switch that cuts it.
async fn relay(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let (listener, addr) = listen().await;
    let cut = Arc::new(AtomicBool::new(false));
    let switch = cut.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let cut = cut.clone();
            tokio::spawn(async move {
                while_cut(&cut).await;
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, cut.clone()));
                pump(sr, cw, cut).await;
            });
        }
    });
    (addr, switch)
}

/// A client of the API server at `kubeconfig` that connects through `via` instead.
async fn client_via(kubeconfig: &std::path::Path, via: SocketAddr) -> kube::Client {
    let mut kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    for c in &mut kc.clusters {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.server = Some(format!("https://{via}"));
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn ready_of(n: &Node) -> Option<String> {
    let conds = n.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

async fn renewed(leases: &Api<Lease>, node: &str) -> Option<Timestamp> {
    let lease = leases.get_opt(node).await.unwrap()?;
    Some(lease.spec?.renew_time?.0)
}

#[tokio::test]
async fn after_a_cut_link_the_lease_resumes_and_the_node_posts_ready_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = support::api::start(dir.path(), Vec::new()).await;
    let upstream = SocketAddr::new(LOCALHOST, server.addr.port());
    let (via, cut) = relay(upstream).await;
    let agent_client = client_via(&server.kubeconfig, via).await;

    let mut config = AgentConfig::new("n1", "unix:///unused.sock", dir.path().into());
    config.lease_renew = Duration::from_millis(200);
    let info = MachineInfo {
        cpus: 1,
        memory_bytes: 1 << 30,
        os_image: "test".into(),
        kernel_version: "6".into(),
        runtime_version: "test://0".into(),
    };
    let status = node::status(&config, &info, 10250, Time(Timestamp::now()));
    let registered = node::register(&agent_client, &config, &status)
        .await
        .unwrap();
    let uid = registered.metadata.uid.unwrap();
    let (reconnected, reconnects) = tokio::sync::watch::channel(0u64);
    let beat = tokio::spawn(lease::run(
        agent_client.clone(),
        config.clone(),
        uid,
        reconnected,
    ));
    // A heartbeat period far beyond the test: any post seen here answers the cut.
    let posts = tokio::spawn(node::status_loop(
        agent_client,
        config,
        info,
        10250,
        Duration::from_secs(3600),
        reconnects.clone(),
    ));

    let leases: Api<Lease> = Api::namespaced(admin.clone(), lease::NAMESPACE);
    let nodes: Api<Node> = Api::all(admin.clone());
    let first = {
        let mut first = None;
        eventually(
            PATIENCE,
            Duration::from_millis(50),
            "a first renewal",
            async || {
                first = renewed(&leases, "n1").await;
                first.is_some()
            },
        )
        .await;
        first.unwrap()
    };
    eventually(
        PATIENCE,
        Duration::from_millis(50),
        "renewals keep coming",
        async || renewed(&leases, "n1").await.is_some_and(|t| t > first),
    )
    .await;

    cut.store(true, Ordering::SeqCst);
    // Let a renewal that was on its way land, then renewals stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = renewed(&leases, "n1").await.unwrap();
    // The server takes the node for lost meanwhile.
    let unknown = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown",
        "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&unknown))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        renewed(&leases, "n1").await,
        Some(during),
        "no renewal crossed the cut"
    );
    assert_eq!(*reconnects.borrow(), 0, "no return announced while cut");
    assert_eq!(
        ready_of(&nodes.get("n1").await.unwrap()).as_deref(),
        Some("Unknown")
    );

    cut.store(false, Ordering::SeqCst);
    eventually(
        PATIENCE,
        Duration::from_millis(50),
        "renewals resume",
        async || renewed(&leases, "n1").await.is_some_and(|t| t > during),
    )
    .await;
    eventually(
        PATIENCE,
        Duration::from_millis(50),
        "the return is announced",
        async || *reconnects.borrow() > 0,
    )
    .await;
    eventually(
        PATIENCE,
        Duration::from_millis(50),
        "the node posts Ready=True",
        async || ready_of(&nodes.get("n1").await.unwrap()).as_deref() == Some("True"),
    )
    .await;
    beat.abort();
    posts.abort();
}

//! The node's heartbeat across a cut link: the agent's Lease loop and Node status loop talk to an
//! in-process API server through a TCP relay the test can cut and restore (connections from before
//! the cut stay dead, the Node watch among them).
//!
//! While cut, renewals stop (each gives up after one beat, none piles up); the server, as the
//! node lifecycle controller would, marks the Node `Ready=Unknown`. Once restored, renewals
//! resume, the return is announced to the rest of the agent, and the agent posts `Ready=True`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use berth_agent::node::{self, MachineInfo};
use berth_agent::{AgentConfig, lease};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::relay::{Relay, client_via};
use support::{LOCALHOST, eventually};

/// How long a test waits for something the agent does within a few beats.
const PATIENCE: Duration = Duration::from_secs(30);

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
    let link = Relay::start(upstream).await;
    let agent_client = client_via(&server.kubeconfig, link.addr).await;

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

    link.cut();
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

    link.restore();
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

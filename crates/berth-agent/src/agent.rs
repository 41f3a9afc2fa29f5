//! Runs the agent's parts together: connects to the runtime, starts the node endpoint, registers
//! the Node (and hands its pod CIDR to the runtime), then runs the Lease heartbeat, the node
//! status refresh, the pod workers, the service proxy and (with a cluster CIDR) the pod network
//! routes until one fails or the future is dropped.

use std::sync::Arc;
use std::time::Duration;

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use kube::runtime::events::{Recorder, Reporter};

use crate::node::{self, MachineInfo};
use crate::{AgentConfig, lease, pod, podnet, proxy, server};

/// The reporting component of the agent's Events.
pub const REPORTER: &str = "berth-agent";
/// How long the agent waits for the runtime's socket at start.
const CRI_WAIT: Duration = Duration::from_secs(30);
/// How often the Node's status (Ready heartbeat) is refreshed.
const NODE_STATUS_EVERY: Duration = Duration::from_secs(30);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The runtime could not be reached.
    #[error(transparent)]
    Connect(#[from] berth_cri::CriError),
    /// The runtime answered with an error.
    #[error("CRI Version: {0}")]
    Version(tonic::Status),
    /// The node endpoint could not start.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// Registering the Node failed.
    #[error(transparent)]
    Node(#[from] node::NodeError),
    /// The pod manager stopped.
    #[error(transparent)]
    Pods(#[from] pod::PodError),
    /// The service proxy stopped.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// The pod network loop stopped.
    #[error(transparent)]
    PodNet(#[from] podnet::PodNetError),
    /// The node endpoint stopped.
    #[error("the node endpoint stopped")]
    ServerStopped,
}

/// Runs the node agent until the returned future is dropped.
pub async fn run(client: kube::Client, config: AgentConfig) -> Result<(), AgentError> {
    let cri_ = connect(&config.cri_endpoint).await?;
    let version = cri_
        .runtime
        .clone()
        .version(cri::VersionRequest {
            version: berth_cri::API_VERSION.into(),
        })
        .await
        .map_err(AgentError::Version)?
        .into_inner();
    let (port, serve) = server::serve(&config, cri_.clone()).await?;
    let info = MachineInfo::read(&version);
    let node = register(&client, &config, &info, port).await?;
    let node_uid = node.metadata.uid.clone().unwrap_or_default();
    let pod_cidr = match node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
    {
        Some(c) => Some(c),
        None => node::wait_pod_cidr(&client, &config.node_name, node::POD_CIDR_WAIT).await,
    };
    match pod_cidr {
        Some(cidr) => node::configure_runtime(&cri_, &cidr).await?,
        None => tracing::warn!("the server assigned no pod CIDR; the runtime uses its own"),
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.into(),
            instance: Some(config.node_name.clone()),
        },
    );
    let ctx = Arc::new(pod::Ctx {
        client: client.clone(),
        cri: cri_,
        config: config.clone(),
        recorder,
    });
    let routes = config.cluster_cidr.map(|cluster| {
        podnet::run(
            client.clone(),
            podnet::PodNet::new(&config.node_name, cluster),
        )
    });
    let podnet = async move {
        match routes {
            Some(routes) => routes.await,
            None => std::future::pending().await,
        }
    };
    let proxy_client = client.clone();
    let proxy = async move {
        if config.proxy {
            proxy::run(proxy_client, config.proxy_bind).await
        } else {
            std::future::pending().await
        }
    };
    // Bumped by the Lease loop when renewals work again after failing (see lease.rs).
    let (reconnected, reconnects) = tokio::sync::watch::channel(0u64);
    tokio::select! {
        () = serve => Err(AgentError::ServerStopped),
        () = lease::run(client.clone(), ctx.config.clone(), node_uid, reconnected) => Ok(()),
        () = node::status_loop(client.clone(), ctx.config.clone(), info, port, NODE_STATUS_EVERY, reconnects.clone()) => Ok(()),
        r = pod::run(ctx.clone(), reconnects) => r.map_err(Into::into),
        r = proxy => r.map_err(Into::into),
        r = podnet => r.map_err(Into::into),
    }
}

/// Connects to the runtime, retrying while its socket is not there yet (it may start after us).
async fn connect(endpoint: &str) -> Result<CriClient, berth_cri::CriError> {
    let deadline = tokio::time::Instant::now() + CRI_WAIT;
    loop {
        match berth_cri::connect(endpoint).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the CRI runtime");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Registers the Node, retrying while the API server is unreachable.
async fn register(
    client: &kube::Client,
    config: &AgentConfig,
    info: &MachineInfo,
    port: u16,
) -> Result<k8s_openapi::api::core::v1::Node, node::NodeError> {
    let mut attempts = 0;
    loop {
        let status = node::status(
            config,
            info,
            port,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ),
        );
        match node::register(client, config, &status).await {
            Ok(n) => return Ok(n),
            Err(e) if attempts < 30 => {
                attempts += 1;
                tracing::warn!(error = %e, "registering the node failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

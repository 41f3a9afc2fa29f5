//! `berth-controller`: the control loops that turn ModelServices into scheduled Pods.
//!
//! - [`template`]: the Pod template derived from a ModelService spec and its stable hash;
//! - [`rollout`]: rolling-update arithmetic (maxSurge / maxUnavailable, like Deployments);
//! - [`modelservice`]: the ModelService controller (owns Pods, rolls templates, writes status);
//! - [`slowstart`]: the slow-start batches (1, 2, 4, …, one burst per reconcile) it creates and
//!   deletes Pods in, and when a change of the owner stops them;
//! - [`status`]: the ModelService status and its Deployment-shaped conditions;
//! - [`fit`]: the scheduler's pure node filtering and scoring (replicas spread over nodes);
//! - [`taints`]: taints and tolerations with Kubernetes' matching rules;
//! - [`scheduler`]: the scheduler controller (binds pending Pods through `pods/binding`);
//! - [`nodelifecycle`]: marks nodes with expired Leases `Ready=Unknown` and unreachable, deletes
//!   their Pods, and lifts the taints when they are back;
//! - [`nodeipam`]: gives each Node a pod CIDR out of the cluster CIDR.
//!
//! [`run`] runs all controllers against one API server until the future is dropped.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod fit;
pub mod modelservice;
pub mod nodeipam;
pub mod nodelifecycle;
mod outcome;
pub mod rollout;
pub mod scheduler;
pub mod slowstart;
pub mod status;
pub mod taints;
pub mod template;

use std::time::Duration;

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Name the controllers report in Events (`reportingController`).
    pub reporter: String,
    /// Identity of this controller process in Events (`reportingInstance`).
    pub instance: Option<String>,
    /// How long to wait before retrying a failed reconcile.
    pub retry_after: Duration,
    /// How old a node's Lease may get before the node counts as lost (default 5 s, as
    /// `berth server --node-grace-period`).
    pub node_grace: Duration,
    /// Pod CIDR allocation for nodes (`None`: nodes keep whatever podCIDR they have).
    pub node_ipam: Option<nodeipam::NodeIpamOptions>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            reporter: "berth-controller".to_string(),
            instance: None,
            retry_after: Duration::from_secs(2),
            node_grace: Duration::from_secs(5),
            node_ipam: None,
        }
    }
}

/// Why a controller gave up.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The ModelService controller failed.
    #[error("modelservice controller: {0}")]
    ModelService(#[from] modelservice::Error),
    /// The scheduler failed.
    #[error("scheduler: {0}")]
    Scheduler(#[from] scheduler::Error),
    /// The node lifecycle controller failed.
    #[error("node lifecycle: {0}")]
    NodeLifecycle(#[from] nodelifecycle::Error),
    /// The node IPAM controller failed.
    #[error("node IPAM: {0}")]
    NodeIpam(#[from] nodeipam::Error),
}

/// Runs the ModelService controller, the scheduler, node lifecycle and node IPAM until the
/// returned future is dropped.
pub async fn run(client: kube::Client, opts: ControllerOptions) -> Result<(), ControllerError> {
    let ms = modelservice::run(client.clone(), opts.clone());
    let sched = scheduler::run(client.clone(), opts.clone());
    let ipam = nodeipam::run(client.clone(), opts.clone());
    let nodes = nodelifecycle::run(client, opts);
    // Each controller runs forever; whichever stops first (they should not) ends them all.
    tokio::select! {
        r = ms => r.map_err(ControllerError::from),
        r = sched => r.map_err(ControllerError::from),
        r = nodes => r.map_err(ControllerError::from),
        r = ipam => r.map_err(ControllerError::from),
    }
}

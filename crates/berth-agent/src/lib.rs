//! `berth-agent`: the node agent (berth's kubelet).
//!
//! It talks to the API server only through kube-rs and to the container runtime only through CRI
//! gRPC ([`berth_cri`]), so it drives berth's embedded runtime or any other CRI runtime.
//!
//! - [`config`]: the agent's settings ([`AgentConfig`]);
//! - [`labels`]: the CRI labels and annotations the agent puts on sandboxes and containers
//!   (the same keys the kubelet uses), by which every part finds a Pod's containers;
//! - [`node`]: registers and updates this machine's Node object;
//! - [`lease`]: renews the node's coordination/v1 Lease (the heartbeat);
//! - [`backoff`]: Kubernetes' crash-loop backoff (10 s doubling to 5 min, reset after 10 min up);
//! - [`pod`]: one worker per bound Pod that drives it through CRI to its spec and writes status
//!   and Events back;
//! - [`probe`]: readiness, liveness and startup probes (httpGet, tcpSocket, exec);
//! - [`podnet`]: routes to the other nodes' pod CIDRs and masquerading of pod traffic leaving
//!   the cluster (when [`AgentConfig::cluster_cidr`] is set);
//! - [`proxy`]: the service proxy (a ModelService's `service.port` on this node, balanced over its
//!   Ready Pods);
//! - [`server`]: the node's HTTPS endpoint the API server proxies `pods/log` and `pods/exec` to.
//!
//! [`run`] runs all of it until the future is dropped.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod agent;
pub mod backoff;
pub mod config;
pub mod labels;
pub mod lease;
pub mod node;
pub mod pod;
pub mod podnet;
pub mod probe;
pub mod proxy;
pub mod server;

pub use agent::{AgentError, run};
pub use config::AgentConfig;

//! Registration of this machine as a Node.
//!
//! The agent creates its Node (or updates the one a previous run left), publishes capacity,
//! addresses, node info and the node endpoint's port in the status with a `Ready=True` condition,
//! and keeps that status current ([`status_loop`]): periodically, right after a return from a
//! silence, and whenever the Node's Ready condition is not True (the server marked the node
//! lost while it was silent). The server assigns `spec.podCIDR`; the agent waits a
//! bounded time for it and hands it to the runtime over CRI `UpdateRuntimeConfig`.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::AgentConfig;

/// How long the agent waits for the server to assign the node's pod CIDR.
pub const POD_CIDR_WAIT: Duration = Duration::from_secs(30);

/// Errors registering the Node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An API request failed.
    #[error("node {node}: {source}")]
    Api {
        /// The node name.
        node: String,
        /// Why.
        source: kube::Error,
    },
    /// A CRI request failed.
    #[error("CRI {call}: {source}")]
    Cri {
        /// Which call.
        call: &'static str,
        /// Why.
        source: tonic::Status,
    },
}

/// Facts about this machine published in the Node.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineInfo {
    /// Online CPUs.
    pub cpus: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// `PRETTY_NAME` of /etc/os-release.
    pub os_image: String,
    /// The kernel release.
    pub kernel_version: String,
    /// `<runtime_name>://<runtime_version>` from CRI Version.
    pub runtime_version: String,
}

impl MachineInfo {
    /// Reads this machine's facts; `runtime` is CRI's Version answer.
    pub fn read(runtime: &cri::VersionResponse) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let osrel = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        MachineInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: mem_total(&meminfo).unwrap_or(0),
            os_image: os_image(&osrel),
            kernel_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            runtime_version: format!("{}://{}", runtime.runtime_name, runtime.runtime_version),
        }
    }
}

/// `MemTotal` of /proc/meminfo in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `PRETTY_NAME` of an os-release file (unquoted), else "Linux".
fn os_image(osrel: &str) -> String {
    osrel
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// Kubernetes' name for this architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The Node's labels.
fn labels(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), node.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
    ])
}

/// The Node's status as this agent publishes it (`now` stamps the Ready condition).
pub fn status(config: &AgentConfig, info: &MachineInfo, port: u16, now: Time) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(info.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", info.memory_bytes / 1024)),
        ),
        ("pods".to_string(), Quantity(config.max_pods.to_string())),
    ]);
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            container_runtime_version: info.runtime_version.clone(),
            kernel_version: info.kernel_version.clone(),
            kubelet_version: format!("berth-{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            os_image: info.os_image.clone(),
            ..Default::default()
        }),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("berth-agent is posting ready status".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        ..Default::default()
    }
}

/// Creates the Node if missing (labels merged into an existing one) and writes its status.
pub async fn register(
    client: &kube::Client,
    config: &AgentConfig,
    status: &NodeStatus,
) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let name = config.node_name.clone();
    let err = |source| NodeError::Api {
        node: name.clone(),
        source,
    };
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels(&name)),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %name, "registered the node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": labels(&name)}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    write_status(&api, &name, status).await.map_err(err)
}

/// Writes the Node's status (merge patch of the status subresource).
async fn write_status(
    api: &Api<Node>,
    name: &str,
    status: &NodeStatus,
) -> Result<Node, kube::Error> {
    let patch = json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Why [`status_loop`] posts the status now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    /// The periodic heartbeat.
    Heartbeat,
    /// Lease renewals work again after failing: the server may have marked the node lost.
    Reconnected,
    /// The Node's Ready condition is not True (or missing).
    NotReady,
}

/// Whether the Node as the server has it says anything but `Ready=True`.
fn shows_not_ready(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    ready.is_none_or(|c| c.status != "True")
}

/// Keeps the Node's status current until dropped: posts it every `every` (heartbeat of the
/// Ready condition), when `reconnects` ticks, and when the Node (watched by name) shows Ready
/// other than True — at most once per second for the last, so a server that keeps marking the
/// node lost (its Lease still stale) is not answered in a tight loop.
pub async fn status_loop(
    client: kube::Client,
    config: AgentConfig,
    info: MachineInfo,
    port: u16,
    every: Duration,
    mut reconnects: crate::lease::Reconnects,
) {
    let api: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", config.node_name));
    let mut own = watcher::watcher(api.clone(), cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = Time(Timestamp::now());
    let mut last_repair = tokio::time::Instant::now();
    let mut repair_due = false;
    loop {
        let why = tokio::select! {
            _ = heartbeat.tick() => Post::Heartbeat,
            Ok(()) = reconnects.changed() => Post::Reconnected,
            Some(node) = own.next() => {
                if let Ok(node) = node {
                    repair_due = shows_not_ready(&node);
                }
                continue;
            }
            () = tokio::time::sleep_until(last_repair + Duration::from_secs(1)), if repair_due => {
                Post::NotReady
            }
        };
        let now = Time(Timestamp::now());
        if why == Post::NotReady {
            // Ready goes back to True: that is a transition.
            last_repair = tokio::time::Instant::now();
            since = now.clone();
        }
        repair_due = false;
        let mut st = status(&config, &info, port, now);
        if let Some(c) = st.conditions.as_mut().and_then(|c| c.first_mut()) {
            c.last_transition_time = Some(since.clone());
        }
        match write_status(&api, &config.node_name, &st).await {
            Ok(_) if why != Post::Heartbeat => tracing::info!(?why, "posted Ready=True"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "posting the node status failed"),
        }
    }
}

/// Waits (bounded by `wait`) for the server to assign `spec.podCIDR`.
pub async fn wait_pod_cidr(client: &kube::Client, node: &str, wait: Duration) -> Option<String> {
    let api: Api<Node> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let find = async {
        let mut stream = watcher::watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            let node = match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "node watch error");
                    continue;
                }
            };
            if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                return Some(cidr);
            }
        }
        None
    };
    tokio::time::timeout(wait, find).await.ok().flatten()
}

/// Passes the pod CIDR to the runtime.
pub async fn configure_runtime(cri: &CriClient, pod_cidr: &str) -> Result<(), NodeError> {
    let req = cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: pod_cidr.to_string(),
            }),
        }),
    };
    cri.runtime
        .clone()
        .update_runtime_config(req)
        .await
        .map_err(|source| NodeError::Cri {
            call: "UpdateRuntimeConfig",
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release_parse() {
        assert_eq!(
            mem_total("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(mem_total("nothing"), None);
        assert_eq!(
            os_image("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 13\"\n"),
            "Debian GNU/Linux 13"
        );
        assert_eq!(os_image(""), "Linux");
    }

    #[test]
    fn status_publishes_capacity_port_and_ready() {
        let mut config = AgentConfig::new("n1", "unix:///x.sock", "/tmp".into());
        config.max_pods = 7;
        let info = MachineInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            os_image: "Debian".into(),
            kernel_version: "6.1".into(),
            runtime_version: "berth://0.1".into(),
        };
        let st = status(&config, &info, 12345, Time(Timestamp::now()));
        let cap = st.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "7");
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            12345
        );
        let ready = &st.conditions.unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        assert_eq!(
            st.node_info.unwrap().container_runtime_version,
            "berth://0.1"
        );
    }
}

//! Readiness, liveness and startup probes (httpGet, tcpSocket, exec, grpc) with Kubernetes' semantics.
//!
//! The pod worker starts one probe loop per (container, probe kind) with [`spawn`] and reads
//! [`ProbeUpdate`]s from a channel: every failed attempt (for `Unhealthy` Events) and every change
//! of the verdict after `successThreshold` / `failureThreshold` consecutive results. Dropping the
//! returned [`ProbeTask`] stops the loop. Liveness and readiness probes should only be started once
//! a container's startup probe (if any) has succeeded; that ordering is the pod worker's. A
//! liveness probe keeps probing after it turned unhealthy: the worker restarts the container and
//! starts a fresh loop for the new instance (new `Target.container_id`). Event messages follow
//! the kubelet's shape: `format!("{} probe failed: {message}", kind.title())`.
//!
//! An image's HEALTHCHECK: ask the runtime for `ImageStatus` with `verbose: true` and pass the
//! response to [`healthcheck_probe`]; when the container spec has no liveness probe, run the
//! result as one.
//!
//! - [`threshold`]: the pure verdict state machine (initial verdicts, thresholds);
//! - [`port`]: named container ports;
//! - [`action`]: one attempt of an httpGet, tcpSocket, exec or grpc handler, bounded by the timeout;
//! - [`http`]: the httpGet handler;
//! - [`grpc`]: the grpc handler (the standard gRPC health check);
//! - [`runner`]: the loop (initial delay, period, updates);
//! - [`healthcheck`]: an image's Docker `HEALTHCHECK` as an exec liveness [`Probe`].

pub mod action;
pub mod grpc;
pub mod healthcheck;
pub mod http;
pub mod port;
pub mod runner;
pub mod threshold;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use tokio::sync::mpsc::UnboundedSender;

pub use healthcheck::healthcheck_probe;

/// Which of a container's probes this is; it decides the initial verdict and what the agent
/// does with a change (Ready condition, restart, or gating the other probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `readinessProbe`: the container (and the Pod) counts as Ready while healthy.
    Readiness,
    /// `livenessProbe`: the container is restarted when it turns unhealthy.
    Liveness,
    /// `startupProbe`: holds the other probes back until it first succeeds.
    Startup,
}

impl ProbeKind {
    /// The verdict before any attempt has decided: readiness and startup are not yet healthy,
    /// liveness is assumed healthy (a container is not restarted before it has failed a probe).
    pub fn initial_verdict(self) -> bool {
        matches!(self, ProbeKind::Liveness)
    }

    /// The name Kubernetes uses in Event messages (`Readiness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// What a probe runs against: one running container instance of a Pod.
// Not `Eq`: k8s-openapi's ContainerPort is only `PartialEq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The Pod's IP (httpGet and tcpSocket probes without `host` connect to it).
    pub pod_ip: Option<IpAddr>,
    /// The CRI id of the container instance (exec probes run in it).
    pub container_id: String,
    /// The container's declared ports (named probe ports resolve through them).
    pub ports: Vec<ContainerPort>,
}

/// What a probe loop reports to the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeUpdate {
    /// Every failed attempt (the agent turns these into `Unhealthy` Events).
    Failed {
        /// Which probe.
        kind: ProbeKind,
        /// The container's name in the Pod spec.
        container: String,
        /// Why the attempt failed (status code, connection error, command output, ...).
        message: String,
    },
    /// The probe's verdict changed after successThreshold/failureThreshold consecutive results.
    Changed {
        /// Which probe.
        kind: ProbeKind,
        /// The container's name in the Pod spec.
        container: String,
        /// The new verdict.
        healthy: bool,
    },
}

/// A running probe loop; aborts the loop when dropped.
#[derive(Debug)]
pub struct ProbeTask {
    handle: tokio::task::JoinHandle<()>,
}

impl ProbeTask {
    /// Whether the loop has ended (a startup probe that succeeded, or the receiver is gone).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for ProbeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts probing `container` (its instance `target.container_id`) with `probe`, reporting to `tx`.
/// Must be called inside a Tokio runtime.
pub fn spawn(
    kind: ProbeKind,
    container: String,
    probe: Probe,
    target: Target,
    cri: berth_cri::CriClient,
    tx: UnboundedSender<ProbeUpdate>,
) -> ProbeTask {
    let runner = runner::Runner::new(kind, container, &probe, target, cri, tx);
    ProbeTask {
        handle: tokio::spawn(runner.run()),
    }
}

//! Probe loops of container `app`: starting one, reading its updates.

use std::net::IpAddr;
use std::time::Duration;

use berth_agent::probe::{self, ProbeKind, ProbeTask, ProbeUpdate, Target};
use k8s_openapi::api::core::v1::Probe;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Starts a `kind` probe loop running `probe` for container `app` at `target`; returns the task
/// (dropping it stops the loop) and the loop's updates.
pub fn spawn(
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    cri: berth_cri::CriClient,
) -> (ProbeTask, UnboundedReceiver<ProbeUpdate>) {
    let (tx, rx) = unbounded_channel();
    (probe::spawn(kind, "app".into(), probe, target, cri, tx), rx)
}

/// The next update of a probe loop; fails the test after `wait` instead of hanging.
pub async fn next(rx: &mut UnboundedReceiver<ProbeUpdate>, wait: Duration) -> ProbeUpdate {
    tokio::time::timeout(wait, rx.recv())
        .await
        .expect("a probe update in time")
        .expect("the probe loop is running")
}

/// The update of container `app`'s `kind` verdict turning `healthy`.
pub fn changed(kind: ProbeKind, healthy: bool) -> ProbeUpdate {
    ProbeUpdate::Changed {
        kind,
        container: "app".into(),
        healthy,
    }
}

/// A target without declared ports: container `container_id` at `pod_ip`.
pub fn target(pod_ip: Option<IpAddr>, container_id: &str) -> Target {
    Target {
        pod_ip,
        container_id: container_id.into(),
        ports: vec![],
    }
}

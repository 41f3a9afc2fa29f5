//! httpGet and tcpSocket probe loops against local listeners on 127.0.0.1 (no root needed):
//! verdict changes after the thresholds, failure messages, timeouts against a silent server,
//! startup probes ending after success, and dropping a probe stopping it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_agent::probe::{self, ProbeKind, ProbeUpdate, Target};
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Generous bound on waiting for one update, so a broken prober fails the test instead of hanging.
const WAIT: Duration = Duration::from_secs(30);

/// A CRI client that is never used by http/tcp probes (connects lazily to nothing).
fn unused_cri() -> berth_cri::CriClient {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    berth_cri::CriClient {
        runtime: berth_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel.clone()),
        image: berth_cri::v1::image_service_client::ImageServiceClient::new(channel),
    }
}

fn localhost() -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, 1]))
}

async fn next(rx: &mut UnboundedReceiver<ProbeUpdate>) -> ProbeUpdate {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a probe update in time")
        .expect("the probe loop is running")
}

/// An HTTP server answering every request with the status in `status`.
async fn status_server(status: Arc<AtomicU16>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(move || {
        let status = status.clone();
        async move {
            let code = http::StatusCode::from_u16(status.load(Ordering::SeqCst)).expect("status");
            (code, "body of the answer")
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn http_probe(port: IntOrString, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port,
            ..Default::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

#[tokio::test]
async fn readiness_turns_ready_then_unready_after_failure_threshold() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = status_server(status.clone()).await;
    let target = Target {
        pod_ip: localhost(),
        container_id: "c".into(),
        // The probe names its port; it resolves through the container's ports.
        ports: vec![ContainerPort {
            name: Some("web".into()),
            container_port: i32::from(addr.port()),
            ..Default::default()
        }],
    };
    let (tx, mut rx) = unbounded_channel();
    let probe = http_probe(IntOrString::String("web".into()), 2);
    let _task = probe::spawn(ProbeKind::Readiness, "app".into(), probe, target, unused_cri(), tx);

    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed { kind: ProbeKind::Readiness, container: "app".into(), healthy: true }
    );
    status.store(503, Ordering::SeqCst);
    for _ in 0..2 {
        match next(&mut rx).await {
            ProbeUpdate::Failed { kind: ProbeKind::Readiness, container, message } => {
                assert_eq!(container, "app");
                assert!(message.contains("statuscode: 503"), "{message}");
                assert!(message.contains("body of the answer"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed { kind: ProbeKind::Readiness, container: "app".into(), healthy: false }
    );
    // Redirect-free 3xx counts as success: ready again.
    status.store(302, Ordering::SeqCst);
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed { kind: ProbeKind::Readiness, container: "app".into(), healthy: true }
    );
}

#[tokio::test]
async fn tcp_probe_against_a_closed_port_fails() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction { host: None, port: IntOrString::Int(i32::from(port)) }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let target = Target { pod_ip: localhost(), container_id: "c".into(), ports: vec![] };
    let (tx, mut rx) = unbounded_channel();
    let _task = probe::spawn(ProbeKind::Liveness, "app".into(), probe, target, unused_cri(), tx);
    match next(&mut rx).await {
        ProbeUpdate::Failed { kind: ProbeKind::Liveness, message, .. } => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed { kind: ProbeKind::Liveness, container: "app".into(), healthy: false }
    );
}

#[tokio::test]
async fn http_probe_times_out_against_a_server_that_never_answers() {
    // Accepts connections and holds them open without ever answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut probe = http_probe(IntOrString::Int(i32::from(port)), 3);
    probe.timeout_seconds = Some(1);
    let target = Target { pod_ip: localhost(), container_id: "c".into(), ports: vec![] };
    let (tx, mut rx) = unbounded_channel();
    let _task = probe::spawn(ProbeKind::Liveness, "app".into(), probe, target, unused_cri(), tx);
    // Each attempt ends with its timeout, so the loop keeps going: three failures, then the verdict.
    for _ in 0..3 {
        match next(&mut rx).await {
            ProbeUpdate::Failed { message, .. } => assert!(message.contains("timed out"), "{message}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed { kind: ProbeKind::Liveness, container: "app".into(), healthy: false }
    );
}

#[tokio::test]
async fn startup_probe_stops_after_it_succeeds() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction { host: Some("127.0.0.1".into()), port: IntOrString::Int(i32::from(port)) }),
        period_seconds: Some(1),
        ..Default::default()
    };
    // No pod IP: the probe's own host is used.
    let target = Target { pod_ip: None, container_id: "c".into(), ports: vec![] };
    let (tx, mut rx) = unbounded_channel();
    let task = probe::spawn(ProbeKind::Startup, "app".into(), probe, target, unused_cri(), tx);
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed { kind: ProbeKind::Startup, container: "app".into(), healthy: true }
    );
    // The loop ends: its sender is dropped, so the channel closes.
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.expect("closed in time"), None);
    assert!(task.is_finished());
    drop(listener);
}

#[tokio::test]
async fn dropping_the_task_stops_the_probe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction { host: None, port: IntOrString::Int(i32::from(port)) }),
        period_seconds: Some(1),
        ..Default::default()
    };
    let target = Target { pod_ip: localhost(), container_id: "c".into(), ports: vec![] };
    let (tx, mut rx) = unbounded_channel();
    let task = probe::spawn(ProbeKind::Readiness, "app".into(), probe, target, unused_cri(), tx);
    assert!(matches!(next(&mut rx).await, ProbeUpdate::Changed { healthy: true, .. }));
    drop(task);
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.expect("closed in time"), None);
}

#[tokio::test]
async fn a_probe_without_a_pod_ip_reports_why() {
    let probe = http_probe(IntOrString::Int(80), 1);
    let target = Target { pod_ip: None, container_id: "c".into(), ports: vec![] };
    let (tx, mut rx) = unbounded_channel();
    let _task = probe::spawn(ProbeKind::Readiness, "app".into(), probe, target, unused_cri(), tx);
    match next(&mut rx).await {
        ProbeUpdate::Failed { message, .. } => assert!(message.contains("no IP"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

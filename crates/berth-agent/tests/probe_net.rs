//! httpGet and tcpSocket probe loops against local listeners on 127.0.0.1 (no root needed):
//! verdict changes after the thresholds, failure messages, timeouts against a silent server,
//! startup probes ending after success, and dropping a probe stopping it.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use berth_agent::probe::{ProbeKind, ProbeUpdate, Target};
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::probe::{changed, spawn, target};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

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

/// The next update of a probe loop, within [`WAIT`].
async fn next(rx: &mut UnboundedReceiver<ProbeUpdate>) -> ProbeUpdate {
    support::probe::next(rx, WAIT).await
}

/// An HTTP server answering every request with the status in `status`.
async fn status_server(status: Arc<AtomicU16>) -> SocketAddr {
    let (listener, addr) = support::listen().await;
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
    let probe = http_probe(IntOrString::String("web".into()), 2);
    let (_task, mut rx) = spawn(ProbeKind::Readiness, probe, target, unused_cri());

    assert_eq!(next(&mut rx).await, changed(ProbeKind::Readiness, true));
    status.store(503, Ordering::SeqCst);
    for _ in 0..2 {
        match next(&mut rx).await {
            ProbeUpdate::Failed {
                kind: ProbeKind::Readiness,
                container,
                message,
            } => {
                assert_eq!(container, "app");
                assert!(message.contains("statuscode: 503"), "{message}");
                assert!(message.contains("body of the answer"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    assert_eq!(next(&mut rx).await, changed(ProbeKind::Readiness, false));
    // Redirect-free 3xx counts as success: ready again.
    status.store(302, Ordering::SeqCst);
    assert_eq!(next(&mut rx).await, changed(ProbeKind::Readiness, true));
}

#[tokio::test]
async fn tcp_probe_against_a_closed_port_fails() {
    // A port nothing listens on any more.
    let [port] = support::free_ports();
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            host: None,
            port: IntOrString::Int(i32::from(port)),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let (_task, mut rx) = spawn(
        ProbeKind::Liveness,
        probe,
        target(localhost(), "c"),
        unused_cri(),
    );
    match next(&mut rx).await {
        ProbeUpdate::Failed {
            kind: ProbeKind::Liveness,
            message,
            ..
        } => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(next(&mut rx).await, changed(ProbeKind::Liveness, false));
}

#[tokio::test]
async fn http_probe_times_out_against_a_server_that_never_answers() {
    // Accepts connections and holds them open without ever answering.
    let (listener, addr) = support::listen().await;
    let port = addr.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut probe = http_probe(IntOrString::Int(i32::from(port)), 3);
    probe.timeout_seconds = Some(1);
    let (_task, mut rx) = spawn(
        ProbeKind::Liveness,
        probe,
        target(localhost(), "c"),
        unused_cri(),
    );
    // Each attempt ends with its timeout, so the loop keeps going: three failures, then the verdict.
    for _ in 0..3 {
        match next(&mut rx).await {
            ProbeUpdate::Failed { message, .. } => {
                assert!(message.contains("timed out"), "{message}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert_eq!(next(&mut rx).await, changed(ProbeKind::Liveness, false));
}

#[tokio::test]
async fn startup_probe_stops_after_it_succeeds() {
    let (listener, addr) = support::listen().await;
    let port = addr.port();
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            host: Some("127.0.0.1".into()),
            port: IntOrString::Int(i32::from(port)),
        }),
        period_seconds: Some(1),
        ..Default::default()
    };
    // No pod IP: the probe's own host is used.
    let (task, mut rx) = spawn(ProbeKind::Startup, probe, target(None, "c"), unused_cri());
    assert_eq!(next(&mut rx).await, changed(ProbeKind::Startup, true));
    // The loop ends: its sender is dropped, so the channel closes.
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("closed in time"),
        None
    );
    assert!(task.is_finished());
    drop(listener);
}

#[tokio::test]
async fn dropping_the_task_stops_the_probe() {
    let (_listener, addr) = support::listen().await;
    let port = addr.port();
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            host: None,
            port: IntOrString::Int(i32::from(port)),
        }),
        period_seconds: Some(1),
        ..Default::default()
    };
    let (task, mut rx) = spawn(
        ProbeKind::Readiness,
        probe,
        target(localhost(), "c"),
        unused_cri(),
    );
    assert!(matches!(
        next(&mut rx).await,
        ProbeUpdate::Changed { healthy: true, .. }
    ));
    drop(task);
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("closed in time"),
        None
    );
}

#[tokio::test]
async fn a_probe_without_a_pod_ip_reports_why() {
    let probe = http_probe(IntOrString::Int(80), 1);
    let (_task, mut rx) = spawn(ProbeKind::Readiness, probe, target(None, "c"), unused_cri());
    match next(&mut rx).await {
        ProbeUpdate::Failed { message, .. } => assert!(message.contains("no IP"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// An HTTPS server with a self-signed certificate that answers 200 to every request and hands
/// each request's head (request line and headers) to the returned receiver.
async fn https_server() -> (SocketAddr, UnboundedReceiver<String>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (listener, addr) = support::listen().await;
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_string());
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn https_probes_skip_certificate_verification_and_send_the_probe_headers() {
    let (addr, mut requests) = https_server().await;
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            scheme: Some("HTTPS".into()),
            path: Some("/ready".into()),
            port: IntOrString::Int(i32::from(addr.port())),
            http_headers: Some(vec![k8s_openapi::api::core::v1::HTTPHeader {
                name: "X-Probe-Token".into(),
                value: "s3cret".into(),
            }]),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    };
    let (_task, mut rx) = spawn(
        ProbeKind::Readiness,
        probe,
        target(localhost(), "c"),
        unused_cri(),
    );
    assert_eq!(next(&mut rx).await, changed(ProbeKind::Readiness, true));
    let head = tokio::time::timeout(WAIT, requests.recv())
        .await
        .expect("in time")
        .expect("a request");
    let lower = head.to_lowercase();
    assert!(head.starts_with("GET /ready HTTP/1.1\r\n"), "{head}");
    assert!(lower.contains("\r\nx-probe-token: s3cret\r\n"), "{head}");
    assert!(lower.contains("\r\nuser-agent: kube-probe/"), "{head}");
}

#[tokio::test]
async fn redirects_are_followed_on_the_same_host_only() {
    let (listener, addr) = support::listen().await;
    let redirect = |to: String| {
        move || async move { (http::StatusCode::FOUND, [(http::header::LOCATION, to)]) }
    };
    let app = axum::Router::new()
        // Same host: followed, and the target fails, so the probe fails.
        .route(
            "/same",
            axum::routing::get(redirect(format!("http://127.0.0.1:{}/broken", addr.port()))),
        )
        .route(
            "/broken",
            axum::routing::get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        // Another host (by name): not followed; the 302 itself counts as success.
        .route(
            "/away",
            axum::routing::get(redirect("http://localhost:1/".to_string())),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let run = |path: &str, kind: ProbeKind| {
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(i32::from(addr.port())),
                ..Default::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Default::default()
        };
        spawn(kind, probe, target(localhost(), "c"), unused_cri())
    };
    let (_same, mut same) = run("/same", ProbeKind::Liveness);
    match next(&mut same).await {
        ProbeUpdate::Failed { message, .. } => {
            assert!(message.contains("statuscode: 500: down"), "{message}")
        }
        other => panic!("expected the redirect target's failure, got {other:?}"),
    }
    let (_away, mut away) = run("/away", ProbeKind::Readiness);
    assert_eq!(next(&mut away).await, changed(ProbeKind::Readiness, true));
}

/// The standard gRPC health service over h2c, knowing one service, `db`, with a settable status.
async fn grpc_health_server(status: Arc<std::sync::atomic::AtomicI32>) -> SocketAddr {
    use berth_agent::probe::grpc::{HealthCheckRequest, HealthCheckResponse};

    #[derive(Clone)]
    struct Health(Arc<std::sync::atomic::AtomicI32>);
    impl tonic::server::UnaryService<HealthCheckRequest> for Health {
        type Response = HealthCheckResponse;
        type Future =
            std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;
        fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
            std::future::ready(match request.get_ref().service.as_str() {
                "db" => Ok(tonic::Response::new(HealthCheckResponse {
                    status: self.0.load(Ordering::SeqCst),
                })),
                other => Err(tonic::Status::not_found(format!("unknown service {other}"))),
            })
        }
    }

    let (listener, addr) = support::listen().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let health = Health(status.clone());
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let health = health.clone();
                    async move {
                        let codec = tonic_prost::ProstCodec::<
                            HealthCheckResponse,
                            HealthCheckRequest,
                        >::default();
                        let response = tonic::server::Grpc::new(codec).unary(health, request).await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn grpc_probes_use_the_standard_health_check() {
    let status = Arc::new(std::sync::atomic::AtomicI32::new(1));
    let addr = grpc_health_server(status.clone()).await;
    let run = |service: &str| {
        let probe = Probe {
            grpc: Some(k8s_openapi::api::core::v1::GRPCAction {
                port: i32::from(addr.port()),
                service: Some(service.to_string()),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Default::default()
        };
        spawn(
            ProbeKind::Readiness,
            probe,
            target(localhost(), "c"),
            unused_cri(),
        )
    };
    let (_db, mut db) = run("db");
    assert_eq!(next(&mut db).await, changed(ProbeKind::Readiness, true));
    status.store(2, Ordering::SeqCst);
    match next(&mut db).await {
        ProbeUpdate::Failed { message, .. } => {
            assert!(message.contains("NOT_SERVING"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(next(&mut db).await, changed(ProbeKind::Readiness, false));
    let (_unknown, mut unknown) = run("cache");
    match next(&mut unknown).await {
        ProbeUpdate::Failed { message, .. } => assert!(message.contains("NotFound"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

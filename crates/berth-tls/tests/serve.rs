//! The accept loop end to end: HTTPS answers, both HTTP versions, shutdown stops accepting.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::time::Duration;

use berth_tls::{Alpn, serve_router};

async fn start(
    alpn: Alpn,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    String,
) {
    let ck = berth_tls::self_signed(vec!["localhost".into()]).expect("cert");
    let config = berth_tls::server_config(&ck.cert_pem, &ck.key_pem, alpn).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_router(listener, config, router, async {
        let _ = stopped.await;
    }));
    (port, stop, task, ck.cert_pem)
}

fn client(ca: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("pem"))
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_https_and_stops_on_shutdown() {
    let (port, stop, task, ca) = start(Alpn::H2AndHttp11).await;
    let r = client(&ca, port)
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.expect("body"), "hello");
    // A client that is not TLS does not stop the server.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
    assert!(plain.is_err() || !plain.expect("resp").status().is_success());
    stop.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop returns on shutdown")
        .expect("join");
    let after = client(&ca, port)
        .get(format!("https://localhost:{port}/"))
        .send()
        .await;
    assert!(after.is_err(), "no more connections are accepted");
}

#[tokio::test]
async fn http11_only_endpoints_negotiate_http11() {
    let (port, _stop, _task, ca) = start(Alpn::Http11).await;
    let r = client(&ca, port)
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

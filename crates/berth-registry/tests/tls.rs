//! The registry served over HTTPS with a PEM certificate and key.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_registry::{AuthMode, Config, Registry};

#[tokio::test]
async fn serves_over_tls_with_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();

    let reg = Registry::open(
        dir.path(),
        Config {
            auth: AuthMode::Push,
            tls: true,
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (c, k) = (cert.clone(), key.clone());
    tokio::spawn(async move {
        reg.serve_tls_until(listener, &c, &k, std::future::pending())
            .await
    });

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"https://localhost:{port}/token\"")),
        "{challenge}"
    );

    // Plain HTTP to the TLS port does not get an answer from the registry.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/v2/")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

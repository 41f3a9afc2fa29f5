//! `berth_registry::start`, the entry point `berth server` uses.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_registry::{AuthMode, Config};

#[tokio::test]
async fn start_serves_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        auth: AuthMode::Push,
        tls: false,
    };
    let (addr, task) =
        berth_registry::start(dir.path(), "127.0.0.1:0".parse().unwrap(), config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    let r = reqwest::get(format!("http://{addr}/v2/")).await.unwrap();
    assert_eq!(r.status(), 401, "push mode challenges anonymous /v2/");
    assert!(dir.path().join("registry/credentials").exists());
    // A second registry on the same data dir is refused while this one runs.
    let again = berth_registry::start(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        Config::default(),
        std::future::pending(),
    )
    .await;
    assert!(matches!(again, Err(berth_registry::OpenError::Locked(_))));
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

//! Access control: anonymous pull, protected push, Basic credentials and bearer tokens.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use berth_registry::AuthMode;
use common::{TestRegistry, sha256, start};

fn challenge(r: &reqwest::Response) -> String {
    r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn token(reg: &TestRegistry, creds: Option<(&str, &str)>) -> reqwest::Response {
    let mut req = reg
        .client
        .get(reg.url("/token?service=berth-registry&scope=repository:app:pull,push"));
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

async fn bearer(reg: &TestRegistry, creds: Option<(&str, &str)>) -> String {
    let r = token(reg, creds).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["expires_in"].as_u64().unwrap() >= 60);
    assert_eq!(v["token"], v["access_token"]);
    v["token"].as_str().unwrap().to_string()
}

fn upload_url(reg: &TestRegistry, data: &[u8]) -> String {
    reg.url(&format!("/v2/app/blobs/uploads/?digest={}", sha256(data)))
}

#[tokio::test]
async fn credentials_file_is_private_and_stable() {
    let reg = start(AuthMode::Push).await;
    let path = reg.storage_root().join("credentials");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let line = std::fs::read_to_string(&path).unwrap();
    assert_eq!(line.trim(), format!("{}:{}", reg.user, reg.password));
    assert!(reg.password.len() >= 32);
}

#[tokio::test]
async fn push_mode_allows_anonymous_pull_and_refuses_anonymous_push() {
    let reg = start(AuthMode::Push).await;
    let data = b"layer bytes";
    let r = reg
        .client
        .post(upload_url(&reg, data))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert!(
        c.starts_with(&format!("Bearer realm=\"{}/token\"", reg.base)),
        "{c}"
    );
    assert!(c.contains("scope=\"repository:app:pull,push\""), "{c}");
    assert!(r.text().await.unwrap().contains("UNAUTHORIZED"));
    assert!(!reg.storage_root().join("repos/app").exists());

    // /v2/ challenges anonymous callers, which is how clients discover the token endpoint.
    let r = reg.client.get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).starts_with("Bearer realm="));

    // Basic credentials push directly.
    let r = reg
        .client
        .post(upload_url(&reg, data))
        .basic_auth(&reg.user, Some(&reg.password))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Anyone pulls.
    let r = reg
        .client
        .get(reg.url(&format!("/v2/app/blobs/{}", sha256(data))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tokens_grant_push_only_to_the_account() {
    let reg = start(AuthMode::Push).await;
    let data = b"via token";

    let anon = bearer(&reg, None).await;
    let r = reg
        .client
        .post(upload_url(&reg, data))
        .bearer_auth(&anon)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an anonymous token is pull-only");

    let r = token(&reg, Some((&reg.user, "wrong"))).await;
    assert_eq!(r.status(), 401);

    let t = bearer(&reg, Some((&reg.user, &reg.password))).await;
    let r = reg
        .client
        .get(reg.url("/v2/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reg
        .client
        .post(upload_url(&reg, data))
        .bearer_auth(&t)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = reg
        .client
        .post(upload_url(&reg, data))
        .bearer_auth("made-up")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn all_mode_protects_pulls_too() {
    let reg = start(AuthMode::All).await;
    let data = b"secret layer";
    let r = reg
        .client
        .post(upload_url(&reg, data))
        .basic_auth(&reg.user, Some(&reg.password))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = reg.url(&format!("/v2/app/blobs/{}", sha256(data)));
    let r = reg.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("scope=\"repository:app:pull\""));
    assert_eq!(
        token(&reg, None).await.status(),
        401,
        "no anonymous tokens in `all` mode"
    );
    let t = bearer(&reg, Some((&reg.user, &reg.password))).await;
    let r = reg.client.get(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        reg.client
            .get(reg.url("/v2/_catalog"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

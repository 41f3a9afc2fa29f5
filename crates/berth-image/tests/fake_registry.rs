//! The client against a small in-test registry: Basic challenges answered with credentials from
//! a docker config.json, refusal without them, and a blob whose bytes do not match its digest
//! (the pull fails and the store keeps nothing of it).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use berth_image::auth::AuthConfig;
use berth_image::{ClientOptions, ContentStore, Digest, Error, Reference, RegistryClient};
use berth_oci::manifest::{Descriptor, Manifest};
use berth_oci::media;

const GOOD_LAYER: &[u8] = b"layer bytes";
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;

fn manifest_bytes() -> Vec<u8> {
    let d = |media: &str, data: &[u8]| Descriptor {
        media_type: media.into(),
        digest: Digest::of(data),
        size: data.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: d(media::OCI_CONFIG, CONFIG),
        layers: vec![d(media::OCI_LAYER_GZIP, GOOD_LAYER)],
        annotations: BTreeMap::new(),
    };
    serde_json::to_vec(&m).unwrap()
}

/// Serves `/v2/{good,bad}/...` behind Basic auth `user:secret`; `bad` serves a corrupted layer.
async fn handle(req: Request<Body>) -> Response {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        == Some("Basic dXNlcjpzZWNyZXQ=");
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"fake\"")
            .body(Body::empty())
            .unwrap();
    }
    let path = req.uri().path().to_string();
    let (repo, rest) = path
        .trim_start_matches("/v2/")
        .split_once('/')
        .unwrap_or(("", ""));
    let body: Vec<u8> = if rest.starts_with("manifests/") {
        return Response::builder()
            .header("Content-Type", media::OCI_MANIFEST)
            .body(Body::from(manifest_bytes()))
            .unwrap();
    } else if rest == format!("blobs/{}", Digest::of(CONFIG)) {
        CONFIG.to_vec()
    } else if rest == format!("blobs/{}", Digest::of(GOOD_LAYER)) {
        if repo == "bad" {
            b"tampered bytes".to_vec()
        } else {
            GOOD_LAYER.to_vec()
        }
    } else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/octet-stream".parse().unwrap());
    let mut resp = Response::new(Body::from(body));
    *resp.headers_mut() = h;
    resp
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(handle);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

#[tokio::test]
async fn basic_auth_from_docker_config_and_corrupt_blobs_are_rejected() {
    let host = serve().await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"{host}":{{"auth":"dXNlcjpzZWNyZXQ="}}}}}}"#),
    )
    .unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();

    // Without credentials: a clear authentication error.
    let anon = RegistryClient::new(ClientOptions::default()).unwrap();
    let err = anon
        .pull_image(
            &Reference::parse(&format!("{host}/good:v1")).unwrap(),
            &store,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");

    let client = RegistryClient::new(ClientOptions {
        auth: AuthConfig {
            explicit: BTreeMap::new(),
            docker_config: Some(cfg),
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let pulled = client
        .pull_image(
            &Reference::parse(&format!("{host}/good:v1")).unwrap(),
            &store,
            None,
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, Digest::of(&manifest_bytes()));
    assert_eq!(store.read(&Digest::of(GOOD_LAYER)).unwrap(), GOOD_LAYER);

    let fresh = ContentStore::open(tmp.path().join("fresh")).unwrap();
    let err = client
        .pull_image(
            &Reference::parse(&format!("{host}/bad:v1")).unwrap(),
            &fresh,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!fresh.exists(&Digest::of(GOOD_LAYER)));
    assert!(!fresh.exists(&Digest::of(b"tampered bytes")));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("fresh/ingest"))
            .unwrap()
            .count(),
        0
    );
}

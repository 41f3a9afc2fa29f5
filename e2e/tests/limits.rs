//! Kubernetes' limits against a real `berth server`: bodies over 3 MiB are 413 before they are
//! read whole, stored objects over 1.5 MiB are 413 `etcdserver: request is too large`, deeply
//! nested JSON and YAML are 400 at once, and after large objects are deleted the server's memory
//! and its store file come back down (with a short `--compaction-interval`).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// What curl saw: the HTTP code and the body.
struct Answer {
    code: u16,
    body: String,
}

impl Answer {
    fn status(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a Status ({e}): {:?}", self.body))
    }
}

/// POSTs `body` to the ConfigMaps with curl (a real client) and `extra` curl arguments; with
/// `chunked`, the body is streamed from stdin with chunked transfer encoding (no declared size).
fn curl_post(server: &TestServer, extra: &[&str], body: &[u8], chunked: bool) -> Answer {
    let upload: &[&str] = if chunked {
        &["-T", "-", "-H", "Transfer-Encoding: chunked"]
    } else {
        &["--data-binary", "@-"]
    };
    let mut child = Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "--max-time",
            "60",
        ])
        .args(["-H", &format!("Authorization: Bearer {}", server.token())])
        .args(upload)
        .args(extra)
        .arg(format!("{}{CONFIGMAPS}", server.url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The server may answer (and curl stop reading) before all of it is written.
    let _ = stdin.write_all(body);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Answer {
        code: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
    }
}

fn config_map_json(name: &str, value_bytes: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"a": "x".repeat(value_bytes)}}))
    .unwrap()
}

fn assert_body_too_large(a: &Answer) {
    assert_eq!(a.code, 413, "{}", a.body);
    let s = a.status();
    assert_eq!(s["reason"], "RequestEntityTooLarge");
    assert_eq!(s["message"], "Request entity too large: limit is 3145728");
}

#[tokio::test]
async fn bodies_over_3_mib_are_413_without_being_read_whole() {
    let server = TestServer::start().await.unwrap();
    let json_ct = ["-H", "Content-Type: application/json"];

    // A declared 4 MiB body (Content-Length) is answered from its headers, at once; a chunked
    // body as soon as 3 MiB have arrived. Both over HTTP/2 and HTTP/1.1, 4 MiB and 20 MiB: the
    // client gets the answer, not a reset stream.
    for size in [4, 20] {
        let body = config_map_json("huge", size * 1024 * 1024);
        for proto in ["--http2", "--http1.1"] {
            for chunked in [false, true] {
                let started = Instant::now();
                let a = curl_post(&server, &[&json_ct[..], &[proto]].concat(), &body, chunked);
                assert_body_too_large(&a);
                let took = started.elapsed();
                assert!(
                    took < Duration::from_secs(10),
                    "{size} MiB {proto}: {took:?}"
                );
            }
        }
    }
    let client = server.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    assert!(cms.get_opt("huge").await.unwrap().is_none());
}

#[tokio::test]
async fn objects_over_1_5_mib_are_413_like_etcd() {
    let server = TestServer::start().await.unwrap();
    let json_ct = ["-H", "Content-Type: application/json"];
    let a = curl_post(
        &server,
        &json_ct,
        &config_map_json("two-mib", 2 * 1024 * 1024),
        false,
    );
    assert_eq!(a.code, 413, "{}", a.body);
    let s = a.status();
    assert_eq!(s["reason"], "RequestEntityTooLarge");
    assert_eq!(s["message"], "etcdserver: request is too large");

    // Growing a small object past the limit by a patch is refused the same way.
    let client = server.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let small: ConfigMap = serde_json::from_slice(&config_map_json("small", 10)).unwrap();
    cms.create(&PostParams::default(), &small).await.unwrap();
    let patch = json!({"data": {"b": "y".repeat(1600 * 1024)}});
    let err = cms
        .patch(
            "small",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (413, "RequestEntityTooLarge"));
            assert_eq!(s.message, "etcdserver: request is too large");
        }
        other => panic!("expected a 413 Status, got {other:?}"),
    }
    assert!(cms.get_opt("two-mib").await.unwrap().is_none());
}

#[tokio::test]
async fn deeply_nested_json_and_yaml_are_400_within_a_second() {
    let server = TestServer::start().await.unwrap();
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_yaml = format!("{}x\n", "- ".repeat(100_000));
    let deep_yaml_flow = format!("a: {}{}\n", "{b: ".repeat(50_000), "}".repeat(50_000));
    for (ct, body) in [
        ("application/json", &deep_json),
        ("application/yaml", &deep_yaml),
        ("application/yaml", &deep_yaml_flow),
        ("application/merge-patch+json", &deep_json),
    ] {
        let started = Instant::now();
        let a = curl_post(
            &server,
            &["-H", &format!("Content-Type: {ct}")],
            body.as_bytes(),
            false,
        );
        let took = started.elapsed();
        assert_eq!(a.code, 400, "{ct}: {}", a.body);
        assert_eq!(a.status()["reason"], "BadRequest");
        assert!(
            a.status()["message"]
                .as_str()
                .unwrap()
                .contains("nested deeper than 100"),
            "{}",
            a.body
        );
        assert!(
            took < Duration::from_secs(1),
            "{ct}: refused after {took:?}"
        );
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// 50 ConfigMaps of 1 MiB created and deleted: the store file shrinks back once a compaction
/// interval has passed, and the server's memory returns to within 20 % of where it started.
#[tokio::test]
async fn memory_and_store_file_come_back_after_large_objects_are_deleted() {
    let server = TestServer::start_with(&["--compaction-interval", "2s"])
        .await
        .unwrap();
    let client = server.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    // Warm up the paths a create, list and delete take, then take the baseline.
    let warm: ConfigMap = serde_json::from_slice(&config_map_json("warm", 1024)).unwrap();
    cms.create(&PostParams::default(), &warm).await.unwrap();
    cms.list(&Default::default()).await.unwrap();
    cms.delete("warm", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let baseline = server.rss_bytes().unwrap();
    let store = server.data_dir().join("server/state.redb");
    let small_file = file_size(&store);

    for i in 0..50 {
        let cm: ConfigMap =
            serde_json::from_slice(&config_map_json(&format!("big-{i}"), 1024 * 1024)).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    assert_eq!(cms.list(&Default::default()).await.unwrap().items.len(), 50);
    let peak = server.rss_bytes().unwrap();
    let big_file = file_size(&store);
    assert!(
        big_file > 50 * 1024 * 1024,
        "store file {big_file} bytes with 50 MiB stored"
    );
    for i in 0..50 {
        cms.delete(&format!("big-{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }

    let shrunk = small_file + 8 * 1024 * 1024;
    let deadline = Instant::now() + Duration::from_secs(60);
    while file_size(&store) > shrunk && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let vacuums: Vec<String> = server
        .log()
        .lines()
        .filter(|l| l.contains("vacuum") || l.contains("compact"))
        .map(str::to_string)
        .collect();
    assert!(
        file_size(&store) <= shrunk,
        "store file {} bytes 60 s after the deletes (peak {big_file}, {small_file} before); log:\n{}",
        file_size(&store),
        vacuums.join("\n")
    );
    let limit = baseline + baseline / 5;
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        last = server.rss_bytes().unwrap();
        if last <= limit {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        last <= limit,
        "server RSS {} MiB after the deletes; {} MiB at the start, {} MiB at the peak",
        last >> 20,
        baseline >> 20,
        peak >> 20
    );
}

//! The node endpoint (logs and exec) against a real CRI runtime (root only, as CI runs): berth's
//! runtime in-process on a Unix socket with its exec streaming server, busybox pushed with skopeo
//! to Debian's docker-registry on loopback, one sandbox (loopback only) whose containers carry
//! the kubelet's labels, as the agent's pod workers create them. Then the same through an
//! in-process API server (pods/log, pods/exec) with kube-rs and the real kubectl.
//!
//! This test binary is also the runtime's shim (`<this exe> shim ...`), hence `harness = false`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use berth_agent::AgentConfig;
use berth_agent::labels;
use berth_cri::v1 as cri;
use futures::{AsyncBufReadExt, FutureExt, SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::cri::{
    Runtime, image_spec, open_runtime, pull, remove_image, remove_sandbox, run_sandbox,
    sandbox_config, start_container,
};
use support::registry::{Registry, busybox};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Bound on any one step, so a broken endpoint fails instead of hanging.
const WAIT: Duration = Duration::from_secs(60);
/// The key this test's API server derives node endpoint tokens from ...
const ENDPOINT_KEY: &str = "node-endpoint-key-for-tests";
/// ... and the token it derives from it for node `node-a`: HMAC-SHA256(key, "node-a").
const TOKEN: &str = "a71706e83c85c3587a7794c1df782595b39d07da1323e04889af2711273beee1";
const NS: &str = "default";
const POD: &str = "web";

/// The in-process runtime, its client and the test's sandbox.
struct Node {
    cri: berth_cri::CriClient,
    /// The Pod's UID (the API server's, so pods/log finds these containers).
    uid: String,
    image: String,
    sandbox_id: String,
    sandbox: cri::PodSandboxConfig,
}

impl Node {
    /// Creates and starts container `name` (instance `restart`) running `script` as root.
    async fn run(&mut self, name: &str, restart: u32, script: &str) -> String {
        let uid = self.uid.clone();
        self.run_as(&uid, name, restart, script).await
    }

    /// Like [`Node::run`], labelled with Pod UID `uid`.
    async fn run_as(&mut self, uid: &str, name: &str, restart: u32, script: &str) -> String {
        let labels = HashMap::from([
            (labels::POD_NAME.to_string(), POD.to_string()),
            (labels::POD_NAMESPACE.to_string(), NS.to_string()),
            (labels::POD_UID.to_string(), uid.to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
        ]);
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: restart,
            }),
            image: image_spec(&self.image),
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}/{restart}.log"),
            labels,
            annotations: HashMap::from([(labels::RESTART_COUNT.to_string(), restart.to_string())]),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_user: Some(cri::Int64Value { value: 0 }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        start_container(&mut self.cri, &self.sandbox_id, &self.sandbox, config).await
    }

    async fn wait_exited(&mut self, id: &str) {
        berth_testkit::cri::wait_exited(&mut self.cri, id, WAIT).await;
    }
}

/// An HTTPS client for the endpoint (its certificate is self-signed).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http().get(format!("https://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("in time")
        .expect("request");
    let code = resp.status().as_u16();
    let body = tokio::time::timeout(WAIT, resp.text())
        .await
        .expect("in time")
        .expect("body");
    (code, body)
}

async fn logs(port: u16, container: &str, query: &str) -> String {
    let (code, body) = get(
        port,
        &format!("/containerLogs/{NS}/{POD}/{container}?{query}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Accepts any certificate: the endpoint's is self-signed (as the API server connects).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What one exec produced.
#[derive(Debug, Default)]
struct ExecOutput {
    stdout: String,
    stderr: String,
    status: String,
}

/// Runs `command` in `container` through the endpoint (WebSocket, v5): sends `stdin` (if any)
/// and closes it, then collects the channels until the server closes.
async fn exec(port: u16, container: &str, command: &[&str], stdin: Option<&[u8]>) -> ExecOutput {
    exec_with(
        port,
        container,
        command,
        stdin,
        &[("stdout", "true"), ("stderr", "true")],
    )
    .await
}

/// [`exec`] with the given stream flags (e.g. kubectl's `-t`: stdout and tty, no stderr).
async fn exec_with(
    port: u16,
    container: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
    flags: &[(&str, &str)],
) -> ExecOutput {
    let mut query: Vec<(&str, &str)> = command.iter().map(|c| ("command", *c)).collect();
    query.extend(flags);
    if stdin.is_some() {
        query.push(("stdin", "true"));
    }
    let base = format!("wss://127.0.0.1:{port}/exec/{NS}/{POD}/{container}");
    let url = reqwest::Url::parse_with_params(&base, &query)
        .expect("url")
        .to_string();
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().expect("header"),
    );
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("tls");
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("in time")
        .expect("websocket");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("v5.channel.k8s.io")
    );
    if let Some(input) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(input);
        ws.send(Message::Binary(frame.into())).await.expect("stdin");
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .expect("close stdin");
    }
    let mut out = ExecOutput::default();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("exec output in time");
        let Some(Ok(msg)) = msg else { break };
        let Message::Binary(data) = msg else { continue };
        let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default()).into_owned();
        match data.first() {
            Some(1) => out.stdout.push_str(&text),
            Some(2) => out.stderr.push_str(&text),
            Some(3) => out.status.push_str(&text),
            _ => {}
        }
    }
    out
}

async fn checks(node: &mut Node, port: u16) {
    // Authentication first: no token, a wrong token.
    let path = format!("/containerLogs/{NS}/{POD}/app");
    assert_eq!(get(port, &path, None).await.0, 401);
    assert_eq!(get(port, &path, Some("wrong")).await.0, 401);
    // A container the runtime does not have yet.
    let (code, body) = get(
        port,
        &format!("/containerLogs/{NS}/{POD}/nope"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body.contains("container \\\"nope\\\" in pod \\\"web\\\" is waiting to start"),
        "{body}"
    );

    // The first instance ends its output without a newline (the runtime ends that line).
    let first = node
        .run("app", 0, "echo line1; echo line2; echo line3; printf tail")
        .await;
    node.wait_exited(&first).await;
    assert_eq!(logs(port, "app", "").await, "line1\nline2\nline3\ntail\n");
    assert_eq!(logs(port, "app", "tailLines=2").await, "line3\ntail\n");
    assert_eq!(logs(port, "app", "limitBytes=8").await, "line1\nli");
    let stamped = logs(port, "app", "timestamps=true&tailLines=1").await;
    let (time, text) = stamped.split_once(' ').expect("a timestamp prefix");
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "{stamped}"
    );
    assert_eq!(text, "tail\n");
    // stderr is part of the log too (in its own container: the two pipes are read concurrently,
    // so their relative order is not defined).
    let err = node.run("err", 0, "echo oops >&2").await;
    node.wait_exited(&err).await;
    assert_eq!(logs(port, "err", "").await, "oops\n");
    let (code, body) = get(port, &format!("{path}?previous=true"), Some(TOKEN)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("previous terminated container"), "{body}");

    // A second instance waits for a file that an exec creates: follow streams its first line,
    // keeps the response open, then gets the rest and ends when the container exits.
    node.run(
        "app",
        1,
        "echo first; while [ ! -e /go ]; do sleep 0.1; done; echo second",
    )
    .await;
    let resp = http()
        .get(format!("https://127.0.0.1:{port}{path}?follow=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("follow");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    while !seen.ends_with(b"first\n") {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("first line in time")
            .expect("open")
            .expect("chunk");
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, b"first\n");
    let touched = exec(port, "app", &["sh", "-c", "echo > /go"], None).await;
    assert!(touched.status.contains("Success"), "{touched:?}");
    while let Some(chunk) = tokio::time::timeout(WAIT, body.next())
        .await
        .expect("the follow ends in time")
    {
        seen.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(String::from_utf8_lossy(&seen), "first\nsecond\n");
    // The first instance is now the previous one.
    assert_eq!(
        logs(port, "app", "previous=true&tailLines=1").await,
        "tail\n"
    );
    assert_eq!(logs(port, "app", "").await, "first\nsecond\n");

    // Exec in a running container: output, exit codes, stdin.
    node.run("shell", 0, "sleep 3600").await;
    let hi = exec(port, "shell", &["echo", "hi"], None).await;
    assert_eq!((hi.stdout.as_str(), hi.stderr.as_str()), ("hi\n", ""));
    assert!(
        hi.status.is_empty() || hi.status.contains("Success"),
        "{hi:?}"
    );
    let failed = exec(port, "shell", &["sh", "-c", "echo bad >&2; exit 3"], None).await;
    assert_eq!(failed.stderr, "bad\n");
    let status: serde_json::Value =
        serde_json::from_str(&failed.status).expect("a Status on channel 3");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");
    // A tty request (kubectl -t sends no stderr): the command runs on a terminal, which shows
    // its stderr too, on stdout.
    let tty = exec_with(
        port,
        "shell",
        &["sh", "-c", "test -t 0 && echo out; echo err >&2"],
        None,
        &[("stdout", "true"), ("tty", "true")],
    )
    .await;
    let mut merged: Vec<&str> = tty.stdout.lines().collect();
    merged.sort();
    assert_eq!(
        (merged, tty.stderr.as_str()),
        (vec!["err", "out"], ""),
        "{tty:?}"
    );
    let cat = exec(port, "shell", &["cat"], Some(b"hello from stdin")).await;
    assert_eq!(cat.stdout, "hello from stdin");
    // Exec without a WebSocket upgrade is refused with a Status.
    let (code, body) = get(
        port,
        &format!("/exec/{NS}/{POD}/shell?command=true"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, 400, "{body}");
}

/// An API server (in-memory store) that presents [`TOKEN`] to node `node-a`, and a client.
async fn api_server(dir: &Path) -> (berth_apiserver::Running, kube::Client) {
    std::fs::create_dir_all(dir.join("server")).expect("server dir");
    let key = dir.join("server/node-endpoint-key");
    std::fs::write(key, format!("{ENDPOINT_KEY}\n")).expect("endpoint key");
    support::api::start(dir, vec![]).await
}

/// Runs kubectl against `kubeconfig`; returns (exit code, stdout, stderr).
async fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", cache)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("kubectl in time")
    .expect("kubectl installed");
    let s = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    (
        out.status.code().unwrap_or(-1),
        s(out.stdout),
        s(out.stderr),
    )
}

/// Runs `command` through pods/exec with kube-rs; returns (stdout, stderr, exit code).
async fn kube_exec(
    pods: &kube::Api<Pod>,
    container: &str,
    command: &[&str],
) -> (String, String, i32) {
    use tokio::io::AsyncReadExt;
    let ap = AttachParams {
        container: Some(container.into()),
        stdin: false,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut proc = tokio::time::timeout(WAIT, pods.exec(POD, command.to_vec(), &ap))
        .await
        .expect("in time")
        .expect("exec");
    let status = proc.take_status().expect("status channel");
    let (mut out, mut err) = (
        proc.stdout().expect("stdout"),
        proc.stderr().expect("stderr"),
    );
    let (mut o, mut e) = (String::new(), String::new());
    let (a, b, status) = tokio::time::timeout(WAIT, async {
        tokio::join!(
            out.read_to_string(&mut o),
            err.read_to_string(&mut e),
            status
        )
    })
    .await
    .expect("exec ends in time");
    a.expect("stdout");
    b.expect("stderr");
    let code = match status {
        Some(s) if s.reason.as_deref() == Some("NonZeroExitCode") => s
            .details
            .and_then(|d| d.causes)
            .and_then(|c| c.into_iter().find_map(|c| c.message))
            .and_then(|m| m.parse().ok())
            .expect("an exit code"),
        _ => 0,
    };
    (o, e, code)
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// The API server with Node `node-a` (its endpoint on `port`), Pod `web` on it (containers app,
/// err, shell) and Pod `lonely` (not scheduled); returns the server, a client and web's UID.
async fn api_setup(port: u16, dir: &Path) -> (berth_apiserver::Running, kube::Client, String) {
    let (server, client) = api_server(&dir.join("api")).await;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "node-a"}})).expect("node"),
        )
        .await
        .expect("create node");
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    nodes
        .patch_status("node-a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NS);
    let pod = |name: &str, node: Option<&str>, containers: &[&str]| -> Pod {
        let cs: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox"}))
            .collect();
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": cs}}),
        )
        .expect("pod")
    };
    let web = pods
        .create(
            &PostParams::default(),
            &pod(POD, Some("node-a"), &["app", "err", "shell"]),
        )
        .await
        .expect("create pod");
    pods.create(&PostParams::default(), &pod("lonely", None, &["app"]))
        .await
        .expect("create pod");

    (server, client, web.metadata.uid.expect("a UID"))
}

/// pods/log and pods/exec through the API server, with kube-rs and with kubectl; `node` still has
/// the containers [`checks`] made.
async fn api_checks(node: &mut Node, server: berth_apiserver::Running, client: kube::Client) {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NS);
    // A container of an older Pod of the same name (another UID) with a higher restart count is
    // not this Pod's: the API server names the UID.
    let stale = node.run_as("old-uid", "app", 9, "echo stale").await;
    node.wait_exited(&stale).await;
    let lp = |c: &str| LogParams {
        container: Some(c.into()),
        ..Default::default()
    };
    assert_eq!(
        pods.logs(POD, &lp("app")).await.expect("logs"),
        "first\nsecond\n"
    );
    assert_eq!(
        pods.logs(
            POD,
            &LogParams {
                previous: true,
                tail_lines: Some(2),
                ..lp("app")
            }
        )
        .await
        .expect("logs"),
        "line3\ntail\n"
    );
    assert_eq!(pods.logs(POD, &lp("err")).await.expect("logs"), "oops\n");
    let (code, msg) = api_error(
        pods.logs(POD, &LogParams::default())
            .await
            .expect_err("ambiguous"),
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            400,
            "a container name must be specified for pod web, choose one of: [app err shell]"
        )
    );
    let (code, msg) = api_error(
        pods.logs(POD, &lp("nope"))
            .await
            .expect_err("unknown container"),
    );
    assert_eq!(
        (code, msg.as_str()),
        (400, "container nope is not valid for pod web")
    );
    let (code, msg) = api_error(
        pods.logs("lonely", &LogParams::default())
            .await
            .expect_err("unscheduled"),
    );
    assert_eq!(
        (code, msg.as_str()),
        (400, "pod lonely does not have a host assigned")
    );
    let (code, _) = api_error(
        pods.logs("ghost", &LogParams::default())
            .await
            .expect_err("no such pod"),
    );
    assert_eq!(code, 404);

    // Exec through the API server (kube-rs offers v5 and v4).
    assert_eq!(
        kube_exec(&pods, "shell", &["echo", "hi"]).await,
        ("hi\n".into(), String::new(), 0)
    );
    assert_eq!(
        kube_exec(&pods, "shell", &["sh", "-c", "echo no >&2; exit 3"]).await,
        (String::new(), "no\n".into(), 3)
    );

    // Follow through the API server: the body streams while the container runs.
    node.run(
        "app",
        2,
        "echo again; while [ ! -e /go ]; do sleep 0.1; done; echo done",
    )
    .await;
    let mut lines = pods
        .log_stream(
            POD,
            &LogParams {
                follow: true,
                ..lp("app")
            },
        )
        .await
        .expect("follow")
        .lines();
    let first = tokio::time::timeout(WAIT, lines.next())
        .await
        .expect("first line in time");
    assert_eq!(first.expect("a line").expect("read"), "again");
    // The third instance gets its own /go (a new container).
    assert_eq!(
        kube_exec(&pods, "app", &["sh", "-c", "echo > /go"]).await.2,
        0
    );
    let mut rest = Vec::new();
    while let Some(line) = tokio::time::timeout(WAIT, lines.next())
        .await
        .expect("follow ends in time")
    {
        rest.push(line.expect("read"));
    }
    assert_eq!(rest, vec!["done".to_string()]);

    // The real kubectl: logs (--tail, --previous, -f on an ended container) and exec (WebSocket).
    let kc = server.kubeconfig.clone();
    let cache = kc.with_file_name("kubecache");
    let (code, out, err) = kubectl(&kc, &cache, &["logs", POD, "-c", "app", "--tail", "1"]).await;
    assert_eq!((code, out.as_str()), (0, "done\n"), "{err}");
    let (code, out, err) = kubectl(&kc, &cache, &["logs", POD, "-c", "app", "--previous"]).await;
    assert_eq!((code, out.as_str()), (0, "first\nsecond\n"), "{err}");
    let (code, out, err) = kubectl(&kc, &cache, &["logs", "-f", POD, "-c", "err"]).await;
    assert_eq!((code, out.as_str()), (0, "oops\n"), "{err}");
    let (code, out, err) = kubectl(
        &kc,
        &cache,
        &["exec", POD, "-c", "shell", "--", "echo", "from kubectl"],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "from kubectl\n"), "{err}");
    let (code, _, err) = kubectl(
        &kc,
        &cache,
        &["exec", POD, "-c", "shell", "--", "sh", "-c", "exit 4"],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    server.stop();
}

async fn logs_and_exec(tmp: &Path) {
    let registry = Registry::start().expect("docker-registry installed");
    let image = registry
        .push(&busybox(&tmp.join("image")), "busybox")
        .expect("push");
    let mut service = open_runtime(tmp);
    service.start_streaming().await.expect("streaming server");
    let runtime = Runtime::serve(service, &tmp.join("cri.sock")).await;
    let mut c = runtime.cri.clone();
    pull(&mut c, &image).await;
    let mut agent = AgentConfig::new("node-a", runtime.endpoint.clone(), tmp.join("agent"));
    agent.server_port = 0;
    agent.server_token = TOKEN.into();
    let (port, serving) = berth_agent::server::serve(&agent, c.clone())
        .await
        .expect("node endpoint");
    let serving = tokio::spawn(serving);

    let (api, client, uid) = api_setup(port, tmp).await;
    let logs_dir = tmp.join("logs");
    std::fs::create_dir_all(&logs_dir).expect("logs");
    let sandbox = cri::PodSandboxConfig {
        labels: HashMap::from([
            (labels::POD_NAME.to_string(), POD.to_string()),
            (labels::POD_NAMESPACE.to_string(), NS.to_string()),
            (labels::POD_UID.to_string(), uid.clone()),
        ]),
        ..sandbox_config(POD, &uid, NS, &logs_dir)
    };
    let sandbox_id = run_sandbox(&mut c, &sandbox).await;

    let mut node = Node {
        cri: c.clone(),
        uid,
        image: image.clone(),
        sandbox_id: sandbox_id.clone(),
        sandbox,
    };
    let result = std::panic::AssertUnwindSafe(async {
        checks(&mut node, port).await;
        api_checks(&mut node, api, client).await;
    })
    .catch_unwind()
    .await;

    serving.abort();
    remove_sandbox(&mut c, &sandbox_id).await;
    remove_image(&mut c, &image).await;
    runtime.stop().await.expect("join").expect("serve");
    drop(registry);
    support::harness::conclude(result, tmp);
}

fn main() {
    support::harness::main("server_logs_and_exec", "berth-nodesrv-", logs_and_exec);
}

//! Exec probes and an image's HEALTHCHECK through a real CRI runtime (root only, as CI runs):
//! berth's runtime in-process on a Unix socket, busybox images pushed with skopeo to Debian's
//! docker-registry on loopback and pulled through CRI, one pod sandbox (loopback only).
//!
//! This test binary is also the runtime's shim (`<this exe> shim ...`), hence `harness = false`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_agent::probe::{self, ProbeKind, ProbeUpdate, Target};
use berth_cri::v1 as cri;
use berth_image::Digest;
use berth_runtime::testimage::busybox_layout;
use berth_runtime::{CriService, RuntimeConfig, shim};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ExecAction, Probe};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Bound on waiting for one probe update, so a broken prober fails instead of hanging.
const WAIT: Duration = Duration::from_secs(60);

/// Debian's docker-registry on a free loopback port; killed on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.join("registry.yml");
        let storage = dir.join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .expect("registry config");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry installed");
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Pushes the OCI layout at `layout` (tag `latest`) as `test/<name>:latest`; returns the name.
    fn push(&self, layout: &Path, name: &str) -> String {
        let image = format!("127.0.0.1:{}/test/{name}:latest", self.port);
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{image}"))
            .output()
            .expect("skopeo installed");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// Writes `value` as a blob of `layout`; returns its descriptor's (digest, size).
fn write_blob(layout: &Path, value: &Value) -> (String, usize) {
    let bytes = serde_json::to_vec(value).expect("json");
    let digest = Digest::of(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), &bytes).expect("blob");
    (digest.to_string(), bytes.len())
}

/// Gives the image in the OCI layout `layout` a Docker `config.Healthcheck` (as `docker build`
/// records a HEALTHCHECK), rewriting its config, manifest and index.
fn add_healthcheck(layout: &Path, healthcheck: Value) {
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let mut index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("manifest")
        .to_string();
    let mut manifest = read_json(&blob(&manifest_digest));
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    let mut config = read_json(&blob(&config_digest));
    config["config"]["Healthcheck"] = healthcheck;
    let (digest, size) = write_blob(layout, &config);
    manifest["config"]["digest"] = json!(digest);
    manifest["config"]["size"] = json!(size);
    let (digest, size) = write_blob(layout, &manifest);
    index["manifests"][0]["digest"] = json!(digest);
    index["manifests"][0]["size"] = json!(size);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(c: &mut berth_cri::CriClient, image: &str) {
    c.image
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await
        .expect("pull");
}

async fn verbose_status(c: &mut berth_cri::CriClient, image: &str) -> cri::ImageStatusResponse {
    c.image
        .image_status(cri::ImageStatusRequest {
            image: image_spec(image),
            verbose: true,
        })
        .await
        .expect("image status")
        .into_inner()
}

/// Creates and starts a long-running container of `image` in the sandbox.
async fn run_container(
    c: &mut berth_cri::CriClient,
    sandbox_id: &str,
    sandbox: &cri::PodSandboxConfig,
    name: &str,
    image: &str,
) -> String {
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: image_spec(image),
        command: vec!["sleep".into(), "3600".into()],
        log_path: format!("{name}.log"),
        ..Default::default()
    };
    let id = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .expect("create container")
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("start container");
    id
}

async fn next(rx: &mut UnboundedReceiver<ProbeUpdate>) -> ProbeUpdate {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a probe update in time")
        .expect("the probe loop is running")
}

fn exec_probe(command: &[&str], failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

fn target(container_id: &str) -> Target {
    Target {
        pod_ip: None,
        container_id: container_id.into(),
        ports: vec![],
    }
}

/// The checks, against running containers of the plain and the HEALTHCHECK image.
async fn checks(c: &mut berth_cri::CriClient, plain: (&str, &str), healthy: (&str, &str)) {
    let (plain_image, plain_id) = plain;
    let (healthy_image, healthy_id) = healthy;

    // `true` succeeds: readiness turns healthy, with no failure before.
    let (tx, mut rx) = unbounded_channel();
    let ready = probe::spawn(
        ProbeKind::Readiness,
        "app".into(),
        exec_probe(&["true"], 3),
        target(plain_id),
        c.clone(),
        tx,
    );
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed {
            kind: ProbeKind::Readiness,
            container: "app".into(),
            healthy: true
        }
    );
    drop(ready);

    // `false` fails: liveness turns unhealthy after one failure (threshold 1).
    let (tx, mut rx) = unbounded_channel();
    let live = probe::spawn(
        ProbeKind::Liveness,
        "app".into(),
        exec_probe(&["false"], 1),
        target(plain_id),
        c.clone(),
        tx,
    );
    match next(&mut rx).await {
        ProbeUpdate::Failed {
            kind: ProbeKind::Liveness,
            message,
            ..
        } => {
            assert!(message.contains("exited with code 1"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed {
            kind: ProbeKind::Liveness,
            container: "app".into(),
            healthy: false
        }
    );
    drop(live);

    // The failure message quotes the command's output.
    let (tx, mut rx) = unbounded_channel();
    let noisy = exec_probe(&["sh", "-c", "echo database unreachable; exit 7"], 1);
    let noisy = probe::spawn(
        ProbeKind::Liveness,
        "app".into(),
        noisy,
        target(plain_id),
        c.clone(),
        tx,
    );
    match next(&mut rx).await {
        ProbeUpdate::Failed { message, .. } => {
            assert!(
                message.contains("exited with code 7: database unreachable"),
                "{message}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    drop(noisy);

    // HEALTHCHECK: only the image that declares one yields a probe, with its settings.
    assert_eq!(
        probe::healthcheck_probe(&verbose_status(c, plain_image).await),
        None
    );
    let hc = probe::healthcheck_probe(&verbose_status(c, healthy_image).await)
        .expect("a HEALTHCHECK probe");
    assert_eq!(
        hc.exec.as_ref().and_then(|e| e.command.clone()),
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "test -x /bin/busybox && echo healthy".into()
        ])
    );
    assert_eq!(
        (hc.period_seconds, hc.timeout_seconds, hc.failure_threshold),
        (Some(1), Some(2), Some(4))
    );
    // ... and it runs in the container as a liveness probe: it passes there, so (liveness starting
    // healthy) no update at all is sent; as a startup probe it reports success.
    let (tx, mut rx) = unbounded_channel();
    let startup = probe::spawn(
        ProbeKind::Startup,
        "app".into(),
        hc,
        target(healthy_id),
        c.clone(),
        tx,
    );
    assert_eq!(
        next(&mut rx).await,
        ProbeUpdate::Changed {
            kind: ProbeKind::Startup,
            container: "app".into(),
            healthy: true
        }
    );
    drop(startup);
}

async fn exec_probes_and_healthcheck(tmp: &Path) {
    let registry = Registry::start(tmp);
    let plain_layout =
        busybox_layout(&tmp.join("plain")).expect("busybox layout (busybox-static installed)");
    let healthy_layout = busybox_layout(&tmp.join("healthy")).expect("busybox layout");
    add_healthcheck(
        &healthy_layout,
        json!({
            "Test": ["CMD-SHELL", "test -x /bin/busybox && echo healthy"],
            "Interval": 1_000_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 4,
        }),
    );
    let plain_image = registry.push(&plain_layout, "plain");
    let healthy_image = registry.push(&healthy_layout, "healthy");

    let config = RuntimeConfig {
        root: tmp.join("root"),
        shim_exe: std::env::current_exe().expect("exe"),
        oci_runtime: "runc".into(),
        insecure_registries: vec![],
        network: None,
    };
    let service = CriService::open(&config).expect("open runtime");
    let socket = tmp.join("cri.sock");
    let listener = berth_cri::bind(&socket).expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_cri::serve(
        listener,
        service.clone(),
        service,
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut c = berth_cri::connect(&format!("unix://{}", socket.display()))
        .await
        .expect("connect");
    pull(&mut c, &plain_image).await;
    pull(&mut c, &healthy_image).await;

    let logs = tmp.join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "probed".into(),
            uid: "probe-exec-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "probed".into(),
        log_directory: logs.display().to_string(),
        ..Default::default()
    };
    let sandbox_id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox")
        .into_inner()
        .pod_sandbox_id;

    // Tear down even when a check fails, so no container, mount or cgroup is left behind.
    let result = async {
        let plain_id = run_container(&mut c, &sandbox_id, &sandbox, "plain", &plain_image).await;
        let healthy_id =
            run_container(&mut c, &sandbox_id, &sandbox, "healthy", &healthy_image).await;
        checks(
            &mut c,
            (&plain_image, &plain_id),
            (&healthy_image, &healthy_id),
        )
        .await;
    };
    let result = std::panic::AssertUnwindSafe(result).catch_unwind().await;

    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .expect("stop sandbox");
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id,
        })
        .await
        .expect("remove sandbox");
    for image in [&plain_image, &healthy_image] {
        c.image
            .remove_image(cri::RemoveImageRequest {
                image: image_spec(image),
            })
            .await
            .expect("remove image");
    }
    let _ = stop_tx.send(());
    server.await.expect("join").expect("serve");
    drop(registry);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let tmp_str = tmp.to_str().expect("utf8");
    assert!(!mounts.contains(tmp_str), "leftover mounts:\n{mounts}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        let cfg = shim::ShimConfig::from_args(args[2..].iter().cloned()).expect("shim args");
        std::process::exit(if shim::run(&cfg).is_ok() { 0 } else { 1 });
    }
    let name = "exec_probes_and_healthcheck";
    // `cargo test -p berth-agent <filter>` passes the filter on; honour it like libtest does.
    if let Some(filter) = args.iter().skip(1).find(|a| !a.starts_with('-'))
        && !name.contains(filter.as_str())
    {
        println!("running 0 tests");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-probe-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(exec_probes_and_healthcheck(tmp.path()))
    }));
    println!(
        "test {name} ... {}",
        if result.is_ok() { "ok" } else { "FAILED" }
    );
    if result.is_err() {
        std::process::exit(1);
    }
}

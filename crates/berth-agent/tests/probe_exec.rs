//! Exec probes and an image's HEALTHCHECK through a real CRI runtime (root only, as CI runs):
//! berth's runtime in-process on a Unix socket, busybox images pushed with skopeo to Debian's
//! docker-registry on loopback and pulled through CRI, one pod sandbox (loopback only).
//!
//! This test binary is also the runtime's shim (`<this exe> shim ...`), hence `harness = false`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use berth_agent::probe::{self, ProbeKind, ProbeUpdate};
use berth_cri::v1 as cri;
use berth_image::Digest;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ExecAction, Probe};
use serde_json::{Value, json};
use support::cri::{
    Runtime, image_spec, open_runtime, pull, remove_image, remove_sandbox, run_sandbox,
    sandbox_config, start_container,
};
use support::probe::{changed, next, spawn, target};
use support::registry::{Registry, busybox};

/// Bound on waiting for one probe update, so a broken prober fails instead of hanging.
const WAIT: Duration = Duration::from_secs(60);

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
    start_container(c, sandbox_id, sandbox, config).await
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

/// The checks, against running containers of the plain and the HEALTHCHECK image.
async fn checks(c: &mut berth_cri::CriClient, plain: (&str, &str), healthy: (&str, &str)) {
    let (plain_image, plain_id) = plain;
    let (healthy_image, healthy_id) = healthy;

    // `true` succeeds: readiness turns healthy, with no failure before.
    let (ready, mut rx) = spawn(
        ProbeKind::Readiness,
        exec_probe(&["true"], 3),
        target(None, plain_id),
        c.clone(),
    );
    assert_eq!(
        next(&mut rx, WAIT).await,
        changed(ProbeKind::Readiness, true)
    );
    drop(ready);

    // `false` fails: liveness turns unhealthy after one failure (threshold 1).
    let (live, mut rx) = spawn(
        ProbeKind::Liveness,
        exec_probe(&["false"], 1),
        target(None, plain_id),
        c.clone(),
    );
    match next(&mut rx, WAIT).await {
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
        next(&mut rx, WAIT).await,
        changed(ProbeKind::Liveness, false)
    );
    drop(live);

    // The failure message quotes the command's output.
    let noisy = exec_probe(&["sh", "-c", "echo database unreachable; exit 7"], 1);
    let (noisy, mut rx) = spawn(
        ProbeKind::Liveness,
        noisy,
        target(None, plain_id),
        c.clone(),
    );
    match next(&mut rx, WAIT).await {
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
    let (startup, mut rx) = spawn(ProbeKind::Startup, hc, target(None, healthy_id), c.clone());
    assert_eq!(next(&mut rx, WAIT).await, changed(ProbeKind::Startup, true));
    drop(startup);
}

async fn exec_probes_and_healthcheck(tmp: &Path) {
    let registry = Registry::start().expect("docker-registry installed");
    let plain_layout = busybox(&tmp.join("plain"));
    let healthy_layout = busybox(&tmp.join("healthy"));
    add_healthcheck(
        &healthy_layout,
        json!({
            "Test": ["CMD-SHELL", "test -x /bin/busybox && echo healthy"],
            "Interval": 1_000_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 4,
        }),
    );
    let plain_image = registry.push(&plain_layout, "plain").expect("push");
    let healthy_image = registry.push(&healthy_layout, "healthy").expect("push");

    let runtime = Runtime::serve(open_runtime(tmp), &tmp.join("cri.sock")).await;
    let mut c = runtime.cri.clone();
    pull(&mut c, &plain_image).await;
    pull(&mut c, &healthy_image).await;

    let logs = tmp.join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let sandbox = sandbox_config("probed", "probe-exec-uid", "default", &logs);
    let sandbox_id = run_sandbox(&mut c, &sandbox).await;

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

    remove_sandbox(&mut c, &sandbox_id).await;
    for image in [&plain_image, &healthy_image] {
        remove_image(&mut c, image).await;
    }
    runtime.stop().await.expect("join").expect("serve");
    drop(registry);
    support::harness::conclude(result, tmp);
}

fn main() {
    support::harness::main(
        "exec_probes_and_healthcheck",
        "berth-probe-",
        exec_probes_and_healthcheck,
    );
}

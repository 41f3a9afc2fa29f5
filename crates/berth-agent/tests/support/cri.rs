//! berth's CRI runtime in-process on a Unix socket, and the CRI calls the tests make on it:
//! images, sandboxes, containers.

use std::path::Path;

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use berth_runtime::{CriService, RuntimeConfig};

/// The runtime's configuration for a test under `tmp`: root `tmp/root`, this test binary as the
/// shim (see [`super::harness::main`]), runc, no pod network (sandboxes get only loopback).
pub fn runtime_config(tmp: &Path) -> RuntimeConfig {
    RuntimeConfig {
        root: tmp.join("root"),
        shim_exe: std::env::current_exe().expect("exe"),
        oci_runtime: "runc".into(),
        insecure_registries: vec![],
        network: None,
    }
}

/// Opens the runtime of [`runtime_config`]`(tmp)`.
pub fn open_runtime(tmp: &Path) -> CriService {
    CriService::open(&runtime_config(tmp)).expect("open runtime")
}

/// A runtime served in-process on a Unix socket, and a client of it (berth-testkit's).
pub type Runtime = berth_testkit::cri::ServedRuntime;

/// The CRI image spec naming `image`.
pub fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

/// Pulls `image` through CRI.
pub async fn pull(c: &mut CriClient, image: &str) {
    c.image
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        })
        .await
        .expect("pull");
}

/// Removes `image` through CRI.
pub async fn remove_image(c: &mut CriClient, image: &str) {
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(image),
        })
        .await
        .expect("remove image");
}

/// A sandbox config for Pod `namespace/name` (UID `uid`, hostname `name`) logging to `logs`.
pub fn sandbox_config(
    name: &str,
    uid: &str,
    namespace: &str,
    logs: &Path,
) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        ..Default::default()
    }
}

/// Runs a pod sandbox of `config`; returns its id.
pub async fn run_sandbox(c: &mut CriClient, config: &cri::PodSandboxConfig) -> String {
    c.runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox")
        .into_inner()
        .pod_sandbox_id
}

/// Stops and removes sandbox `id` (with its containers).
pub async fn remove_sandbox(c: &mut CriClient, id: &str) {
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .expect("stop sandbox");
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .expect("remove sandbox");
}

/// Creates a container of `config` in sandbox `sandbox_id` (configured as `sandbox`) and starts
/// it; returns its id.
pub async fn start_container(
    c: &mut CriClient,
    sandbox_id: &str,
    sandbox: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
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

//! The runtime driven only through its CRI gRPC socket (root only, as CI runs): a busybox image
//! built here, pushed with skopeo to Debian's docker-registry on loopback, pulled through CRI,
//! run in a pod sandbox, exec'd into, stopped, removed, leaving no mounts behind.
//!
//! This test binary is also the shim (`<this exe> shim ...`).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_cri::v1 as cri;
use berth_runtime::{CriService, RuntimeConfig};
use berth_testkit::busybox::{busybox_layout, write_layout};
use berth_testkit::cri::ServedRuntime;
use berth_testkit::peer::{DockerRegistry, push_layout};

/// Pushes the OCI layout at `layout` (tag `latest`) to `dest`.
fn push(layout: &Path, dest: &str) {
    push_layout(layout, dest, None).expect("skopeo push");
}

/// Waits (at most 30 s) for the container `id` to exit; returns its status.
async fn wait_exited(client: &mut berth_cri::CriClient, id: &str) -> cri::ContainerStatus {
    berth_testkit::cri::wait_exited(client, id, Duration::from_secs(30)).await
}

fn container(
    sandbox: &cri::PodSandboxConfig,
    name: &str,
    image: &str,
    command: &[&str],
    log_dir_rel: &str,
) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest {
        pod_sandbox_id: String::new(),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            envs: vec![cri::KeyValue {
                key: "GREETING".into(),
                value: b"hello".to_vec(),
            }],
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            log_path: log_dir_rel.into(),
            ..Default::default()
        }),
        sandbox_config: Some(sandbox.clone()),
    }
}

async fn lifecycle_through_the_socket(tmp: &Path) {
    let registry = DockerRegistry::start().expect("docker-registry installed");
    let layout = busybox_layout(tmp).expect("busybox layout (busybox-static installed)");
    let image = format!("127.0.0.1:{}/test/busybox:latest", registry.port());
    push(&layout, &image);

    let root = tmp.join("root");
    let config = RuntimeConfig {
        root: root.clone(),
        shim_exe: std::env::current_exe().expect("exe"),
        oci_runtime: "runc".into(),
        insecure_registries: vec![],
        network: Some(berth_runtime::network::NetworkConfig {
            bridge: "berthtest0".into(),
            cidr: berth_runtime::network::Cidr::parse_pod_cidr("10.77.0.0/24").expect("cidr"),
        }),
    };
    let mut service = CriService::open(&config).expect("open");
    service.start_streaming().await.expect("streaming server");
    let (mut c, stop_tx, server) = serve_at(service, tmp, "cri").await;

    let v = c
        .runtime
        .version(cri::VersionRequest::default())
        .await
        .expect("version")
        .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("berth", "v1")
    );

    // Images.
    let missing = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("status of a missing image is not an error")
        .into_inner();
    assert!(missing.image.is_none());
    let (mut i1, mut i2) = (c.image.clone(), c.image.clone());
    let (a, b) = tokio::join!(
        i1.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        i2.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    let image_id = a.expect("pull").into_inner().image_ref;
    assert_eq!(b.expect("concurrent pull").into_inner().image_ref, image_id);
    assert!(image_id.starts_with("sha256:"));
    let status = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner()
        .image
        .expect("present");
    assert_eq!(status.id, image_id);
    assert_eq!(status.username, "app");
    assert_eq!(status.repo_tags, vec![image.clone()]);
    let list = c
        .image
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.images.len(), 1);

    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    // A sandbox and a container that runs to completion as the image's non-root USER.
    let logs = tmp.join("pod-logs");
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "pod".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "pod-host".into(),
        log_directory: logs.display().to_string(),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: host_port as i32,
            host_ip: "127.0.0.1".into(),
        }],
        ..Default::default()
    };
    let sandbox_id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox")
        .into_inner()
        .pod_sandbox_id;
    let mut req = container(
        &sandbox_config,
        "once",
        &image,
        &[
            "sh",
            "-c",
            "echo $GREETING; id -u; cat /etc/hostname; exit 3",
        ],
        "once.log",
    );
    req.pod_sandbox_id = sandbox_id.clone();
    let once = c
        .runtime
        .create_container(req)
        .await
        .expect("create")
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: once.clone(),
        })
        .await
        .expect("start");
    let s = wait_exited(&mut c, &once).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    assert_eq!(s.image_id, image_id);
    assert!(s.finished_at >= s.started_at && s.started_at >= s.created_at);
    let log = std::fs::read_to_string(logs.join("once.log")).expect("log");
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.split_once(' ').expect("record").1)
        .collect();
    assert_eq!(
        lines,
        vec!["stdout F hello", "stdout F 1000", "stdout F pod-host"]
    );

    // A long-running one: a web server reached from a second pod by pod IP, ExecSync, list
    // filters, stop with grace.
    let mut req = container(
        &sandbox_config,
        "server",
        &image,
        &["httpd", "-f", "-p", "8080", "-h", "/etc"],
        "server.log",
    );
    req.pod_sandbox_id = sandbox_id.clone();
    let server_id = c
        .runtime
        .create_container(req)
        .await
        .expect("create")
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: server_id.clone(),
        })
        .await
        .expect("start");
    let exec = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: server_id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; id -u; exit 4".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "out\n1000\n");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "err\n");
    assert_eq!(exec.exit_code, 4);
    let ip_a = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.clone(),
            verbose: false,
        })
        .await
        .expect("sandbox status")
        .into_inner()
        .status
        .expect("status")
        .network
        .expect("network")
        .ip;
    assert!(ip_a.starts_with("10.77.0."), "pod ip {ip_a:?}");
    // The host port reaches the server in the pod.
    let mut response = String::new();
    for _ in 0..100 {
        response = http_get(host_port, "/hostname").await;
        if response.contains("200 OK") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        response.contains("200 OK") && response.ends_with("pod-host\n"),
        "{response:?}"
    );
    let config_b = cri::PodSandboxConfig {
        hostname: "pod-b".into(),
        port_mappings: vec![],
        ..sandbox_config.clone()
    };
    let sandbox_b = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config_b.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox b")
        .into_inner()
        .pod_sandbox_id;
    let mut req = container(
        &config_b,
        "client",
        &image,
        &["sleep", "1000"],
        "client.log",
    );
    req.pod_sandbox_id = sandbox_b.clone();
    let client_id = c
        .runtime
        .create_container(req)
        .await
        .expect("create")
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: client_id.clone(),
        })
        .await
        .expect("start");
    let url = format!("http://{ip_a}:8080/hostname");
    let fetched = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: client_id.clone(),
            cmd: vec!["wget".into(), "-q".into(), "-O".into(), "-".into(), url],
            timeout: 20,
        })
        .await
        .expect("exec wget")
        .into_inner();
    assert_eq!(
        (
            String::from_utf8_lossy(&fetched.stdout).as_ref(),
            fetched.exit_code
        ),
        ("pod-host\n", 0),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );

    // Log rotation: after the log file is moved away, ReopenContainerLog makes the shim write a
    // fresh file at the same path.
    let mut req = container(
        &sandbox_config,
        "ticker",
        &image,
        &["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
        "ticker.log",
    );
    req.pod_sandbox_id = sandbox_b.clone();
    let ticker = c
        .runtime
        .create_container(req)
        .await
        .expect("create")
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: ticker.clone(),
        })
        .await
        .expect("start");
    let ticker_log = logs.join("ticker.log");
    while !std::fs::read_to_string(&ticker_log)
        .unwrap_or_default()
        .contains("tick")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::rename(&ticker_log, logs.join("ticker.log.1")).expect("rotate");
    c.runtime
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await
        .expect("reopen");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&ticker_log)
        .unwrap_or_default()
        .contains("stdout F tick")
    {
        assert!(Instant::now() < deadline, "no new log file after reopen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Streaming exec over the Kubernetes WebSocket channel protocol: stdin in, stdout and the
    // exit status out.
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: client_id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat; echo done >&2; exit 3".into(),
            ],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("exec")
        .into_inner()
        .url;
    let (stdout, stderr, status) = exec_stream(&url, b"hello\n").await;
    assert_eq!((stdout.as_str(), stderr.as_str()), ("hello\n", "done\n"));
    assert!(
        status.contains("NonZeroExitCode") && status.contains(r#""message":"3""#),
        "{status}"
    );

    // The same with a terminal: stderr shows on it (channel 1), typed input is echoed, a
    // resize reaches the command, and the exit status still comes back.
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: client_id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "test -t 0 && echo on-a-tty; read x; echo got=$x >&2; stty size; exit 4".into(),
            ],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("exec tty")
        .into_inner()
        .url;
    let (screen, status) = exec_tty_stream(&url).await;
    assert!(screen.contains("on-a-tty\r\n"), "{screen:?}");
    assert!(
        screen.contains("hello\r\ngot=hello\r\n40 120\r\n"),
        "{screen:?}"
    );
    assert!(status.contains(r#""message":"4""#), "{status}");

    // Stats move under load (exec'd processes join the container's cgroup).
    let cpu = |s: cri::ContainerStatsResponse| {
        s.stats
            .expect("stats")
            .cpu
            .expect("cpu")
            .usage_core_nano_seconds
            .expect("ns")
            .value
    };
    let before = cpu(c
        .runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: client_id.clone(),
        })
        .await
        .expect("stats")
        .into_inner());
    let busy = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done";
    c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: client_id.clone(),
            cmd: vec!["sh".into(), "-c".into(), busy.into()],
            timeout: 60,
        })
        .await
        .expect("busy");
    let after = c
        .runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: client_id.clone(),
        })
        .await
        .expect("stats")
        .into_inner();
    let mem = after
        .stats
        .as_ref()
        .and_then(|s| s.memory.as_ref())
        .and_then(|m| m.working_set_bytes)
        .expect("memory")
        .value;
    assert!(cpu(after) > before, "cpu usage grew");
    assert!(mem > 0, "memory working set reported");
    let all = c
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest::default())
        .await
        .expect("list stats")
        .into_inner()
        .stats;
    assert_eq!(all.len(), 3, "every running container has stats");

    // A restarted runtime (fresh services over the same root, on a new socket) knows the same
    // sandboxes and containers, still running.
    let service2 = CriService::open(&config).expect("reopen");
    let (mut c2, stop2_tx, server2) = serve_at(service2, tmp, "cri2").await;
    let listed = c2
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    let running_ids: Vec<&str> = listed
        .iter()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .map(|c| c.id.as_str())
        .collect();
    assert!(
        running_ids.contains(&client_id.as_str()) && running_ids.contains(&server_id.as_str()),
        "{listed:?}"
    );
    let pods = c2
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .expect("pods")
        .into_inner()
        .items;
    assert_eq!(pods.len(), 2);
    let _ = stop2_tx.send(());
    server2.await.expect("join").expect("serve 2");

    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_b.clone(),
        })
        .await
        .expect("remove sandbox b");

    let running = c
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id: sandbox_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(
        running.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![server_id.clone()]
    );
    assert_eq!(
        running[0].labels.get("app").map(String::as_str),
        Some("server")
    );
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: server_id.clone(),
            timeout: 1,
        })
        .await
        .expect("stop");
    let s = wait_exited(&mut c, &server_id).await;
    // sleep dies of SIGTERM (PID 1 has no default action for it, so then SIGKILL): either way a signal.
    assert!(
        s.exit_code == 128 + 15 || s.exit_code == 137,
        "exit {}",
        s.exit_code
    );
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: server_id.clone(),
            timeout: 1,
        })
        .await
        .expect("stop is idempotent");

    // Tear down: sandbox removal removes its containers; image removal frees snapshots.
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .expect("stop sandbox");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", host_port))
            .await
            .is_err(),
        "host port closed with the sandbox"
    );
    let st = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.clone(),
            verbose: false,
        })
        .await
        .expect("sandbox status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .expect("remove sandbox");
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .expect("remove is idempotent");
    let left = c
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("rmi");
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("rmi idempotent");
    assert_eq!(
        std::fs::read_dir(root.join("snapshots"))
            .expect("snapshots")
            .count(),
        0,
        "snapshots freed"
    );
    let ips = std::fs::read_dir(root.join("network/10.77.0.0-24"))
        .expect("ipam")
        .count();
    assert_eq!(ips, 0, "addresses released");
    assert_eq!(veth_count(), 0, "veths removed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(tmp.to_str().expect("utf8")),
        "leftover mounts:\n{mounts}"
    );
    let _ = stop_tx.send(());
    server.await.expect("join").expect("serve");
}

/// A layer whose second entry climbs out of the root (written raw: the tar crate refuses `..`).
fn evil_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "fine", &b"ok\n"[..]).expect("fine");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    let name = b"../../../escaped-by-layer";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"pwn"[..]).expect("evil");
    b.into_inner().expect("tar")
}

async fn bad_images_are_refused(tmp: &Path) {
    let registry = DockerRegistry::start().expect("docker-registry installed");
    let root = tmp.join("root");
    let config = RuntimeConfig {
        root: root.clone(),
        shim_exe: std::env::current_exe().expect("exe"),
        oci_runtime: "runc".into(),
        insecure_registries: vec![],
        network: None,
    };
    let service = CriService::open(&config).expect("open");
    let (mut c, stop_tx, server) = serve_at(service, tmp, "cri").await;
    let pull = |image: String| cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image,
            ..Default::default()
        }),
        ..Default::default()
    };

    // 1. A layer escaping the snapshot: the pull fails and nothing lands outside the root.
    let evil = format!("127.0.0.1:{}/test/evil:latest", registry.port());
    push(
        &write_layout(tmp, "evil", &evil_layer()).expect("layout"),
        &evil,
    );
    let err = c
        .image
        .pull_image(pull(evil.clone()))
        .await
        .expect_err("evil layer refused");
    assert!(err.message().contains("escapes"), "{err}");
    // `../../../` from root/snapshots/<tmp dir> would land in `tmp`.
    for dir in [tmp, root.as_path(), &root.join("snapshots")] {
        assert!(
            !dir.join("escaped-by-layer").exists(),
            "written outside the snapshot in {dir:?}"
        );
    }
    let status = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: evil.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner();
    assert!(status.image.is_none(), "no record of a refused image");
    assert_eq!(
        std::fs::read_dir(root.join("snapshots"))
            .expect("snapshots")
            .count(),
        0,
        "no partial snapshot kept"
    );

    // 2. A registry serving a corrupted layer blob: the digest check fails the pull.
    let good = format!("127.0.0.1:{}/test/corrupt:latest", registry.port());
    let mut small = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    small
        .append_data(&mut h, "hello", &b"hello"[..])
        .expect("tar");
    let layout = write_layout(tmp, "good", &small.into_inner().expect("tar")).expect("layout");
    push(&layout, &good);
    // Find the layer blob in the registry's storage through the layout's manifest.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let manifest_hex = index["manifests"][0]["digest"].as_str().expect("digest")[7..].to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&manifest_hex)).expect("manifest"),
    )
    .expect("json");
    let layer_hex = manifest["layers"][0]["digest"].as_str().expect("layer")[7..].to_string();
    let blob = walk_files(&registry.storage_dir())
        .into_iter()
        .find(|p| p.ends_with("data") && p.parent().is_some_and(|d| d.ends_with(&layer_hex)))
        .expect("layer blob in registry storage");
    let mut bytes = std::fs::read(&blob).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).expect("corrupt");
    let err = c
        .image
        .pull_image(pull(good.clone()))
        .await
        .expect_err("corrupt blob refused");
    assert!(err.message().to_lowercase().contains("digest"), "{err}");
    let status = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: good,
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner();
    assert!(status.image.is_none());
    let kept: Vec<PathBuf> = walk_files(&root.join("content"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&layer_hex))
        .collect();
    assert!(kept.is_empty(), "corrupt blob kept: {kept:?}");

    // 3. Every hostile layer of berth-testkit's catalogue, pulled: refused with the escape named
    // (absolute paths are confined to the snapshot instead), nothing written outside.
    let outside = berth_testkit::hostile::outside_dir(tmp).expect("outside");
    for layer in berth_testkit::hostile::hostile_layers(&outside).expect("layers") {
        let image = format!(
            "127.0.0.1:{}/hostile/{}:latest",
            registry.port(),
            layer.name
        );
        push(
            &write_layout(tmp, layer.name, &layer.tar).expect("layout"),
            &image,
        );
        let result = c.image.pull_image(pull(image)).await;
        if layer.refused {
            let err = result.expect_err(layer.name);
            assert!(err.message().contains("escapes"), "{}: {err}", layer.name);
        } else {
            result.expect(layer.name);
        }
        berth_testkit::hostile::assert_outside_untouched(&outside);
    }
    let _ = stop_tx.send(());
    server.await.expect("join").expect("serve");
}

/// Opens an exec's one-time URL as a WebSocket speaking `v5.channel.k8s.io`, checking that the
/// server chose that protocol.
async fn open_exec(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().expect("header"),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap_or("")),
        Some("v5.channel.k8s.io")
    );
    ws
}

/// Runs a streaming exec: sends `input` then closes stdin (v5), collects stdout, stderr and the
/// error-channel status.
async fn exec_stream(url: &str, input: &[u8]) -> (String, String, String) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = open_exec(url).await;
    let mut stdin = vec![0u8];
    stdin.extend_from_slice(input);
    ws.send(Message::Binary(stdin.into())).await.expect("stdin");
    ws.send(Message::Binary(vec![255u8, 0].into()))
        .await
        .expect("close stdin");
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(data) = msg else { continue };
        match data.first() {
            Some(1) => out.extend_from_slice(&data[1..]),
            Some(2) => err.extend_from_slice(&data[1..]),
            Some(3) => status.extend_from_slice(&data[1..]),
            _ => {}
        }
    }
    let s = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    (s(out), s(err), s(status))
}

/// Runs a streaming exec on a terminal: resizes it to 120x40, waits for the command's first
/// line, types `hello`, and returns everything the terminal showed and the exit status.
async fn exec_tty_stream(url: &str) -> (String, String) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = open_exec(url).await;
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":120,"Height":40}"#);
    ws.send(Message::Binary(resize.into()))
        .await
        .expect("resize");
    let (mut screen, mut status, mut typed) = (Vec::new(), Vec::new(), false);
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(data) = msg else { continue };
        match data.first() {
            Some(1) => screen.extend_from_slice(&data[1..]),
            Some(3) => status.extend_from_slice(&data[1..]),
            other => panic!("unexpected channel {other:?} with a terminal"),
        }
        if !typed && String::from_utf8_lossy(&screen).contains("on-a-tty") {
            // Leave the runtime a moment to pass the resize on to the container's terminal.
            tokio::time::sleep(Duration::from_millis(200)).await;
            ws.send(Message::Binary(b"\x00hello\r".to_vec().into()))
                .await
                .expect("stdin");
            typed = true;
        }
    }
    let s = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    (s(screen), s(status))
}

/// A minimal HTTP/1.0 GET on 127.0.0.1:port; the whole response, or "" on any error.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    if s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The veths in this test's own network namespace (`ip` answers for the caller's namespace;
/// /sys/class/net would show the host's, where other tests' pods may be running).
/// The kernel destroys a veth whose peer's namespace went away asynchronously, so this waits up
/// to 5 s for the count to reach 0.
fn veth_count() -> usize {
    let count = || {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "type", "veth"])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = count();
        if n == 0 || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a CRI server for `service` on `tmp/<name>.sock`; returns a client and a stopper.
async fn serve_at(
    service: CriService,
    tmp: &Path,
    name: &str,
) -> (
    berth_cri::CriClient,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), berth_cri::CriError>>,
) {
    let served = ServedRuntime::serve(service, &tmp.join(format!("{name}.sock"))).await;
    (served.cri, served.stop, served.task)
}

async fn sandbox_ip(c: &mut berth_cri::CriClient, name: &str) -> (String, String) {
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox")
        .into_inner()
        .pod_sandbox_id;
    let status = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .expect("sandbox status")
        .into_inner()
        .status
        .expect("status");
    (id, status.network.map(|n| n.ip).unwrap_or_default())
}

fn update_cidr(cidr: &str) -> cri::UpdateRuntimeConfigRequest {
    cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    }
}

/// The node's pod CIDR arrives over CRI (as the kubelet passes Node.spec.podCIDR): sandboxes get
/// addresses from it, bad CIDRs are refused, and a restarted runtime keeps it.
async fn pod_cidr_over_cri(tmp: &Path) {
    let config = RuntimeConfig {
        root: tmp.join("root"),
        shim_exe: std::env::current_exe().expect("exe"),
        oci_runtime: "runc".into(),
        insecure_registries: vec![],
        network: None,
    };
    let service = CriService::open(&config)
        .expect("open")
        .with_pod_bridge("berthcidr0");
    let (mut c, stop, server) = serve_at(service, tmp, "a").await;
    let (plain, ip) = sandbox_ip(&mut c, "before").await;
    assert_eq!(ip, "", "no pod network before a CIDR is set");
    let bad = c
        .runtime
        .update_runtime_config(update_cidr("10.78.0.0/33"))
        .await;
    assert_eq!(
        bad.expect_err("bad cidr").code(),
        tonic::Code::InvalidArgument
    );
    c.runtime
        .update_runtime_config(update_cidr("10.78.0.0/24"))
        .await
        .expect("set cidr");
    let (first, ip) = sandbox_ip(&mut c, "after").await;
    assert!(
        ip.starts_with("10.78.0."),
        "sandbox address {ip:?} from the pod CIDR"
    );
    let _ = stop.send(());
    server.await.expect("join").expect("serve");

    // A restarted runtime, configured without a network, still serves the CIDR it was given.
    let service = CriService::open(&config)
        .expect("reopen")
        .with_pod_bridge("berthcidr0");
    let (mut c, stop, server) = serve_at(service, tmp, "b").await;
    let (second, ip2) = sandbox_ip(&mut c, "restarted").await;
    assert!(
        ip2.starts_with("10.78.0.") && ip2 != ip,
        "restarted runtime gave {ip2:?} (first {ip:?})"
    );
    for id in [plain, first, second] {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .expect("remove sandbox");
    }
    assert_eq!(veth_count(), 0, "every sandbox's veth is gone");
    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}

fn main() {
    berth_testkit::harness::shim_if_asked();
    // A private network namespace for the whole test (still single-threaded here): the bridge,
    // veths and the registry's loopback port vanish with the process.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
    let lo = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(lo.success());
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let filter = berth_testkit::harness::filter();
    let mut failed = false;
    for name in [
        "lifecycle_through_the_socket",
        "bad_images_are_refused",
        "pod_cidr_over_cri",
    ] {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let tmp = tempfile::Builder::new()
            .prefix("berth-cri-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match name {
            "lifecycle_through_the_socket" => rt.block_on(lifecycle_through_the_socket(tmp.path())),
            "pod_cidr_over_cri" => rt.block_on(pod_cidr_over_cri(tmp.path())),
            _ => rt.block_on(bad_images_are_refused(tmp.path())),
        }));
        println!(
            "test {name} ... {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        failed |= result.is_err();
    }
    if failed {
        std::process::exit(1);
    }
}

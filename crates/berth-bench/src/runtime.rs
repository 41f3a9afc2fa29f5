//! `berth bench runtime`: create+start+wait-for-exit of `/bin/true` through berth's CRI socket
//! (a `berth runtime` child process) against `runc run` of an equivalent bundle, same image.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_cri::v1 as cri;

use crate::proc::{Reaped, wait_for};
use crate::stats;
use berth_testkit::peer::DockerRegistry;

/// Arguments of `berth bench runtime`.
#[derive(clap::Args)]
pub struct Args {
    /// Containers run per contender.
    #[arg(long, default_value_t = 20)]
    iterations: usize,
}

/// The median of `v` (`run` measures at least one).
fn median(v: &[Duration]) -> Duration {
    stats::median(v).unwrap_or_default()
}

async fn bench_cri(socket: &Path, image: &str, iterations: usize) -> anyhow::Result<Vec<Duration>> {
    let mut c = berth_cri::connect(&format!("unix://{}", socket.display())).await?;
    c.image
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "bench".into(),
            uid: "bench".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let sandbox = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: format!("true-{i}"),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                command: vec!["/bin/true".into()],
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        };
        let t = Instant::now();
        let id = c
            .runtime
            .create_container(req)
            .await?
            .into_inner()
            .container_id;
        c.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        loop {
            let s = c
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await?
                .into_inner();
            if s.status
                .is_some_and(|s| s.state == cri::ContainerState::ContainerExited as i32)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(t.elapsed());
        c.runtime
            .remove_container(cri::RemoveContainerRequest { container_id: id })
            .await?;
    }
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await?;
    Ok(times)
}

fn bench_runc(tmp: &Path, snapshot: &Path, iterations: usize) -> anyhow::Result<Vec<Duration>> {
    let bundle = tmp.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let rootfs =
        berth_runtime::container::rootfs::mount_overlay(&bundle, &[snapshot.to_path_buf()])?;
    let result = (|| {
        let params = berth_runtime::oci::ContainerParams {
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        berth_runtime::oci::generate(None, &params, &rootfs)?.save(bundle.join("config.json"))?;
        let state = tmp.join("runc-state");
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations {
            let t = Instant::now();
            let status = Command::new("runc")
                .arg("--root")
                .arg(&state)
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!("bench-{i}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            times.push(t.elapsed());
            if !status.success() {
                bail!("runc run failed: {status}");
            }
        }
        anyhow::Ok(times)
    })();
    berth_runtime::container::rootfs::unmount(&bundle)?;
    result
}

/// Runs `berth bench runtime`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let iterations = args.iterations.max(1);
    let tmp = TempDir(PathBuf::from(format!(
        "/var/tmp/berth-bench-rt-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(tmp.path())?;
    let registry = DockerRegistry::start_with(Path::new("docker-registry"))?;
    let image = format!("127.0.0.1:{}/bench/busybox:latest", registry.port());
    berth_testkit::busybox::push_busybox(tmp.path(), &image, None)?;
    let socket = tmp.path().join("cri.sock");
    let root = tmp.path().join("root");
    let bridge = "berthbench0";
    let runtime = Reaped(
        Command::new(std::env::current_exe()?)
            .args([
                "runtime",
                "--listen",
                &format!("unix://{}", socket.display()),
                "--bridge",
                bridge,
                "--pod-cidr",
                "10.213.0.0/24",
                "--root",
            ])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for("berth runtime", Duration::from_secs(30), || {
        Ok(socket.exists())
    })?;
    let cri = crate::block_on(bench_cri(&socket, &image, iterations))?;
    drop(runtime);
    let _ = Command::new("ip").args(["link", "del", bridge]).status();
    let cri = cri?;
    let snapshot: PathBuf = std::fs::read_dir(root.join("snapshots"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("the pulled image's snapshot")?;
    let runc = bench_runc(tmp.path(), &snapshot, iterations)?;
    let (m_cri, m_runc) = (median(&cri), median(&runc));
    println!(
        "container create+start+exit of /bin/true, busybox image, {iterations} runs each (median):"
    );
    println!("  berth CRI socket   {:>8.2} ms", m_cri.as_secs_f64() * 1e3);
    println!(
        "  runc run           {:>8.2} ms",
        m_runc.as_secs_f64() * 1e3
    );
    println!(
        "  ratio berth/runc   {:>8.2}x (goal: within 2x)",
        m_cri.as_secs_f64() / m_runc.as_secs_f64()
    );
    if which("ctr") {
        println!(
            "  ctr run --rm       not measured (containerd's image store is not wired to this loopback registry)"
        );
    } else {
        println!("  ctr run --rm       skipped: containerd's ctr is not installed");
    }
    Ok(())
}

/// A scratch directory removed on drop (after the runtime child has gone).
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

//! `berth bench pods`: pod startup latency of a whole node. Starts a server in-process (API,
//! controllers, registry, runtime, agent) on a temp data dir, free ports and a bridge and cluster
//! CIDR of its own; pushes the busybox test image and pulls it onto the node with one unmeasured
//! Pod; then for each N applies a ModelService with N replicas and measures apply -> all N Ready,
//! and per Pod the Kubernetes pod startup SLI (creation -> all containers running, observed via
//! watch; both ends are watch sightings on this machine's monotonic clock, because
//! creationTimestamp has only second resolution). A `runc run -d` of the same image, N times in a
//! row, is the peer. Everything is deleted, and the machine left clean, between Ns and at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_api::ModelService;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::host::{Host, StartedServer};
use crate::stats::{ms, quantile};

/// Arguments of `berth bench pods`.
#[derive(clap::Args)]
pub struct Args {
    /// Replica counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    replicas: Vec<u32>,
    /// The OCI runtime binary the node's runtime runs containers with (as `berth server`).
    #[arg(long, default_value = "runc")]
    oci_runtime: String,
}

const NAME: &str = "bench-pods";
/// The Pods' command: sleeps, but ends at SIGTERM (a bare `sleep` as PID 1 ignores it, and every
/// deletion between Ns would wait out the 30 s grace period).
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";
const NAMESPACE: &str = "default";

/// Runs `berth bench pods`.
pub fn run(args: Args, host: &dyn Host) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.replicas.is_empty() && args.replicas.iter().all(|n| *n > 0),
        "--replicas takes counts > 0"
    );
    let scratch = Scratch::new()?;
    let result = crate::block_on(bench(&args, &scratch, host))?;
    scratch.cleanup();
    result
}

/// The data dir and names of this run; `cleanup` removes what the node may have left.
struct Scratch {
    dir: PathBuf,
    bridge: String,
    cidr: String,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/var/tmp/berth-bench-pods-{pid}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch {
            dir,
            // Names of their own, so a user's `berth server` (berth0, 10.88.0.0/16) is never touched.
            bridge: format!("bbp{:05x}", pid % 0xfffff),
            cidr: format!("10.{}.0.0/16", 160 + pid % 40),
        })
    }

    /// Deletes the bridge and the data dir (Pods are gone by then: `bench` deletes and waits).
    fn cleanup(&self) {
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `berth server` flags for the bench node (the binary parses them with the server's own flag
/// definitions): free ports, and a bridge and cluster CIDR of this run's own.
pub fn server_argv(
    dir: &Path,
    bridge: &str,
    cidr: &str,
    oci_runtime: &str,
) -> anyhow::Result<Vec<String>> {
    let free_port = || anyhow::Ok(berth_testkit::try_free_port()?.to_string());
    let (api, registry) = (free_port()?, free_port()?);
    let dir = dir.to_string_lossy().to_string();
    let argv = [
        "server",
        "--data-dir",
        &dir,
        "--api-port",
        &api,
        "--bind-address",
        "127.0.0.1",
        "--registry-port",
        &registry,
        "--registry-auth",
        "none",
        "--bridge",
        bridge,
        "--cluster-cidr",
        cidr,
        "--kubelet-port",
        "0",
        "--node-name",
        "bench-node",
        "--node-ip",
        "127.0.0.1",
        "--disable-proxy",
        "--oci-runtime",
        oci_runtime,
    ];
    Ok(argv.into_iter().map(str::to_string).collect())
}

async fn bench(args: &Args, scratch: &Scratch, host: &dyn Host) -> anyhow::Result<()> {
    let argv = server_argv(
        &scratch.dir,
        &scratch.bridge,
        &scratch.cidr,
        &args.oci_runtime,
    )?;
    let running = host
        .start_server(argv)
        .await
        .context("starting the bench server")?;
    let result = async {
        let client = client(&running.kubeconfig).await?;
        let result = tokio::select! {
            r = measure_all(args, scratch, &running, &client) => r,
            _ = host.shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
        };
        // Also after an error or Ctrl-C: the bench's Pods must not outlive it.
        let cleaned = delete_and_wait(&client, &running.data_dir).await;
        result.and(cleaned)
    }
    .await;
    running.stop.await;
    result
}

async fn measure_all(
    args: &Args,
    scratch: &Scratch,
    running: &StartedServer,
    client: &kube::Client,
) -> anyhow::Result<()> {
    let registry = running
        .registry
        .context("the bench server has no registry")?;
    let image = format!("127.0.0.1:{}/bench/busybox:latest", registry.port());
    berth_testkit::busybox::push_busybox(&scratch.dir.join("busybox"), &image, None)?;
    println!(
        "pod startup: apply of a ModelService with N replicas (busybox `sleep`) on one in-process node"
    );
    println!("  SLI per Pod: first watch sighting -> all containers running, as seen by a watch");
    // One unmeasured Pod first, so every N starts with the image present on the node.
    let warm = measure(client, &image, 1).await;
    delete_and_wait(client, &running.data_dir).await?;
    warm.context("warm-up (pulling the image onto the node)")?;
    for &n in &args.replicas {
        let outcome = measure(client, &image, n).await;
        // Whatever happened, nothing stays behind for the next N.
        delete_and_wait(client, &running.data_dir).await?;
        let m = outcome?;
        let peer = runc_peer(&running.data_dir, &scratch.dir, &args.oci_runtime, n).ok();
        report(n, &m, peer, &runtime_name(&args.oci_runtime));
    }
    println!(
        "  goal: p99 < 1 s for 50 replicas on a 2-core machine ({} cores here)",
        cores()
    );
    Ok(())
}

async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// What one N measured.
struct Measured {
    /// Apply -> all N Pods Ready.
    all_ready: Duration,
    /// Per Pod: first sighting -> all containers running.
    startup: Vec<Duration>,
}

async fn measure(client: &kube::Client, image: &str, n: u32) -> anyhow::Result<Measured> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let config = watcher::Config::default()
        .labels(&format!("{}={NAME}", berth_api::labels::MODELSERVICE_LABEL));
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff().applied_objects());
    let ms: ModelService = serde_json::from_value(serde_json::json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"image": image, "replicas": n, "command": ["/bin/sh", "-c", SLEEPER],
                 "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}}}
    }))?;
    let start = Instant::now();
    Api::<ModelService>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &ms)
        .await?;
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut started: HashMap<String, Duration> = HashMap::new();
    let mut ready: std::collections::HashSet<String> = Default::default();
    let deadline = Duration::from_secs(120 + 5 * u64::from(n));
    while ready.len() < n as usize || started.len() < n as usize {
        let pod = match tokio::time::timeout_at((start + deadline).into(), events.next()).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "watch error");
                continue;
            }
            Ok(None) => bail!("the Pod watch ended"),
            Err(_) => bail!(
                "{n} replicas: only {} of {n} Ready after {deadline:?}",
                ready.len()
            ),
        };
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let now = Instant::now();
        let first = *seen.entry(name.clone()).or_insert(now);
        if all_running(&pod) {
            started.entry(name.clone()).or_insert(now - first);
        }
        if is_ready(&pod) {
            ready.insert(name);
        }
    }
    Ok(Measured {
        all_ready: start.elapsed(),
        startup: started.into_values().collect(),
    })
}

fn all_running(p: &Pod) -> bool {
    let cs = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    !cs.is_empty()
        && cs
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes the bench ModelService and waits until none of its Pods is left, in the API and on
/// the node (the agent stops containers after the Pod objects are gone).
async fn delete_and_wait(client: &kube::Client, data_dir: &Path) -> anyhow::Result<()> {
    let services: Api<ModelService> = Api::namespaced(client.clone(), NAMESPACE);
    match services.delete(NAME, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let lp =
        ListParams::default().labels(&format!("{}={NAME}", berth_api::labels::MODELSERVICE_LABEL));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let api_left = pods.list(&lp).await?.items.len();
        let node_left = runtime_entries(data_dir);
        if api_left == 0 && node_left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after 180 s, {api_left} bench Pods in the API and {node_left} sandboxes/containers on the node are left"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many sandboxes and containers the embedded runtime still has.
fn runtime_entries(data_dir: &Path) -> usize {
    ["sandboxes", "containers"]
        .iter()
        .map(|d| {
            std::fs::read_dir(data_dir.join("runtime").join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

/// The peer: `<oci runtime> run -d` (the node's own OCI runtime, invoked as the node invokes it)
/// of the same busybox snapshot with `sleep`, `n` times in a row (each until it runs), then
/// deleted; returns the per-container times.
fn runc_peer(
    data_dir: &Path,
    scratch: &Path,
    oci_runtime: &str,
    n: u32,
) -> anyhow::Result<Vec<Duration>> {
    let snapshots = data_dir.join("runtime/snapshots");
    let snapshot: PathBuf = std::fs::read_dir(&snapshots)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("bin/busybox").exists())
        .with_context(|| format!("no busybox snapshot in {}", snapshots.display()))?;
    let bundle = scratch.join("runc-bundle");
    std::fs::create_dir_all(&bundle)?;
    let rootfs = berth_runtime::container::rootfs::mount_overlay(&bundle, &[snapshot])?;
    let state = scratch.join("runc-state");
    let result = (|| {
        let params = berth_runtime::oci::ContainerParams {
            command: vec!["/bin/sleep".into(), "3600".into()],
            ..Default::default()
        };
        berth_runtime::oci::generate(None, &params, &rootfs)?.save(bundle.join("config.json"))?;
        let mut times = Vec::new();
        for i in 0..n {
            let id = format!("bench-pods-{}-{i}", std::process::id());
            let t = Instant::now();
            let status = runc(oci_runtime, &state)
                .args(["run", "-d", "--bundle"])
                .arg(&bundle)
                .arg(&id)
                .status()?;
            times.push(t.elapsed());
            let _ = runc(oci_runtime, &state)
                .args(["delete", "-f", &id])
                .status();
            if !status.success() {
                bail!("{oci_runtime} run -d failed: {status}");
            }
        }
        anyhow::Ok(times)
    })();
    berth_runtime::container::rootfs::unmount(&bundle)?;
    result
}

fn runc(oci_runtime: &str, state: &Path) -> Command {
    let mut c = berth_runtime::ociruntime::command(Path::new(oci_runtime), state);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The runtime's file name, for the report.
fn runtime_name(oci_runtime: &str) -> String {
    Path::new(oci_runtime)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| oci_runtime.to_string())
}

fn report(n: u32, m: &Measured, peer: Option<Vec<Duration>>, peer_name: &str) {
    let (p50, p99) = (quantile(&m.startup, 0.5), quantile(&m.startup, 0.99));
    print!(
        "  N={n:<3} apply -> all Ready {:>8.1} ms   startup p50 {:>7.1} ms  p99 {:>7.1} ms",
        ms(m.all_ready),
        ms(p50),
        ms(p99)
    );
    match peer {
        Some(peer) if !peer.is_empty() => {
            let total: Duration = peer.iter().sum();
            println!(
                "   | {peer_name} run -d x{n} in a row {:>8.1} ms (p50 {:.1} ms each); all-Ready / {peer_name} total {:.2}x",
                ms(total),
                ms(quantile(&peer, 0.5)),
                m.all_ready.as_secs_f64() / total.as_secs_f64()
            );
        }
        _ => println!("   | {peer_name} peer not measured"),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

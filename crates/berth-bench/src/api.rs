//! `berth bench api`: latency and throughput of the Kubernetes API as a client sees them.
//!
//! Starts a real `berth server --disable-agent --disable-registry` child on a fresh data dir and a
//! free loopback port, then drives it with kube-rs (ConfigMaps), exactly like a controller would:
//! - create, update (PUT with resourceVersion) and get, with 1 and with N concurrent clients
//!   (each client its own kube `Client`, so its own connections);
//! - a list of many objects, in one response and paged like kubectl (limit 500);
//! - watch fan-out: many watchers, and the delay from a write's acknowledgement to each watcher
//!   receiving its event.
//!
//! Every write is durable before it is acknowledged, so the write figures are durable writes.
//! Build with `--release` for meaningful figures.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use tokio::sync::mpsc;

use crate::proc::Reaped;
use crate::stats;

/// Arguments of `berth bench api`.
#[derive(clap::Args)]
pub struct Args {
    /// Operations per measured phase (create, update, get), per client count.
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Concurrent clients of the parallel phases.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Objects in the list benchmark.
    #[arg(long, default_value_t = 10_000)]
    list_objects: usize,
    /// Watchers in the fan-out benchmark.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Writes every watcher must observe in the fan-out benchmark.
    #[arg(long, default_value_t = 100)]
    watch_events: usize,
    /// Binary to run as `BIN server …` (default: this executable).
    #[arg(long)]
    berth_bin: Option<PathBuf>,
}

/// The goals printed beside the figures (design targets of the API server and store).
const GOAL_WRITE_P99: Duration = Duration::from_millis(5);
const GOAL_WRITES_PER_SEC: f64 = 5000.0;
/// Namespaces the benchmark writes into.
const NS_CRUD: &str = "bench";
const NS_LIST: &str = "bench-list";
const NS_WATCH: &str = "bench-watch";

/// Runs `berth bench api`.
pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(
        args.ops > 0 && args.clients > 0,
        "--ops and --clients must be positive"
    );
    let dir = std::env::temp_dir().join(format!("berth-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = crate::block_on(bench(&args, &dir)).and_then(|r| r);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(args: &Args, dir: &Path) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
    let bin = match &args.berth_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    let mut server = Server::start(&bin, dir)?;
    let config = server.wait_ready(Duration::from_secs(60)).await?;
    let outcome = measure(args, &config).await;
    server.stop();
    outcome.with_context(|| format!("server log: {}", server.log.display()))
}

async fn measure(args: &Args, config: &kube::Config) -> Result<()> {
    let client = Client::try_from(config.clone())?;
    for ns in [NS_CRUD, NS_LIST, NS_WATCH] {
        create_namespace(&client, ns).await?;
    }
    println!("berth bench api: kube-rs against `berth server` over loopback (HTTPS), ConfigMaps");
    println!(
        "goals: write p99 < {} ms, > {GOAL_WRITES_PER_SEC:.0} durable writes/s",
        GOAL_WRITE_P99.as_millis()
    );
    println!();
    println!(
        "{:<8} {:>7} {:>6} {:>9} {:>9} {:>9}",
        "op", "clients", "n", "p50", "p99", "ops/s"
    );
    for clients in [1, args.clients] {
        crud(config, clients, args.ops).await?;
    }
    println!();
    list(config, args.clients, args.list_objects).await?;
    println!();
    watch_fan_out(&client, args.watchers, args.watch_events).await?;
    Ok(())
}

/// Create, update and get of `ops` objects spread over `clients` clients.
async fn crud(config: &kube::Config, clients: usize, ops: usize) -> Result<()> {
    let apis = apis(config, clients, NS_CRUD)?;
    let names = split(ops, clients, |c, j| format!("c{clients}-{c}-{j}"));
    let (created, objects) = timed(&apis, names.clone(), |api, name| async move {
        api.create(&PostParams::default(), &config_map(&name, "v1"))
            .await
    })
    .await?;
    print_row("create", clients, &created, true);
    let (updated, _) = timed(&apis, objects, |api, mut cm| async move {
        let name = cm.metadata.name.clone().unwrap_or_default();
        cm.data = config_map(&name, "v2").data;
        api.replace(&name, &PostParams::default(), &cm).await
    })
    .await?;
    print_row("update", clients, &updated, true);
    let (got, _) = timed(
        &apis,
        names,
        |api, name| async move { api.get(&name).await },
    )
    .await?;
    print_row("get", clients, &got, false);
    Ok(())
}

/// Fills a namespace with `objects` ConfigMaps, then times listing them.
async fn list(config: &kube::Config, clients: usize, objects: usize) -> Result<()> {
    let apis = apis(config, clients, NS_LIST)?;
    let names = split(objects, clients, |c, j| format!("l-{c}-{j}"));
    let (filled, _) = timed(&apis, names, |api, name| async move {
        api.create(&PostParams::default(), &config_map(&name, "payload"))
            .await
    })
    .await?;
    print_row("fill", clients, &filled, true);
    let api = &apis[0];
    let started = Instant::now();
    let all = api.list(&ListParams::default()).await?;
    let whole = started.elapsed();
    anyhow::ensure!(
        all.items.len() == objects,
        "listed {} of {objects} objects",
        all.items.len()
    );
    let started = Instant::now();
    let (mut seen, mut token) = (0, None::<String>);
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        seen += page.items.len();
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let paged = started.elapsed();
    anyhow::ensure!(
        seen == objects,
        "paged list saw {seen} of {objects} objects"
    );
    println!(
        "list of {objects} objects: one request {}, paged by 500 {}",
        ms(whole),
        ms(paged)
    );
    Ok(())
}

/// Starts `watchers` watches, makes `events` writes one after another, and measures the time from
/// each write's acknowledgement to each watcher receiving it.
async fn watch_fan_out(client: &Client, watchers: usize, events: usize) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS_WATCH);
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = (0..watchers)
        .map(|_| {
            tokio::spawn(watcher(
                api.clone(),
                rv.clone(),
                ready_tx.clone(),
                seen_tx.clone(),
            ))
        })
        .collect();
    drop((ready_tx, seen_tx));
    for _ in 0..watchers {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .context("watches did not start within 30 s")?
            .context("a watcher failed to start")?;
    }
    let mut acked = Vec::with_capacity(events);
    for i in 0..events {
        api.create(&PostParams::default(), &config_map(&format!("w-{i}"), "x"))
            .await?;
        acked.push(Instant::now());
    }
    let mut delays = Vec::with_capacity(watchers * events);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delays.len() < watchers * events {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            // An event may arrive before the writer has read its own response: count that as 0.
            Ok(Some((i, at))) => delays.push(at.saturating_duration_since(acked[i])),
            Ok(None) | Err(_) => break,
        }
    }
    tasks.iter().for_each(|t| t.abort());
    let missing = watchers * events - delays.len();
    let s = Sample {
        latencies: delays,
        wall: Duration::ZERO,
    };
    println!(
        "watch fan-out: {watchers} watchers x {events} writes: delivery p50 {} p99 {} (write ack -> event){}",
        ms(s.percentile(50)),
        ms(s.percentile(99)),
        if missing > 0 {
            format!(", {missing} events MISSING")
        } else {
            String::new()
        }
    );
    if missing > 0 {
        bail!("{missing} watch events were not delivered within 30 s");
    }
    Ok(())
}

/// One watcher: reports when its watch is open, then the arrival time of every `w-<i>` creation.
async fn watcher(
    api: Api<ConfigMap>,
    rv: String,
    ready: mpsc::UnboundedSender<()>,
    seen: mpsc::UnboundedSender<(usize, Instant)>,
) -> Result<()> {
    let stream = api.watch(&WatchParams::default(), &rv).await?;
    let _ = ready.send(());
    futures::pin_mut!(stream);
    while let Some(event) = stream.try_next().await? {
        if let WatchEvent::Added(cm) = event {
            let index = cm
                .metadata
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix("w-"))
                .and_then(|i| i.parse().ok());
            if let Some(i) = index {
                let _ = seen.send((i, Instant::now()));
            }
        }
    }
    Ok(())
}

/// Latencies of one phase and its wall-clock time.
struct Sample {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    /// The `q`-th percentile (nearest rank) of the latencies.
    fn percentile(&self, q: usize) -> Duration {
        stats::quantile(&self.latencies, q as f64 / 100.0)
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Prints one table row; write rows get a verdict against the goals.
fn print_row(op: &str, clients: usize, s: &Sample, write: bool) {
    let p99 = s.percentile(99);
    let verdict = match write {
        true if p99 < GOAL_WRITE_P99 && s.per_second() > GOAL_WRITES_PER_SEC => {
            "  meets both goals"
        }
        true if p99 < GOAL_WRITE_P99 => "  meets p99 goal",
        true if s.per_second() > GOAL_WRITES_PER_SEC => "  meets throughput goal",
        true => "  below goals",
        false => "",
    };
    println!(
        "{op:<8} {clients:>7} {:>6} {:>9} {:>9} {:>9.0}{verdict}",
        s.latencies.len(),
        ms(s.percentile(50)),
        ms(p99),
        s.per_second()
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", stats::ms(d))
}

/// Runs each client's work items one after another, all clients at once, timing every call.
async fn timed<W, T, F, Fut>(
    apis: &[Api<ConfigMap>],
    work: Vec<Vec<W>>,
    f: F,
) -> Result<(Sample, Vec<Vec<T>>)>
where
    W: Send + 'static,
    T: Send + 'static,
    F: Fn(Api<ConfigMap>, W) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = kube::Result<T>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = apis
        .iter()
        .cloned()
        .zip(work)
        .map(|(api, items)| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(items.len());
                let mut latencies = Vec::with_capacity(items.len());
                for item in items {
                    let t = Instant::now();
                    out.push(f(api.clone(), item).await?);
                    latencies.push(t.elapsed());
                }
                Ok::<_, kube::Error>((latencies, out))
            })
        })
        .collect();
    let (mut latencies, mut outputs) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, o) = task.await??;
        latencies.extend(l);
        outputs.push(o);
    }
    Ok((
        Sample {
            latencies,
            wall: started.elapsed(),
        },
        outputs,
    ))
}

/// `total` work items named by `name(client, j)`, split evenly over `clients` clients.
fn split(total: usize, clients: usize, name: impl Fn(usize, usize) -> String) -> Vec<Vec<String>> {
    (0..clients)
        .map(|c| {
            (0..total / clients + usize::from(c < total % clients))
                .map(|j| name(c, j))
                .collect()
        })
        .collect()
}

/// One namespaced API per client, each on its own `Client` (own connection pool).
fn apis(config: &kube::Config, clients: usize, ns: &str) -> Result<Vec<Api<ConfigMap>>> {
    (0..clients)
        .map(|_| Ok(Api::namespaced(Client::try_from(config.clone())?, ns)))
        .collect()
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some([("value".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// The `berth server` child, stopped (SIGTERM, then SIGKILL) by [`Server::stop`] or on drop.
struct Server {
    child: Option<Reaped>,
    dir: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let port = berth_testkit::try_free_port()?;
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--api-port",
                &port.to_string(),
                "--bind-address",
                "127.0.0.1",
            ])
            .args(["--disable-agent", "--disable-registry"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} server", bin.display()))?;
        Ok(Server {
            child: Some(Reaped(child)),
            dir: dir.to_path_buf(),
            log,
        })
    }

    /// Waits for the kubeconfig and a successful request, and returns the client config.
    async fn wait_ready(&mut self, within: Duration) -> Result<kube::Config> {
        let deadline = Instant::now() + within;
        let kubeconfig = self.dir.join("server/kubeconfig.yaml");
        loop {
            if let Some(child) = self.child.as_mut() {
                child
                    .check_alive("berth server")
                    .with_context(|| format!("log: {}", self.log.display()))?;
            }
            if let Ok(config) = client_config(&kubeconfig).await {
                let ns: Api<Namespace> = Api::all(Client::try_from(config.clone())?);
                if ns.list(&ListParams::default().limit(1)).await.is_ok() {
                    return Ok(config);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "berth server not ready after {within:?}; log: {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after a few seconds.
    fn stop(&mut self) {
        self.child.take();
    }
}

async fn client_config(kubeconfig: &Path) -> Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    Ok(
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Sample {
            latencies: (1..=100).rev().map(Duration::from_millis).collect(),
            wall: Duration::from_secs(2),
        };
        assert_eq!(s.percentile(50), Duration::from_millis(50));
        assert_eq!(s.percentile(99), Duration::from_millis(99));
        assert_eq!(s.per_second(), 50.0);
    }

    #[test]
    fn split_spreads_the_remainder() {
        let work = split(10, 4, |c, j| format!("{c}-{j}"));
        assert_eq!(work.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2, 2]);
        assert_eq!(work[0], ["0-0", "0-1", "0-2"]);
    }
}

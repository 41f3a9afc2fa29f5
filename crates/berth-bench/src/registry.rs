//! `berth bench registry`: push and pull throughput of a generated ~200 MB image with `skopeo`
//! against berth's registry and against Debian's `docker-registry`, in one run.
//!
//! The image has random (incompressible) layers wrapped in *stored* (uncompressed) gzip blocks
//! (berth-testkit's synthetic images): skopeo sees gzip layers and copies them as they are instead
//! of compressing them on the way, so the figures measure the registries, not a compressor. Every
//! run starts both registries on fresh storage, so no push can be answered by "already there" or
//! by a cross-repository mount.
//! Build with `--release` for meaningful figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use berth_testkit::peer::{DockerRegistry, http_status, skopeo_copy};

use crate::proc::{Reaped, wait_for};
use crate::stats::median;

/// Arguments of `berth bench registry`.
#[derive(clap::Args)]
pub struct Args {
    /// Total image size in MB (split evenly over the layers).
    #[arg(long, default_value_t = 200)]
    size_mb: u64,
    /// Number of layers.
    #[arg(long, default_value_t = 4)]
    layers: u64,
    /// Runs per registry; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Path of Debian's distribution registry.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    docker_registry: PathBuf,
    /// Binary to run as `BIN registry --port P --data-dir D --registry-auth none` for berth's
    /// side (default: this executable).
    #[arg(long)]
    berth_bin: Option<PathBuf>,
}

/// Runs `berth bench registry`.
pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(
        args.layers > 0 && args.size_mb > 0 && args.runs > 0,
        "sizes and runs must be positive"
    );
    let work = tempfile_dir()?;
    let result = bench(&args, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(args: &Args, work: &Path) -> Result<()> {
    let layout = work.join("image");
    let started = Instant::now();
    let layers = u32::try_from(args.layers).context("too many layers")?;
    // A fresh seed per run: nothing of an earlier run's image can be reused anywhere.
    let seed = u64::from(std::process::id());
    let bytes = crate::block_on(berth_testkit::synthetic::random_layout(
        &layout,
        "bench",
        layers,
        args.size_mb * 1_000_000 / args.layers,
        seed,
    ))??;
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "generated {mb:.1} MB image ({} layers) in {:.1?}",
        args.layers,
        started.elapsed()
    );

    let mut berth = Figures::default();
    let mut peer = Figures::default();
    for run in 0..args.runs {
        for (name, figures) in [("berth", &mut berth), ("docker-registry", &mut peer)] {
            let pulled = work.join(format!("pulled-{name}-{run}"));
            // Each registry stops (its guard drops) before the next one starts.
            let (push, pull) = match name {
                "berth" => {
                    let dir = work.join(format!("berth-{run}"));
                    let (_berth, host) = berth_registry(args.berth_bin.as_deref(), &dir)?;
                    push_pull(&host, &layout, &pulled)?
                }
                _ => {
                    let peer = DockerRegistry::start_with(&args.docker_registry)?;
                    push_pull(&peer.host(), &layout, &pulled)?
                }
            };
            eprintln!(
                "run {}: {name:<16} push {:>7.1} MB/s  pull {:>7.1} MB/s",
                run + 1,
                mb / push,
                mb / pull
            );
            figures.push.push(push);
            figures.pull.push(pull);
        }
    }
    report(mb, &berth, &peer);
    Ok(())
}

#[derive(Default)]
struct Figures {
    push: Vec<f64>,
    pull: Vec<f64>,
}

fn report(mb: f64, berth: &Figures, peer: &Figures) {
    // `run` checks runs > 0, so every list has a median.
    let rate = |v: &[f64]| mb / median(v).unwrap_or(f64::NAN);
    let (bp, bl) = (rate(&berth.push), rate(&berth.pull));
    let (pp, pl) = (rate(&peer.push), rate(&peer.pull));
    println!(
        "registry throughput, {mb:.1} MB image, skopeo copy over loopback (median of {} runs)",
        berth.push.len()
    );
    println!("{:<18}{:>14}{:>14}", "", "push MB/s", "pull MB/s");
    println!("{:<18}{bp:>14.1}{bl:>14.1}", "berth");
    println!("{:<18}{pp:>14.1}{pl:>14.1}", "docker-registry");
    println!("{:<18}{:>14.2}{:>14.2}", "berth / peer", bp / pp, bl / pl);
}

/// Times `skopeo copy` of the layout into the registry and back out into a fresh layout;
/// returns (push seconds, pull seconds) and checks the pulled manifest is the pushed one.
fn push_pull(host: &str, layout: &Path, pulled: &Path) -> Result<(f64, f64)> {
    let remote = format!("docker://{host}/bench/model:v1");
    let t = Instant::now();
    skopeo_copy(&format!("oci:{}:bench", layout.display()), &remote, None)?;
    let push = t.elapsed().as_secs_f64();
    let t = Instant::now();
    skopeo_copy(&remote, &format!("oci:{}:bench", pulled.display()), None)?;
    let pull = t.elapsed().as_secs_f64();
    let want = std::fs::read(layout.join("index.json"))?;
    let got = std::fs::read(pulled.join("index.json"))?;
    anyhow::ensure!(
        manifest_digest(&want)? == manifest_digest(&got)?,
        "pulled image differs from the pushed one"
    );
    std::fs::remove_dir_all(pulled)?;
    Ok((push, pull))
}

fn manifest_digest(index: &[u8]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(index)?;
    v["manifests"][0]["digest"]
        .as_str()
        .map(str::to_string)
        .context("index.json without manifest")
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-bench-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `berth registry` (`bin`, default this executable) without auth, storage under `dir`; returns
/// once `GET /v2/` answers, with the child (stopped on drop) and its `HOST:PORT`.
fn berth_registry(bin: Option<&Path>, dir: &Path) -> Result<(Reaped, String)> {
    let port = berth_testkit::try_free_port()?;
    let bin = match bin {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe()?,
    };
    let child = Command::new(bin)
        .args([
            "registry",
            "--registry-auth",
            "none",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let mut child = Reaped(child);
    let host = format!("127.0.0.1:{port}");
    wait_for("berth registry", Duration::from_secs(20), || {
        child.check_alive("berth registry")?;
        Ok(http_status(&host, "/v2/").is_ok_and(|s| s == 200))
    })?;
    Ok((child, host))
}

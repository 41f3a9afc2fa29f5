//! `berth bench image`: push and pull a generated ~200 MB image (random layers) with
//! `berth push`/`berth pull` and with `skopeo copy`, against Debian's `docker-registry`, in one
//! run. Each measurement gets a freshly started registry, so no blob is "already there".
//! Build with `--release` for meaningful figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use berth_image::{LocalImages, Reference};

use berth_testkit::peer::DockerRegistry;

/// Arguments of `berth bench image`.
#[derive(clap::Args)]
pub struct Args {
    /// Total image size in MB (split evenly over the layers).
    #[arg(long, default_value_t = 200)]
    size_mb: u64,
    /// Number of layers.
    #[arg(long, default_value_t = 4)]
    layers: u64,
    /// Path of Debian's distribution registry.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    docker_registry: PathBuf,
}

/// Runs `berth bench image`.
pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(
        args.layers > 0 && args.size_mb > 0,
        "sizes must be positive"
    );
    let work = std::env::temp_dir().join(format!("berth-bench-image-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let result = bench(&args, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(args: &Args, work: &Path) -> Result<()> {
    let src_data = work.join("src");
    let images = LocalImages::open(src_data.join("images"))?;
    let name = Reference::parse("bench/image:1")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let layers = u32::try_from(args.layers).context("too many layers")?;
    let manifest = rt.block_on(berth_testkit::synthetic::random_image(
        images.content(),
        layers,
        args.size_mb * 1_000_000 / args.layers,
        42,
    ))?;
    images.tag(&name, &manifest)?;
    let bytes: u64 = images
        .manifest(&manifest)?
        .layers
        .iter()
        .map(|l| l.size)
        .sum();
    let mb = bytes as f64 / 1e6;
    let layout = work.join("layout");
    berth_image::layout::export(images.content(), &manifest, &layout, "1")?;
    eprintln!("image: {mb:.1} MB in {} layers", args.layers);
    let exe = std::env::current_exe().context("locate berth executable")?;
    let data = src_data.to_string_lossy().to_string();

    let berth_push = timed_with_registry(args, |host| {
        run_cmd(Command::new(&exe).args([
            "push",
            "--data-dir",
            &data,
            "bench/image:1",
            &format!("{host}/bench/image:1"),
        ]))
    })?;
    let berth_pull = timed_with_registry_prefilled(args, &exe, &data, |host| {
        let d = work.join("berth-pulled");
        run_cmd(
            Command::new(&exe)
                .args(["pull", "--data-dir"])
                .arg(&d)
                .arg(format!("{host}/bench/image:1")),
        )
    })?;
    let skopeo_push = timed_with_registry(args, |host| {
        run_cmd(
            Command::new("skopeo")
                .args(["copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:1", layout.display()))
                .arg(format!("docker://{host}/bench/image:1")),
        )
    })?;
    let skopeo_pull = timed_with_registry_prefilled(args, &exe, &data, |host| {
        let d = work.join("skopeo-pulled");
        run_cmd(
            Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false"])
                .arg(format!("docker://{host}/bench/image:1"))
                .arg(format!("oci:{}:1", d.display())),
        )
    })?;
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "{:<8} {:>12} {:>12} {:>10}",
        "", "berth MB/s", "skopeo MB/s", "ratio"
    );
    for (what, b, s) in [
        ("push", berth_push, skopeo_push),
        ("pull", berth_pull, skopeo_pull),
    ] {
        println!(
            "{:<8} {:>12.1} {:>12.1} {:>9.2}x",
            what,
            rate(b),
            rate(s),
            rate(b) / rate(s)
        );
    }
    println!(
        "(image {mb:.1} MB, {} layers; ratio = berth / skopeo throughput; higher is better for berth)",
        args.layers
    );
    Ok(())
}

/// Times `f` against a fresh, empty registry.
fn timed_with_registry(args: &Args, f: impl Fn(&str) -> Result<()>) -> Result<Duration> {
    let reg = DockerRegistry::start_with(&args.docker_registry)?;
    let t = Instant::now();
    f(&reg.host())?;
    Ok(t.elapsed())
}

/// Times `f` against a fresh registry that already holds the image (pushed untimed by berth).
fn timed_with_registry_prefilled(
    args: &Args,
    exe: &Path,
    data: &str,
    f: impl Fn(&str) -> Result<()>,
) -> Result<Duration> {
    let reg = DockerRegistry::start_with(&args.docker_registry)?;
    run_cmd(Command::new(exe).args([
        "push",
        "--data-dir",
        data,
        "bench/image:1",
        &format!("{}/bench/image:1", reg.host()),
    ]))?;
    let t = Instant::now();
    f(&reg.host())?;
    Ok(t.elapsed())
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

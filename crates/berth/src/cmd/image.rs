//! Image commands: `berth build/push/pull/images/tag/rmi/login`.
//!
//! Local images live under `DATA_DIR/images` (see [`berth_image::LocalImages`]). Bare names
//! resolve to the registry `localhost:5000` (berth's own). Credentials come from the docker
//! config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, written by `berth login`);
//! for a loopback registry without stored credentials, berth falls back to the berth registry's
//! generated `DATA_DIR/registry/credentials`.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use berth_image::auth::{AuthConfig, Credentials, DockerConfig, docker_config_path};
use berth_image::{ClientOptions, LocalImages, Progress, Reference, RegistryClient};

/// Options shared by the image commands.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Data directory; images live under DIR/images, and `berth login --data-dir DIR` keeps
    /// credentials in DIR/auth/config.json (without it: the Docker config).
    /// Default: /var/lib/berth as root, else $XDG_DATA_HOME/berth.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Registries to reach over plain HTTP although not on loopback (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
}

impl Common {
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(super::server::default_data_dir)
    }

    /// Where registry credentials are kept: with `--data-dir DIR`, DIR/auth/config.json (in the
    /// Docker config format), so a data dir is self-contained; without it, the user's Docker
    /// config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), as `docker login`.
    fn credentials_file(&self) -> PathBuf {
        match &self.data_dir {
            Some(dir) => dir.join("auth/config.json"),
            None => docker_config_path(),
        }
    }

    fn images(&self) -> anyhow::Result<LocalImages> {
        let dir = self.data_dir().join("images");
        LocalImages::open(&dir).with_context(|| format!("open image store {}", dir.display()))
    }

    /// A client whose credentials for `registry` come from [`Self::credentials_file`], else
    /// (loopback only) from the local berth registry's credentials file.
    fn client(&self, registry: &str) -> anyhow::Result<RegistryClient> {
        let mut auth = AuthConfig {
            docker_config: Some(self.credentials_file()),
            ..AuthConfig::default()
        };
        if auth.for_registry(registry).is_none()
            && is_loopback(registry)
            && let Some(c) = self.local_registry_credentials()
        {
            auth.explicit.insert(registry.to_string(), c);
        }
        Ok(RegistryClient::new(ClientOptions {
            auth,
            insecure: self.insecure.clone(),
            chunk_size: None,
        })?)
    }

    fn local_registry_credentials(&self) -> Option<Credentials> {
        let text = std::fs::read_to_string(self.data_dir().join("registry/credentials")).ok()?;
        Credentials::from_pair(text.trim())
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Adds "run berth login" to authentication failures.
fn with_login_hint(e: berth_image::Error, registry: &str) -> anyhow::Error {
    let denied = matches!(
        &e,
        berth_image::Error::Auth { .. }
            | berth_image::Error::Registry {
                status: 401 | 403,
                ..
            }
    );
    let e = anyhow::Error::from(e);
    if denied {
        e.context(format!(
            "not authorized by {registry}; run `berth login {registry}`"
        ))
    } else {
        e
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")
}

/// Progress bars per blob on stderr (indicatif hides them when stderr is not a terminal).
fn progress_bars(verb: &'static str) -> Option<Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let multi = indicatif::MultiProgress::new();
    let bars: Mutex<HashMap<String, indicatif::ProgressBar>> = Mutex::default();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    Some(Arc::new(move |ev: berth_image::ProgressEvent| {
        let mut bars = bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(ev.digest.to_string()).or_insert_with(|| {
            let b = multi.add(indicatif::ProgressBar::new(ev.total));
            b.set_style(style.clone());
            b.set_prefix(ev.digest.short().to_string());
            b.set_message(verb);
            b
        });
        bar.set_position(ev.done);
        if ev.skipped {
            bar.finish_with_message("exists");
        } else if ev.done >= ev.total {
            bar.finish_with_message("done");
        }
    }))
}

/// Arguments of `berth build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    common: Common,
    /// Name(s) for the image (NAME[:TAG]).
    #[arg(short, long = "tag", required = true)]
    tags: Vec<String>,
    /// The Dockerfile (default CONTEXT/Dockerfile).
    #[arg(short, long = "file")]
    file: Option<PathBuf>,
    /// Build-time variables (KEY=VALUE).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Build context directory.
    context: PathBuf,
}

/// Runs `berth build`.
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let images = args.common.images()?;
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut build_args = HashMap::new();
    for kv in &args.build_args {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--build-arg {kv:?}: expected KEY=VALUE"))?;
        build_args.insert(k.to_string(), v.to_string());
    }
    let opts = berth_image::build::BuildOptions {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        build_args,
        tags: tags.clone(),
    };
    // Base images are pulled with the credentials of the first tag's registry (bare names: local).
    let registry = tags
        .first()
        .map(|t| t.registry().to_string())
        .unwrap_or_default();
    let client = args.common.client(&registry)?;
    let log = |line: &str| eprintln!("{line}");
    let builder = berth_image::build::Builder::new(&images, &client, &log);
    let out = runtime()?.block_on(builder.build(&opts))?;
    eprintln!(
        "{} layer step(s) built, {} from cache",
        out.built_steps, out.cached_steps
    );
    for t in &tags {
        println!("{t}: digest: {}", out.manifest_digest);
    }
    Ok(())
}

/// Arguments of `berth push`.
#[derive(clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    common: Common,
    /// Local image to push (NAME[:TAG]).
    image: String,
    /// Where to push it (defaults to the image's own name).
    dest: Option<String>,
}

/// Runs `berth push`.
pub fn push(args: PushArgs) -> anyhow::Result<()> {
    let images = args.common.images()?;
    let src = Reference::parse(&args.image)?;
    let manifest = images.resolve(&args.image)?;
    let dest = match &args.dest {
        Some(d) => Reference::parse(d)?,
        None => src.clone(),
    };
    let client = args.common.client(dest.registry())?;
    // Mounting only helps when pushing between repositories of the same registry.
    let mount_from = (src.registry() == dest.registry()).then_some(src.repository().to_string());
    let digest = runtime()?
        .block_on(client.push_image(
            &dest,
            images.content(),
            &manifest,
            mount_from.as_deref(),
            progress_bars("push"),
        ))
        .map_err(|e| with_login_hint(e, dest.registry()))?;
    println!("{dest}: digest: {digest}");
    Ok(())
}

/// Arguments of `berth pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    common: Common,
    /// Image reference ([REGISTRY/]REPO[:TAG][@DIGEST]).
    reference: String,
    /// Also write the image's root filesystem (all layers, whiteouts applied) into DIR.
    #[arg(long, value_name = "DIR")]
    unpack: Option<PathBuf>,
}

/// Runs `berth pull`.
pub fn pull(args: PullArgs) -> anyhow::Result<()> {
    let images = args.common.images()?;
    let r = Reference::parse(&args.reference)?;
    let client = args.common.client(r.registry())?;
    let pulled = runtime()?
        .block_on(client.pull_image(&r, images.content(), progress_bars("pull")))
        .map_err(|e| with_login_hint(e, r.registry()))?;
    images.tag(&r, &pulled.manifest_digest)?;
    println!("{r}: digest: {}", pulled.manifest_digest);
    if let Some(dir) = &args.unpack {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        berth_image::rootfs::unpack_image(&images, &pulled.manifest_digest, dir)
            .with_context(|| format!("unpack {r} into {}", dir.display()))?;
        eprintln!("unpacked {r} into {}", dir.display());
    }
    Ok(())
}

/// Arguments of `berth images`.
#[derive(clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    common: Common,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `berth images`.
pub fn images(args: ImagesArgs) -> anyhow::Result<()> {
    let images = args.common.images()?;
    if !args.quiet {
        println!(
            "{:<40} {:<16} {:<14} {:<22} SIZE",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
        );
    }
    for (name, entry) in images.list()? {
        let r = Reference::parse(&name)?;
        let m = images.manifest(&entry.manifest)?;
        let size: u64 = m.layers.iter().map(|l| l.size).sum::<u64>() + m.config.size;
        let created = images
            .content()
            .read(&m.config.digest)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v.get("created")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "N/A".into());
        if args.quiet {
            println!("{}", m.config.digest.short());
            continue;
        }
        let repo = r.name();
        let repo = repo
            .strip_prefix(&format!("{}/", berth_oci::reference::DEFAULT_REGISTRY))
            .unwrap_or(&repo);
        let tag = r.tag().unwrap_or("<none>");
        println!(
            "{:<40} {:<16} {:<14} {:<22} {}",
            repo,
            tag,
            m.config.digest.short(),
            created,
            human_size(size)
        );
    }
    Ok(())
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
    }
}

/// Arguments of `berth tag`.
#[derive(clap::Args)]
pub struct TagArgs {
    #[command(flatten)]
    common: Common,
    /// Existing local image.
    source: String,
    /// New name.
    target: String,
}

/// Runs `berth tag`.
pub fn tag(args: TagArgs) -> anyhow::Result<()> {
    let images = args.common.images()?;
    let d = images.resolve(&args.source)?;
    images.tag(&Reference::parse(&args.target)?, &d)?;
    Ok(())
}

/// Arguments of `berth rmi`.
#[derive(clap::Args)]
pub struct RmiArgs {
    #[command(flatten)]
    common: Common,
    /// Images to remove.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `berth rmi`.
pub fn rmi(args: RmiArgs) -> anyhow::Result<()> {
    let images = args.common.images()?;
    for name in &args.images {
        let freed = images.remove(name)?;
        println!("Untagged: {name}");
        for d in freed {
            println!("Deleted: {d}");
        }
    }
    Ok(())
}

/// Arguments of `berth login`.
#[derive(clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    common: Common,
    /// Registry host[:port] (default localhost:5000).
    registry: Option<String>,
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
}

/// Runs `berth login`: verifies the credentials against the registry and stores them.
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let registry = args
        .registry
        .clone()
        .unwrap_or_else(|| berth_oci::reference::DEFAULT_REGISTRY.to_string());
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read password from stdin")?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        args.password.clone()
    };
    let creds = match (&args.username, password) {
        (Some(u), Some(p)) => Credentials {
            username: u.clone(),
            password: p,
        },
        (Some(_), None) => bail!("a password is required (-p or --password-stdin)"),
        (None, Some(_)) => bail!("a username is required (-u)"),
        (None, None) if is_loopback(&registry) => {
            args.common.local_registry_credentials().with_context(|| {
                format!(
                    "no credentials given and no {}",
                    args.common
                        .data_dir()
                        .join("registry/credentials")
                        .display()
                )
            })?
        }
        (None, None) => bail!("credentials are required for {registry} (-u USER -p PASS)"),
    };
    let mut auth = AuthConfig::default();
    auth.explicit.insert(registry.clone(), creds.clone());
    let client = RegistryClient::new(ClientOptions {
        auth,
        insecure: args.common.insecure.clone(),
        chunk_size: None,
    })?;
    runtime()?.block_on(client.login_check(&registry))?;
    let path = args.common.credentials_file();
    let mut cfg = DockerConfig::load(&path)?;
    cfg.set(&registry, &creds);
    cfg.save(&path)?;
    println!(
        "Login Succeeded ({registry}, credentials in {})",
        path.display()
    );
    Ok(())
}

//! `berth build`: turns a Dockerfile and a build context into an image in the local store.
//!
//! Supported: FROM (scratch, earlier stages, local or pulled images), multi-stage builds,
//! COPY/ADD (globs, directories, `--chown`, `--from`, `.dockerignore`, ADD of local tar
//! archives), WORKDIR, ENV, ARG, LABEL, EXPOSE, USER, CMD, ENTRYPOINT, HEALTHCHECK (stored as
//! Docker does, under `config.Healthcheck`), STOPSIGNAL. RUN needs a container runtime and is
//! refused. Layers are reproducible and cached by (parent layers, instruction, content), and the
//! config's timestamps come from `SOURCE_DATE_EPOCH` (default 0), so rebuilding unchanged inputs
//! gives the same image digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::client::RegistryClient;
use crate::context::Ignore;
use crate::dockerfile::{self, CommandForm, Instruction, Line};
use crate::error::{Error, Result};
use crate::layer::{self, LayerBuilder};
use crate::local::LocalImages;
use crate::rootfs;
use crate::sources::resolve_sources;
use berth_oci::Reference;
use berth_oci::digest::Digest;
use berth_oci::manifest::{self, Descriptor, Manifest};
use berth_oci::media;

/// Build errors.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    /// An instruction cannot be carried out.
    #[error("Dockerfile line {line}: {message}")]
    Step {
        /// Line of the instruction.
        line: usize,
        /// Why.
        message: String,
    },
    /// Storage, registry or I/O failure.
    #[error(transparent)]
    Image(#[from] Error),
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (default `CONTEXT/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `--build-arg` values.
    pub build_args: HashMap<String, String>,
    /// Names to tag the result with.
    pub tags: Vec<Reference>,
}

/// The outcome of a build.
#[derive(Clone, Debug)]
pub struct BuildOutput {
    /// Digest of the image manifest.
    pub manifest_digest: Digest,
    /// Digest of the image config (the image ID).
    pub config_digest: Digest,
    /// Layer steps taken from the build cache.
    pub cached_steps: usize,
    /// Layer steps built.
    pub built_steps: usize,
}

/// The state of one stage.
#[derive(Clone, Default)]
struct Stage {
    name: Option<String>,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    /// The image config (`config` object, Docker field names).
    config: serde_json::Map<String, Value>,
    history: Vec<Value>,
    /// ARG values visible in this stage.
    args: HashMap<String, String>,
    cmd_set: bool,
}

impl Stage {
    /// ENV then ARG values, for substitution (ENV wins, as in Docker).
    fn vars(&self) -> HashMap<String, String> {
        let mut v = self.args.clone();
        for kv in self
            .config
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((k, val)) = kv.as_str().and_then(|s| s.split_once('=')) {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    fn workdir(&self) -> String {
        self.config
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }
}

/// Runs builds against a local image store, pulling base images with `client` when needed.
pub struct Builder<'a> {
    images: &'a LocalImages,
    client: &'a RegistryClient,
    epoch: u64,
    log: &'a (dyn Fn(&str) + Sync),
}

impl<'a> Builder<'a> {
    /// A builder; `log` receives one line per step.
    pub fn new(
        images: &'a LocalImages,
        client: &'a RegistryClient,
        log: &'a (dyn Fn(&str) + Sync),
    ) -> Self {
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Builder {
            images,
            client,
            epoch,
            log,
        }
    }

    /// Builds, stores and tags the image.
    pub async fn build(&self, opts: &BuildOptions) -> Result<BuildOutput, BuildError> {
        let df_path = opts
            .dockerfile
            .clone()
            .unwrap_or_else(|| opts.context.join("Dockerfile"));
        let text = std::fs::read_to_string(&df_path).map_err(|e| Error::io("read", &df_path, e))?;
        let lines = dockerfile::parse(&text)?;
        let ignore = Ignore::load(&opts.context)?;
        let mut run = Run {
            b: self,
            opts,
            ignore,
            stages: Vec::new(),
            global_args: HashMap::new(),
            cached: 0,
            built: 0,
            rootfs: HashMap::new(),
        };
        for l in &lines {
            (self.log)(&format!("step (line {}): {}", l.line, l.text));
            run.step(l).await?;
        }
        let stage = run.stages.pop().ok_or_else(|| BuildError::Step {
            line: 1,
            message: "no FROM".into(),
        })?;
        let (manifest_digest, config_digest) = self.commit(&stage)?;
        for t in &opts.tags {
            self.images.tag(t, &manifest_digest)?;
        }
        Ok(BuildOutput {
            manifest_digest,
            config_digest,
            cached_steps: run.cached,
            built_steps: run.built,
        })
    }

    /// Writes the config and manifest of the final stage.
    fn commit(&self, s: &Stage) -> Result<(Digest, Digest)> {
        let config = json!({
            "architecture": manifest::host_arch(),
            "os": "linux",
            "created": rfc3339(self.epoch),
            "config": Value::Object(s.config.clone()),
            "rootfs": {"type": "layers", "diff_ids": s.diff_ids},
            "history": s.history,
        });
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| Error::json("image config", e))?;
        let store = self.images.content();
        let config_digest = store.write_bytes(&config_bytes)?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: media::OCI_CONFIG.into(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers: s.layers.clone(),
            annotations: Default::default(),
        };
        let bytes = serde_json::to_vec(&m).map_err(|e| Error::json("manifest", e))?;
        Ok((store.write_bytes(&bytes)?, config_digest))
    }
}

/// One build in progress.
struct Run<'b, 'a> {
    b: &'b Builder<'a>,
    opts: &'b BuildOptions,
    ignore: Ignore,
    stages: Vec<Stage>,
    global_args: HashMap<String, String>,
    cached: usize,
    built: usize,
    /// Extracted root file systems of stages/images used by `COPY --from`.
    rootfs: HashMap<String, tempfile::TempDir>,
}

impl Run<'_, '_> {
    fn fail(line: &Line, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            line: line.line,
            message: message.into(),
        }
    }

    fn stage(&mut self, l: &Line) -> Result<&mut Stage, BuildError> {
        self.stages
            .last_mut()
            .ok_or_else(|| Run::fail(l, "instruction before the first FROM"))
    }

    async fn step(&mut self, l: &Line) -> Result<(), BuildError> {
        match &l.instruction {
            Instruction::Arg(spec) if self.stages.is_empty() => {
                let (k, v) = self.arg_value(l, spec, &self.global_args.clone())?;
                self.global_args.insert(k, v);
            }
            Instruction::Arg(spec) => {
                let vars = self.stage(l)?.vars();
                let (k, v) = self.arg_value(l, spec, &vars)?;
                let epoch = self.b.epoch;
                let s = self.stage(l)?;
                s.args.insert(k, v);
                s.history.push(
                    json!({"created": rfc3339(epoch), "created_by": l.text, "empty_layer": true}),
                );
            }
            Instruction::From { image, alias } => self.from(l, image, alias.clone()).await?,
            Instruction::Copy {
                add,
                sources,
                dest,
                from,
                chown,
            } => {
                self.copy(l, *add, sources, dest, from.as_deref(), chown.as_deref())
                    .await?
            }
            Instruction::Run(_) => {
                return Err(Run::fail(
                    l,
                    "RUN needs a container runtime; not supported by berth build yet",
                ));
            }
            other => {
                let other = other.clone();
                let epoch = self.b.epoch;
                let s = self.stage(l)?;
                apply_metadata(s, l, &other).map_err(|m| Run::fail(l, m))?;
                s.history.push(
                    json!({"created": rfc3339(epoch), "created_by": l.text, "empty_layer": true}),
                );
            }
        }
        Ok(())
    }

    fn arg_value(
        &self,
        l: &Line,
        spec: &str,
        vars: &HashMap<String, String>,
    ) -> Result<(String, String), BuildError> {
        let spec = dockerfile::expand_one(spec, vars).map_err(|m| Run::fail(l, m))?;
        let (k, default) = match spec.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (spec.clone(), None),
        };
        let v = self
            .opts
            .build_args
            .get(&k)
            .cloned()
            .or(default)
            .or_else(|| self.global_args.get(&k).cloned())
            .unwrap_or_default();
        Ok((k, v))
    }

    async fn from(
        &mut self,
        l: &Line,
        image: &str,
        alias: Option<String>,
    ) -> Result<(), BuildError> {
        let image =
            dockerfile::expand_one(image, &self.global_args).map_err(|m| Run::fail(l, m))?;
        let mut stage = if image.eq_ignore_ascii_case("scratch") {
            Stage::default()
        } else if let Some(prev) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&image.to_ascii_lowercase()))
        {
            Stage {
                cmd_set: false,
                ..prev.clone()
            }
        } else {
            let digest = self.image_manifest(l, &image).await?;
            self.stage_from_image(&digest)?
        };
        stage.name = alias;
        stage.args = HashMap::new();
        stage.cmd_set = false;
        self.stages.push(stage);
        Ok(())
    }

    /// A local image, else pulled from its registry.
    async fn image_manifest(&self, l: &Line, image: &str) -> Result<Digest, BuildError> {
        if let Ok(d) = self.b.images.resolve(image) {
            return Ok(d);
        }
        let r = Reference::parse(image).map_err(|e| Run::fail(l, e.to_string()))?;
        (self.b.log)(&format!("pulling {r}"));
        let pulled = self
            .b
            .client
            .pull_image(&r, self.b.images.content(), None)
            .await
            .map_err(|e| Run::fail(l, format!("pull {r}: {e}")))?;
        self.b.images.tag(&r, &pulled.manifest_digest)?;
        Ok(pulled.manifest_digest)
    }

    fn stage_from_image(&self, manifest_digest: &Digest) -> Result<Stage, BuildError> {
        let m = self.b.images.manifest(manifest_digest)?;
        let cfg: Value = serde_json::from_slice(&self.b.images.content().read(&m.config.digest)?)
            .map_err(|e| Error::json("base image config", e))?;
        Ok(Stage {
            layers: m.layers.clone(),
            diff_ids: cfg
                .pointer("/rootfs/diff_ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            config: cfg
                .get("config")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            history: cfg
                .get("history")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            ..Stage::default()
        })
    }

    async fn copy(
        &mut self,
        l: &Line,
        add: bool,
        sources: &[String],
        dest: &str,
        from: Option<&str>,
        chown: Option<&str>,
    ) -> Result<(), BuildError> {
        let vars = self.stage(l)?.vars();
        let ex = |w: &str| dockerfile::expand_one(w, &vars).map_err(|m| Run::fail(l, m));
        let dest_raw = ex(dest)?;
        let sources: Vec<String> = sources.iter().map(|s| ex(s)).collect::<Result<_, _>>()?;
        let (uid, gid) = match chown {
            Some(c) => parse_chown(&ex(c)?).map_err(|m| Run::fail(l, m))?,
            None => (0, 0),
        };
        let workdir = self.stage(l)?.workdir();
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest_raw)
        };
        let (root, use_ignore) = match from {
            Some(f) => (self.source_root(l, &ex(f)?).await?, false),
            None => (self.opts.context.clone(), true),
        };
        let keep_ctx = |rel: &Path| !use_ignore || !self.ignore.excluded(rel);
        let mut matched: Vec<(PathBuf, PathBuf)> = Vec::new();
        for s in &sources {
            if add && (s.starts_with("http://") || s.starts_with("https://")) {
                return Err(Run::fail(
                    l,
                    "ADD from URLs is not supported by berth build",
                ));
            }
            let rel = s
                .trim_start_matches('/')
                .trim_start_matches("./")
                .to_string();
            let found = resolve_sources(&root, &rel, &keep_ctx).map_err(|m| Run::fail(l, m))?;
            if found.is_empty() {
                return Err(Run::fail(
                    l,
                    format!(
                        "{s}: no such file or directory in the {}",
                        if from.is_some() {
                            "source stage"
                        } else {
                            "build context"
                        }
                    ),
                ));
            }
            matched.extend(found);
        }
        let dest_is_dir = dest_raw.ends_with('/')
            || matched.len() > 1
            || sources.iter().any(|s| s.contains(['*', '?', '[']));
        let mut lb = LayerBuilder::default();
        for (abs, rel) in &matched {
            let meta = std::fs::symlink_metadata(abs).map_err(|e| Error::io("stat", abs, e))?;
            let keep = |sub: &Path| keep_ctx(&rel.join(sub));
            if meta.is_dir() {
                lb.insert(
                    &dest_abs,
                    layer::Entry {
                        kind: layer::EntryKind::Dir,
                        mode: 0o755,
                    },
                );
                let mut tmp = LayerBuilder::default();
                tmp.add_path(abs, &dest_abs, &keep)?;
                lb.extend(tmp);
            } else {
                let file_dest = if dest_is_dir {
                    format!(
                        "{}/{}",
                        dest_abs.trim_end_matches('/'),
                        abs.file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default()
                    )
                } else {
                    dest_abs.clone()
                };
                if add && layer::is_archive(abs) {
                    lb.add_archive(abs, &dest_abs)?;
                } else {
                    lb.add_path(abs, &file_dest, &keep)?;
                }
            }
        }
        self.add_layer(l, lb, uid, gid).await
    }

    /// Commits a layer (or reuses the cached one) onto the current stage.
    async fn add_layer(
        &mut self,
        l: &Line,
        lb: LayerBuilder,
        uid: u64,
        gid: u64,
    ) -> Result<(), BuildError> {
        let epoch = self.b.epoch;
        let content = lb.content_hash()?;
        let stage = self.stage(l)?;
        let key = Digest::of(
            format!(
                "{}\n{}\n{uid}:{gid}\n{content}\n{epoch}",
                stage.diff_ids.join(","),
                l.text
            )
            .as_bytes(),
        );
        let cache_dir = self.b.images.dir().join("build-cache");
        let cache_file = cache_dir.join(key.hex());
        let store = self.b.images.content().clone();
        let cached = std::fs::read(&cache_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<(Digest, Digest, u64)>(&b).ok())
            .filter(|(d, _, _)| store.exists(d));
        let (digest, diff_id, size) = match cached {
            Some(c) => {
                (self.b.log)("  using cache");
                self.cached += 1;
                c
            }
            None => {
                let blob = lb.write(&store, uid, gid, epoch)?;
                std::fs::create_dir_all(&cache_dir)
                    .map_err(|e| Error::io("create", &cache_dir, e))?;
                let rec = serde_json::to_vec(&(&blob.digest, &blob.diff_id, blob.size))
                    .map_err(|e| Error::json("cache", e))?;
                std::fs::write(&cache_file, rec).map_err(|e| Error::io("write", &cache_file, e))?;
                self.built += 1;
                (blob.digest, blob.diff_id, blob.size)
            }
        };
        let stage = self.stage(l)?;
        stage.layers.push(Descriptor {
            media_type: media::OCI_LAYER_GZIP.into(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        });
        stage.diff_ids.push(diff_id.to_string());
        stage
            .history
            .push(json!({"created": rfc3339(epoch), "created_by": l.text}));
        Ok(())
    }

    /// The extracted root file system of a stage (by name or index) or image, for `--from`.
    async fn source_root(&mut self, l: &Line, from: &str) -> Result<PathBuf, BuildError> {
        let key = from.to_ascii_lowercase();
        if let Some(t) = self.rootfs.get(&key) {
            return Ok(t.path().to_path_buf());
        }
        let stage = match self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&key))
            .or_else(|| {
                key.parse::<usize>()
                    .ok()
                    .filter(|i| *i + 1 < self.stages.len())
            }) {
            Some(i) => self.stages[i].clone(),
            None => {
                let d = self.image_manifest(l, from).await?;
                self.stage_from_image(&d)?
            }
        };
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "temp dir", e))?;
        rootfs::unpack_layers(
            self.b.images.content(),
            &stage.layers,
            &stage.diff_ids,
            dir.path(),
        )
        .map_err(|e| Run::fail(l, format!("COPY --from={from}: {e}")))?;
        let p = dir.path().to_path_buf();
        self.rootfs.insert(key, dir);
        Ok(p)
    }
}

fn parse_chown(s: &str) -> std::result::Result<(u64, u64), String> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let num = |x: &str| {
        x.parse::<u64>()
            .map_err(|_| format!("--chown={s}: berth build needs numeric uid:gid"))
    };
    Ok((num(u)?, num(g)?))
}

/// Applies an instruction that only changes the config.
fn apply_metadata(s: &mut Stage, l: &Line, ins: &Instruction) -> std::result::Result<(), String> {
    let vars = s.vars();
    let cfg = &mut s.config;
    match ins {
        Instruction::Env(text) => {
            let mut env: Vec<String> = cfg
                .get("Env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in dockerfile::key_values(text, &vars)? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            cfg.insert("Env".into(), json!(env));
        }
        Instruction::Label(text) => {
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            for (k, v) in dockerfile::key_values(text, &vars)? {
                labels[k] = json!(v);
            }
        }
        Instruction::Expose(text) => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in dockerfile::expand_words(text, &vars)? {
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                ports[p] = json!({});
            }
        }
        Instruction::User(u) => {
            cfg.insert("User".into(), json!(dockerfile::expand_one(u, &vars)?));
        }
        Instruction::Workdir(w) => {
            let w = dockerfile::expand_one(w, &vars)?;
            let cur = cfg
                .get("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            let new = if w.starts_with('/') {
                w
            } else {
                format!("{}/{}", cur.trim_end_matches('/'), w)
            };
            cfg.insert("WorkingDir".into(), json!(new));
        }
        Instruction::StopSignal(sig) => {
            cfg.insert(
                "StopSignal".into(),
                json!(dockerfile::expand_one(sig, &vars)?),
            );
        }
        Instruction::Cmd(c) => {
            cfg.insert("Cmd".into(), json!(c.argv()));
            s.cmd_set = true;
        }
        Instruction::Entrypoint(c) => {
            cfg.insert("Entrypoint".into(), json!(c.argv()));
            // Docker resets a CMD inherited from the base image when ENTRYPOINT is set.
            if !s.cmd_set {
                cfg.remove("Cmd");
            }
        }
        Instruction::Healthcheck(hc) => {
            let test = match &hc.command {
                None => json!(["NONE"]),
                Some(CommandForm::Exec(v)) => json!(
                    std::iter::once("CMD".to_string())
                        .chain(v.iter().cloned())
                        .collect::<Vec<_>>()
                ),
                Some(CommandForm::Shell(sh)) => json!(["CMD-SHELL", sh]),
            };
            let mut h = serde_json::Map::new();
            h.insert("Test".into(), test);
            for (field, val) in [
                ("Interval", &hc.interval),
                ("Timeout", &hc.timeout),
                ("StartPeriod", &hc.start_period),
            ] {
                if let Some(v) = val {
                    h.insert(field.into(), json!(parse_duration_ns(v)?));
                }
            }
            if let Some(r) = hc.retries {
                h.insert("Retries".into(), json!(r));
            }
            cfg.insert("Healthcheck".into(), Value::Object(h));
        }
        other => return Err(format!("line {}: unexpected instruction {other:?}", l.line)),
    }
    Ok(())
}

/// Parses Go-style durations (`1m30s`, `500ms`, `2h`) into nanoseconds.
fn parse_duration_ns(s: &str) -> std::result::Result<u64, String> {
    let bad = || format!("invalid duration {s:?}");
    let mut total = 0u64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let mult = match &rest[digits..unit_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// RFC 3339 UTC time of a Unix timestamp, to the second (`1970-01-01T00:00:00Z`).
fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates() {
        assert_eq!(parse_duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration_ns("500ms").unwrap(), 500_000_000);
        assert!(parse_duration_ns("5").is_err());
        assert!(parse_duration_ns("5y").is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

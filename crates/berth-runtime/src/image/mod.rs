//! Images: pulled into one content store (berth-image's), each layer unpacked once into a
//! snapshot, and a record per image (keyed by config digest = image id) under `images/`.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_image::{ContentStore, Digest, Reference, RegistryClient};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use berth_oci::unpack::Compression;

use crate::snapshot::{SnapshotError, SnapshotStore, chain_ids};

pub mod healthcheck;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry client or content store failed (includes digest mismatches).
    #[error(transparent)]
    Registry(#[from] berth_image::Error),
    /// A layer could not be unpacked.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The image config lists a different number of diff ids than the manifest has layers.
    #[error("image config has {diff_ids} diff ids for {layers} layers")]
    LayerCount {
        /// Diff ids in the config.
        diff_ids: usize,
        /// Layers in the manifest.
        layers: usize,
    },
    /// A record file could not be read or written.
    #[error("image records: {0}")]
    Io(#[from] io::Error),
}

/// What the runtime knows about one pulled image (persisted as `images/<id hex>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    /// `registry/repo:tag` names pointing at it.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:<manifest>` names.
    pub repo_digests: Vec<String>,
    /// The manifest digest.
    pub manifest: String,
    /// Layer blob digests, base first.
    pub layers: Vec<String>,
    /// Snapshot chain ids, base first.
    pub chain_ids: Vec<String>,
    /// Total compressed size.
    pub size: u64,
    /// The image configuration.
    pub config: oci_spec::image::ImageConfiguration,
}

/// The images of one runtime.
pub struct ImageStore {
    dir: PathBuf,
    insecure: Vec<String>,
    content: ContentStore,
    snapshots: SnapshotStore,
    client: RegistryClient,
    /// Serialises record updates (pulls run concurrently; blobs are deduplicated by the store).
    records: Mutex<()>,
}

impl ImageStore {
    /// Opens `root/{images,content,snapshots}`.
    pub fn open(root: &Path, insecure: Vec<String>) -> Result<Arc<Self>, ImageError> {
        let dir = root.join("images");
        std::fs::create_dir_all(&dir)?;
        let opts = berth_image::ClientOptions {
            insecure: insecure.clone(),
            auth: berth_image::auth::AuthConfig::from_environment(),
            ..Default::default()
        };
        Ok(Arc::new(Self {
            dir,
            insecure,
            content: ContentStore::open(root.join("content"))?,
            snapshots: SnapshotStore::open(root.join("snapshots"))?,
            client: RegistryClient::new(opts)?,
            records: Mutex::new(()),
        }))
    }

    /// The snapshot dirs of an image, base first.
    pub fn snapshot_dirs(&self, record: &ImageRecord) -> Vec<PathBuf> {
        record
            .chain_ids
            .iter()
            .map(|c| self.snapshots.path(c))
            .collect()
    }

    /// Every image record.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            if let Ok(r) = serde_json::from_slice(&std::fs::read(&path)?) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Finds an image by id (full or hex prefix), tag reference or digest reference.
    pub fn resolve(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        let normal = Reference::parse(name).ok().map(|r| r.to_string());
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        Ok(self.list()?.into_iter().find(|r| {
            r.id == name
                || (hex.len() >= 12 && r.id.trim_start_matches("sha256:").starts_with(hex))
                || normal
                    .as_ref()
                    .is_some_and(|n| r.repo_tags.contains(n) || r.repo_digests.contains(n))
        }))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", id.trim_start_matches("sha256:")))
    }

    fn save(&self, r: &ImageRecord) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
        crate::shim::write_atomic(&self.record_path(&r.id), &json)?;
        Ok(())
    }

    /// Pulls `name`, unpacks its layers and records it; returns the record (id = config digest).
    /// `credentials` (from the CRI AuthConfig) take precedence over the docker config.json.
    pub async fn pull(
        &self,
        name: &str,
        credentials: Option<berth_image::auth::Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(name).map_err(berth_image::Error::from)?;
        let client = match credentials {
            None => self.client.clone(),
            Some(c) => {
                let mut auth = berth_image::auth::AuthConfig::from_environment();
                auth.explicit.insert(reference.registry().to_string(), c);
                RegistryClient::new(berth_image::ClientOptions {
                    insecure: self.insecure.clone(),
                    auth,
                    ..Default::default()
                })?
            }
        };
        let pulled = client.pull_image(&reference, &self.content, None).await?;
        let diff_ids: Vec<String> = pulled.config.rootfs().diff_ids().clone();
        if diff_ids.len() != pulled.layers.len() {
            return Err(ImageError::LayerCount {
                diff_ids: diff_ids.len(),
                layers: pulled.layers.len(),
            });
        }
        let chains = chain_ids(&diff_ids);
        for ((layer, diff_id), chain) in pulled.layers.iter().zip(&diff_ids).zip(&chains) {
            if self.snapshots.exists(chain) {
                continue;
            }
            let compression =
                Compression::from_media_type(&layer.media_type).map_err(SnapshotError::from)?;
            let blob = self.content.path(&layer.digest);
            let (snaps, chain, diff_id) = (self.snapshots.clone(), chain.clone(), diff_id.clone());
            tokio::task::spawn_blocking(move || snaps.unpack(&chain, &diff_id, compression, &blob))
                .await
                .map_err(io::Error::other)??;
        }
        let id = pulled.config_digest.to_string();
        let _guard = self.records.lock().await;
        let mut record = self.resolve(&id)?.unwrap_or(ImageRecord {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            manifest: pulled.manifest_digest.to_string(),
            layers: pulled.layers.iter().map(|l| l.digest.to_string()).collect(),
            chain_ids: chains,
            size: pulled.layers.iter().map(|l| l.size).sum::<u64>() + pulled.manifest.config.size,
            config: pulled.config.clone(),
        });
        let digest_ref = format!("{}@{}", reference.name(), pulled.manifest_digest);
        if !record.repo_digests.contains(&digest_ref) {
            record.repo_digests.push(digest_ref);
        }
        if reference.tag().is_some() && reference.digest().is_none() {
            let tag = reference.to_string();
            // A tag names one image: take it away from whichever image had it before.
            for mut other in self
                .list()?
                .into_iter()
                .filter(|o| o.id != id && o.repo_tags.contains(&tag))
            {
                other.repo_tags.retain(|t| t != &tag);
                self.save(&other)?;
            }
            if !record.repo_tags.contains(&tag) {
                record.repo_tags.push(tag);
            }
        }
        self.save(&record)?;
        Ok(record)
    }

    /// Removes an image and frees content and snapshots no other image uses. Missing is fine.
    pub async fn remove(&self, name: &str) -> Result<(), ImageError> {
        let _guard = self.records.lock().await;
        let Some(record) = self.resolve(name)? else {
            return Ok(());
        };
        std::fs::remove_file(self.record_path(&record.id))?;
        let rest = self.list()?;
        let used_chains: HashSet<&String> = rest.iter().flat_map(|r| &r.chain_ids).collect();
        let used_blobs: HashSet<&String> = rest
            .iter()
            .flat_map(|r| r.layers.iter().chain([&r.manifest, &r.id]))
            .collect();
        for chain in record.chain_ids.iter().filter(|c| !used_chains.contains(c)) {
            self.snapshots.remove(chain)?;
        }
        for blob in record
            .layers
            .iter()
            .chain([&record.manifest, &record.id])
            .filter(|b| !used_blobs.contains(b))
        {
            if let Ok(d) = Digest::parse(blob) {
                let _ = self.content.delete(&d);
            }
        }
        Ok(())
    }

    /// Bytes and inodes used under the content and snapshot dirs (for ImageFsInfo).
    pub fn usage(&self) -> (u64, u64) {
        fn walk(p: &Path, acc: &mut (u64, u64)) {
            let Ok(rd) = std::fs::read_dir(p) else { return };
            for e in rd.flatten() {
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                acc.0 += m.len();
                acc.1 += 1;
                if m.is_dir() {
                    walk(&e.path(), acc);
                }
            }
        }
        let mut acc = (0, 0);
        walk(self.content.root(), &mut acc);
        walk(&self.dir.with_file_name("snapshots"), &mut acc);
        acc
    }

    /// The directory images are stored under (for ImageFsInfo's mountpoint).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

//! Content-addressed storage on disk, under `DIR/registry/`:
//!
//! ```text
//! blobs/<alg>/<hex>                         blob and manifest bytes, by digest
//! uploads/<uuid>                            upload staging (cleared on open)
//! quarantine/<alg>-<hex>-<nanos>            blobs found corrupt, kept for inspection
//! repos/<name>/_layers/<alg>/<hex>          empty: repo <name> may read blob <digest>
//! repos/<name>/_manifests/<alg>/<hex>       manifest in repo; content = its media type
//! repos/<name>/_tags/<tag>                  content = manifest digest
//! repos/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   index: manifests whose subject is <digest>
//! ```
//!
//! Names of repositories never start with `_`, so the `_` directories cannot collide with nested
//! repositories, and tags never start with `.`, so `.tmp-*` files cannot collide with tags.
//! Every visible file appears by `rename`, so an interrupted write leaves nothing visible.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use berth_oci::digest::{Algorithm, Digest};
use berth_oci::reference::{RepoName, Tag};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Content did not hash to the digest it was stored or announced under.
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// What the client claimed.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A stored blob no longer matches its digest; it was moved to quarantine.
    #[error("stored blob {0} is corrupt and was quarantined")]
    Corrupt(Digest),
    /// File system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Size and modification time of a blob file when it was last found to match its digest.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: SystemTime,
}

/// The registry's on-disk store.
pub struct Storage {
    root: PathBuf,
    /// Blobs whose content was hashed (on upload or on first read) and found valid, so reads need
    /// not hash them again; any change to the file changes its stamp and forces a new check.
    verified: Mutex<HashMap<Digest, Stamp>>,
}

impl Storage {
    /// Opens (creating if needed) the store rooted at `root` (normally `DIR/registry`), dropping
    /// staging files of uploads a previous process left unfinished.
    pub fn open(root: &Path) -> io::Result<Self> {
        for dir in ["blobs", "repos", "quarantine"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let uploads = root.join("uploads");
        if uploads.exists() {
            std::fs::remove_dir_all(&uploads)?;
        }
        std::fs::create_dir_all(&uploads)?;
        Ok(Storage {
            root: root.to_path_buf(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bytes of `digest` live.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    /// The staging file of upload `id`.
    pub fn upload_path(&self, id: &uuid::Uuid) -> PathBuf {
        self.root.join("uploads").join(id.to_string())
    }

    fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        self.root.join("repos").join(repo.as_str())
    }

    fn layer_link(&self, repo: &RepoName, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    fn manifest_link(&self, repo: &RepoName, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    fn tags_dir(&self, repo: &RepoName) -> PathBuf {
        self.repo_dir(repo).join("_tags")
    }

    fn referrers_dir(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().name())
            .join(subject.hex())
    }

    /// Moves a fully written and already verified staging file into place as blob `d`.
    pub async fn commit_blob(&self, staging: &Path, d: &Digest) -> io::Result<()> {
        let dest = self.blob_path(d);
        if tokio::fs::try_exists(&dest).await? && self.stat_if_verified(d).await.is_some() {
            // Same content already stored and known good: keep it, drop the copy.
            tokio::fs::remove_file(staging).await?;
            return Ok(());
        }
        create_parent(&dest).await?;
        // No fsync: a blob torn by a crash fails verification on its next read and is quarantined.
        tokio::fs::rename(staging, &dest).await?;
        self.remember_verified(d, &dest).await;
        Ok(())
    }

    async fn remember_verified(&self, d: &Digest, path: &Path) {
        if let Ok(stamp) = stamp_of(path).await {
            lock(&self.verified).insert(d.clone(), stamp);
        }
    }

    /// The size of blob `d` if present and recorded as verified with its current stamp.
    async fn stat_if_verified(&self, d: &Digest) -> Option<u64> {
        let stamp = stamp_of(&self.blob_path(d)).await.ok()?;
        let known = lock(&self.verified).get(d).copied();
        (known == Some(stamp)).then_some(stamp.len)
    }

    /// Size of blob `d`, after checking its content matches its digest (hashing it unless it was
    /// verified before and is unchanged). `None` if absent; a corrupt blob is quarantined and
    /// reported as [`StorageError::Corrupt`], so it is never served as valid.
    pub async fn verified_blob_size(&self, d: &Digest) -> Result<Option<u64>, StorageError> {
        if let Some(len) = self.stat_if_verified(d).await {
            return Ok(Some(len));
        }
        let path = self.blob_path(d);
        if !tokio::fs::try_exists(&path).await? {
            return Ok(None);
        }
        let (p, alg) = (path.clone(), d.algorithm());
        let actual = tokio::task::spawn_blocking(move || hash_file(&p, alg))
            .await
            .map_err(io::Error::other)??;
        if &actual != d {
            self.quarantine(d).await?;
            return Err(StorageError::Corrupt(d.clone()));
        }
        self.remember_verified(d, &path).await;
        Ok(stamp_of(&path).await.ok().map(|s| s.len))
    }

    async fn quarantine(&self, d: &Digest) -> io::Result<()> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|t| t.as_nanos())
            .unwrap_or(0);
        let dest = self.root.join("quarantine").join(format!(
            "{}-{}-{nanos}",
            d.algorithm().name(),
            d.hex()
        ));
        tracing::error!(digest = %d, to = %dest.display(), "stored blob does not match its digest; quarantined");
        lock(&self.verified).remove(d);
        tokio::fs::rename(self.blob_path(d), dest).await
    }

    /// Lets `repo` read blob `d`.
    pub async fn link_blob(&self, repo: &RepoName, d: &Digest) -> io::Result<()> {
        write_atomic(&self.layer_link(repo, d), b"").await
    }

    /// Whether `repo` may read blob `d` and the blob exists.
    pub async fn repo_has_blob(&self, repo: &RepoName, d: &Digest) -> bool {
        exists(&self.layer_link(repo, d)).await && exists(&self.blob_path(d)).await
    }

    /// Removes `repo`'s link to blob `d` (the bytes go at the next GC); false if it had none.
    pub async fn unlink_blob(&self, repo: &RepoName, d: &Digest) -> io::Result<bool> {
        remove_if_exists(&self.layer_link(repo, d)).await
    }

    /// Stores manifest bytes under `d` in `repo` with its media type, and indexes its subject.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        d: &Digest,
        bytes: &[u8],
        media_type: &str,
        subject: Option<&Digest>,
    ) -> io::Result<()> {
        let path = self.blob_path(d);
        if !exists(&path).await {
            write_atomic(&path, bytes).await?;
            self.remember_verified(d, &path).await;
        }
        if let Some(s) = subject {
            let entry =
                self.referrers_dir(repo, s)
                    .join(format!("{}-{}", d.algorithm().name(), d.hex()));
            write_atomic(&entry, b"").await?;
        }
        write_atomic(&self.manifest_link(repo, d), media_type.as_bytes()).await
    }

    /// The bytes and media type of manifest `d` in `repo`, verified against the digest.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<Option<(Vec<u8>, String)>, StorageError> {
        let media_type = match tokio::fs::read_to_string(self.manifest_link(repo, d)).await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let bytes = match tokio::fs::read(self.blob_path(d)).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if &Digest::of_with(d.algorithm(), &bytes) != d {
            self.quarantine(d).await?;
            return Err(StorageError::Corrupt(d.clone()));
        }
        Ok(Some((bytes, media_type)))
    }

    /// Whether `repo` has manifest `d`.
    pub async fn has_manifest(&self, repo: &RepoName, d: &Digest) -> bool {
        exists(&self.manifest_link(repo, d)).await
    }

    /// Removes manifest `d` from `repo`, with every tag pointing at it and its referrers entry.
    /// False if the repo did not have it.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        d: &Digest,
        subject: Option<&Digest>,
    ) -> io::Result<bool> {
        if !remove_if_exists(&self.manifest_link(repo, d)).await? {
            return Ok(false);
        }
        for tag in self.tags(repo).await?.unwrap_or_default() {
            if let Some(t) = Tag::parse(&tag)
                && self.resolve_tag(repo, &t).await?.as_ref() == Some(d)
            {
                self.delete_tag(repo, &t).await?;
            }
        }
        if let Some(s) = subject {
            let entry =
                self.referrers_dir(repo, s)
                    .join(format!("{}-{}", d.algorithm().name(), d.hex()));
            remove_if_exists(&entry).await?;
        }
        Ok(true)
    }

    /// The digest tag `t` points at, if any.
    pub async fn resolve_tag(&self, repo: &RepoName, t: &Tag) -> io::Result<Option<Digest>> {
        match tokio::fs::read_to_string(self.tags_dir(repo).join(t.as_str())).await {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Points tag `t` at `d` (atomically replacing the old target).
    pub async fn set_tag(&self, repo: &RepoName, t: &Tag, d: &Digest) -> io::Result<()> {
        write_atomic(
            &self.tags_dir(repo).join(t.as_str()),
            d.to_string().as_bytes(),
        )
        .await
    }

    /// Removes tag `t`; false if it did not exist.
    pub async fn delete_tag(&self, repo: &RepoName, t: &Tag) -> io::Result<bool> {
        remove_if_exists(&self.tags_dir(repo).join(t.as_str())).await
    }

    /// Whether `repo` exists (anything was ever pushed to it).
    pub async fn repo_exists(&self, repo: &RepoName) -> bool {
        exists(&self.repo_dir(repo)).await
    }

    /// The tags of `repo`, sorted; `None` if the repository is unknown.
    pub async fn tags(&self, repo: &RepoName) -> io::Result<Option<Vec<String>>> {
        if !self.repo_exists(repo).await {
            return Ok(None);
        }
        let mut tags = list_names(&self.tags_dir(repo)).await?;
        tags.retain(|t| !t.starts_with('.'));
        tags.sort();
        Ok(Some(tags))
    }

    /// Every repository name, sorted.
    pub async fn repositories(&self) -> io::Result<Vec<String>> {
        let root = self.root.join("repos");
        let mut out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk_repos(&root, "", &mut out).map(|()| out)
        })
        .await
        .map_err(io::Error::other)??;
        out.sort();
        Ok(out)
    }

    /// Manifest digests in `repo` whose subject is `subject`.
    pub async fn referrers(&self, repo: &RepoName, subject: &Digest) -> io::Result<Vec<Digest>> {
        let names = list_names(&self.referrers_dir(repo, subject)).await?;
        Ok(names
            .iter()
            .filter_map(|n| n.split_once('-'))
            .filter_map(|(alg, hex)| format!("{alg}:{hex}").parse().ok())
            .collect())
    }

    /// Manifest digests of `repo` (for garbage collection).
    pub fn manifest_digests_blocking(&self, repo: &str) -> io::Result<Vec<Digest>> {
        let dir = self.root.join("repos").join(repo).join("_manifests");
        digests_under(&dir)
    }

    /// Blob links of `repo` (for garbage collection).
    pub fn layer_links_blocking(&self, repo: &str) -> io::Result<Vec<(Digest, PathBuf)>> {
        let dir = self.root.join("repos").join(repo).join("_layers");
        Ok(digests_under(&dir)?
            .into_iter()
            .map(|d| {
                let p = dir.join(d.algorithm().name()).join(d.hex());
                (d, p)
            })
            .collect())
    }

    /// Every stored blob digest (for garbage collection).
    pub fn blob_digests_blocking(&self) -> io::Result<Vec<Digest>> {
        digests_under(&self.root.join("blobs"))
    }

    /// Every repository name, without a runtime (for garbage collection).
    pub fn repositories_blocking(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        walk_repos(&self.root.join("repos"), "", &mut out)?;
        Ok(out)
    }
}

/// Digests stored as `<dir>/<alg>/<hex>` files.
fn digests_under(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let sub = dir.join(alg.name());
        let entries = match std::fs::read_dir(&sub) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Ok(d) = format!("{}:{}", alg.name(), name.to_string_lossy()).parse() {
                out.push(d);
            }
        }
    }
    Ok(out)
}

/// A directory is a repository if it has a `_layers`, `_manifests` or `_tags` child; other
/// (non-underscore) children are walked as nested names.
fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut is_repo = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') {
            is_repo = true;
        } else if entry.file_type()?.is_dir() {
            let child = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            walk_repos(&entry.path(), &child, out)?;
        }
    }
    if is_repo && !prefix.is_empty() {
        out.push(prefix.to_string());
    }
    Ok(())
}

/// The digest of a file's content, read in 1 MiB pieces.
pub fn hash_file(path: &Path, alg: Algorithm) -> io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = alg.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

async fn stamp_of(path: &Path) -> io::Result<Stamp> {
    let m = tokio::fs::metadata(path).await?;
    Ok(Stamp {
        len: m.len(),
        mtime: m.modified()?,
    })
}

async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}

async fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => tokio::fs::create_dir_all(p).await,
        None => Ok(()),
    }
}

/// Writes `bytes` to a temp file beside `path`, then renames it over `path`.
pub async fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_parent(path).await?;
    let tmp = path.with_file_name(format!(".tmp-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&tmp, bytes).await?;
    if let Err(e) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    Ok(())
}

async fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

async fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut rd = match tokio::fs::read_dir(dir).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    while let Some(e) = rd.next_entry().await? {
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Locks a std mutex, tolerating poisoning (the guarded maps stay consistent per operation).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

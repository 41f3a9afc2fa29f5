//! The content store: blobs addressed by digest under `ROOT/blobs/sha256/<hex>`.
//!
//! Writers stream into a unique temp file under `ROOT/ingest` while hashing, and only a blob whose
//! hash matches is renamed into place. Rename is atomic, and two writers of the same digest write
//! identical bytes, so concurrent writers never expose a partial or wrong blob. Within a process
//! [`ContentStore::lock`] additionally lets concurrent fetchers of one digest share one download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use berth_oci::digest::{Digest, Hasher};

/// A directory of blobs by digest. Cheap to clone (shared lock table).
#[derive(Clone)]
pub struct ContentStore {
    root: PathBuf,
    locks: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Distinguishes temp files of concurrent writers in one process.
static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating if needed) a content store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in [root.join("blobs/sha256"), root.join("ingest")] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io("create", &d, e))?;
        }
        Ok(ContentStore {
            root,
            locks: Arc::default(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The blob's size, if present.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let p = self.path(digest);
        std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|_| Error::BlobNotFound(digest.to_string()))
    }

    /// Opens the blob for streaming reads.
    pub async fn open_blob(&self, digest: &Digest) -> Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(digest))
            .await
            .map_err(|_| Error::BlobNotFound(digest.to_string()))
    }

    /// Reads a whole (small) blob, e.g. a manifest or config.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        std::fs::read(self.path(digest)).map_err(|_| Error::BlobNotFound(digest.to_string()))
    }

    /// Stores `data`, returning its digest.
    pub fn write_bytes(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if self.exists(&digest) {
            return Ok(digest);
        }
        let tmp = self.ingest_path();
        std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
        self.commit_file(&tmp, &digest)?;
        Ok(digest)
    }

    /// Starts a streaming write; `expected` (if known) is verified on commit.
    pub async fn writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        let tmp = self.ingest_path();
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::io("create", &tmp, e))?;
        // Network chunks are small; buffering saves a blocking-pool hop per chunk.
        let file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            file: Some(file),
            hasher: Hasher::new(),
            size: 0,
            expected,
        })
    }

    /// Streams `reader` into the store, verifying against `expected` if given.
    pub async fn write_stream(
        &self,
        expected: Option<Digest>,
        mut reader: impl AsyncRead + Unpin,
    ) -> Result<(Digest, u64)> {
        let mut w = self.writer(expected).await?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| Error::io("read", "stream", e))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).await?;
        }
        w.commit().await
    }

    /// Deletes a blob; deleting a missing blob is not an error.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.path(digest);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &p, e)),
            _ => Ok(()),
        }
    }

    /// Lists all blob digests (sorted).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
        let mut out: Vec<Digest> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// A per-digest async lock: hold it while fetching a blob so that concurrent fetches of the
    /// same digest in this process wait for the first one and then find the blob present.
    pub async fn lock(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            // Poisoning only happens if a holder panicked; the map itself stays valid.
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(digest.clone()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// A fresh temp path inside the store (same file system, so it can be renamed in).
    pub fn ingest_path(&self) -> PathBuf {
        let n = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("ingest")
            .join(format!("{}-{}", std::process::id(), n))
    }

    /// Moves a finished temp file (from [`ContentStore::ingest_path`]) into place after
    /// re-hashing it; a mismatch keeps nothing.
    pub fn commit_verified(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let mut f = std::fs::File::open(tmp).map_err(|e| Error::io("open", tmp, e))?;
        let mut h = Hasher::new();
        std::io::copy(&mut f, &mut h).map_err(|e| Error::io("read", tmp, e))?;
        let actual = Digest::from_hasher(h);
        if actual != *digest {
            let _ = std::fs::remove_file(tmp);
            return Err(Error::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.commit_file(tmp, digest)
    }

    fn commit_file(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let dst = self.path(digest);
        std::fs::rename(tmp, &dst).map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            Error::io("rename", &dst, e)
        })
    }
}

/// A blob being written; dropped without [`BlobWriter::commit`] it leaves nothing behind.
pub struct BlobWriter {
    store: ContentStore,
    tmp: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Hasher,
    size: u64,
    expected: Option<Digest>,
}

impl BlobWriter {
    /// Appends bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        match self.file.as_mut() {
            Some(f) => f
                .write_all(data)
                .await
                .map_err(|e| Error::io("write", &self.tmp, e)),
            None => Err(Error::io(
                "write",
                &self.tmp,
                std::io::Error::other("writer already committed"),
            )),
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies the digest and moves the blob into place; on mismatch nothing is kept.
    pub async fn commit(mut self) -> Result<(Digest, u64)> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::io("commit", &self.tmp, std::io::Error::other("no file")))?;
        file.flush()
            .await
            .map_err(|e| Error::io("flush", &self.tmp, e))?;
        let file = file.into_inner();
        file.sync_all()
            .await
            .map_err(|e| Error::io("sync", &self.tmp, e))?;
        drop(file);
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(expected) = &self.expected
            && *expected != actual
        {
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        self.store.commit_file(&self.tmp, &actual)?;
        Ok((actual, self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful commit the temp file was renamed away and this is a no-op.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stream_write_verifies_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = vec![7u8; 1_000_000];
        let want = Digest::of(&data);
        let (d, n) = store
            .write_stream(Some(want.clone()), &data[..])
            .await
            .unwrap();
        assert_eq!((d.clone(), n), (want.clone(), 1_000_000));
        assert!(store.exists(&d));
        assert_eq!(store.read(&d).unwrap(), data);
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        store.delete(&d).unwrap();
        assert!(!store.exists(&d));
        assert!(store.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn digest_mismatch_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let wrong = Digest::of(b"something else");
        let err = store
            .write_stream(Some(wrong.clone()), &b"actual bytes"[..])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!store.exists(&wrong));
        assert!(!store.exists(&Digest::of(b"actual bytes")));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn concurrent_writers_of_one_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let want = Digest::of(&data);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (s, d, w) = (store.clone(), data.clone(), want.clone());
            tasks.push(tokio::spawn(async move {
                s.write_stream(Some(w), &d[..]).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().0, want);
        }
        assert_eq!(store.read(&want).unwrap(), data);
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }
}

//! The local image store: a [`ContentStore`] plus a name -> manifest index (`names.json`).
//!
//! Names are normalised references (`localhost:5000/churn-model:v1`). Removing a name frees every
//! blob no remaining name reaches (manifest, its config and layers, and an index's children).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::ContentStore;
use berth_oci::Reference;
use berth_oci::digest::Digest;
use berth_oci::manifest::{Document, Manifest};

/// One tagged image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageEntry {
    /// Digest of the image manifest.
    pub manifest: Digest,
}

/// Local images under a directory.
pub struct LocalImages {
    dir: PathBuf,
    store: ContentStore,
}

impl LocalImages {
    /// Opens (creating) the store at `dir` (e.g. `DATA_DIR/images`).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let store = ContentStore::open(&dir)?;
        Ok(LocalImages { dir, store })
    }

    /// The content store holding the blobs.
    pub fn content(&self) -> &ContentStore {
        &self.store
    }

    fn names_path(&self) -> PathBuf {
        self.dir.join("names.json")
    }

    /// All names, sorted.
    pub fn list(&self) -> Result<BTreeMap<String, ImageEntry>> {
        let p = self.names_path();
        match std::fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| Error::json(p.display().to_string(), e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    fn save(&self, names: &BTreeMap<String, ImageEntry>) -> Result<()> {
        let p = self.names_path();
        let tmp = self
            .dir
            .join(format!("names.json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(names).map_err(|e| Error::json("names", e))?;
        std::fs::write(&tmp, bytes).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io("rename", &p, e))
    }

    /// Runs a read-modify-write of `names.json` under an exclusive file lock, so that
    /// concurrent berth processes (parallel pulls, builds) don't lose each other's names.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let p = self.dir.join("names.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io("open", &p, e))?;
        file.lock().map_err(|e| Error::io("lock", &p, e))?;
        let out = f();
        // Closing the file releases the lock as well; unlocking first just makes it explicit.
        let _ = file.unlock();
        out
    }

    /// Points `name` at a manifest already in the content store.
    pub fn tag(&self, name: &Reference, manifest: &Digest) -> Result<()> {
        if !self.store.exists(manifest) {
            return Err(Error::BlobNotFound(manifest.to_string()));
        }
        self.locked(|| {
            let mut names = self.list()?;
            names.insert(
                name.to_string(),
                ImageEntry {
                    manifest: manifest.clone(),
                },
            );
            self.save(&names)
        })
    }

    /// Resolves a name (or a pinned digest / image-ID prefix) to its manifest digest.
    pub fn resolve(&self, name: &str) -> Result<Digest> {
        let names = self.list()?;
        if let Ok(r) = Reference::parse(name) {
            if let Some(e) = names.get(&r.to_string()) {
                return Ok(e.manifest.clone());
            }
            if let Some(d) = r.digest()
                && self.store.exists(d)
            {
                return Ok(d.clone());
            }
        }
        Err(Error::ImageNotFound(name.to_string()))
    }

    /// The manifest with `digest`.
    pub fn manifest(&self, digest: &Digest) -> Result<Manifest> {
        match Document::parse(&self.store.read(digest)?, None)? {
            Document::Manifest(m) => Ok(m),
            Document::Index(_) => Err(Error::Manifest(format!("{digest} is an index"))),
        }
    }

    /// Removes a name and frees blobs nothing else references; returns the freed digests.
    pub fn remove(&self, name: &str) -> Result<Vec<Digest>> {
        let key = Reference::parse(name)
            .map(|r| r.to_string())
            .map_err(|_| Error::ImageNotFound(name.to_string()))?;
        self.locked(|| {
            let mut names = self.list()?;
            if names.remove(&key).is_none() {
                return Err(Error::ImageNotFound(name.to_string()));
            }
            self.save(&names)?;
            self.gc(&names)
        })
    }

    /// Deletes blobs unreachable from `names`.
    fn gc(&self, names: &BTreeMap<String, ImageEntry>) -> Result<Vec<Digest>> {
        let mut keep = BTreeSet::new();
        for e in names.values() {
            self.mark(&e.manifest, &mut keep);
        }
        let mut freed = Vec::new();
        for d in self.store.list()? {
            if !keep.contains(&d) {
                self.store.delete(&d)?;
                freed.push(d);
            }
        }
        Ok(freed)
    }

    fn mark(&self, d: &Digest, keep: &mut BTreeSet<Digest>) {
        if !keep.insert(d.clone()) {
            return;
        }
        let Ok(bytes) = self.store.read(d) else {
            return;
        };
        match Document::parse(&bytes, None) {
            Ok(Document::Manifest(m)) => {
                keep.insert(m.config.digest);
                keep.extend(m.layers.into_iter().map(|l| l.digest));
            }
            Ok(Document::Index(i)) => i.manifests.iter().for_each(|c| self.mark(&c.digest, keep)),
            Err(_) => {}
        }
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_tags_are_all_kept_and_rmi_frees_only_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let images = std::sync::Arc::new(LocalImages::open(dir.path()).unwrap());
        let config = images.content().write_bytes(b"{}").unwrap();
        let layer = images.content().write_bytes(b"layer").unwrap();
        let desc = |d: &Digest, n: usize| berth_oci::manifest::Descriptor {
            media_type: "x".into(),
            digest: d.clone(),
            size: n as u64,
            platform: None,
            annotations: Default::default(),
        };
        let m = berth_oci::manifest::Manifest {
            schema_version: 2,
            media_type: None,
            config: desc(&config, 2),
            layers: vec![desc(&layer, 5)],
            annotations: Default::default(),
        };
        let md = images
            .content()
            .write_bytes(&serde_json::to_vec(&m).unwrap())
            .unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (images, md) = (images.clone(), md.clone());
                std::thread::spawn(move || {
                    images
                        .tag(&Reference::parse(&format!("img:{i}")).unwrap(), &md)
                        .unwrap()
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(images.list().unwrap().len(), 16);
        let stray = images.content().write_bytes(b"unreferenced").unwrap();
        for i in 0..15 {
            assert_eq!(
                images.remove(&format!("img:{i}")).unwrap(),
                vec![stray.clone()]
                    .into_iter()
                    .filter(|_| i == 0)
                    .collect::<Vec<_>>()
            );
        }
        assert!(images.content().exists(&layer));
        let mut freed = images.remove("img:15").unwrap();
        freed.sort();
        let mut want = vec![md, config, layer];
        want.sort();
        assert_eq!(freed, want);
        assert!(images.remove("img:15").is_err());
    }
}

//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/...`).
//!
//! A layout's `blobs` tree has the same shape as a [`ContentStore`], so a layout *is* a content
//! store plus an index naming its manifests with `org.opencontainers.image.ref.name`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::ContentStore;
use berth_oci::digest::Digest;
use berth_oci::manifest::{Descriptor, Document, Index};
use berth_oci::media::{OCI_INDEX, OCI_MANIFEST};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Copies the image `manifest` (and its blobs) from `src` into the layout at `dir` under `tag`.
pub fn export(src: &ContentStore, manifest: &Digest, dir: &Path, tag: &str) -> Result<()> {
    let dst = ContentStore::open(dir)?;
    let bytes = src.read(manifest)?;
    let Document::Manifest(m) = Document::parse(&bytes, None)? else {
        return Err(Error::Manifest(
            "only image manifests can be exported".into(),
        ));
    };
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        if !dst.exists(&d.digest) {
            std::fs::copy(src.path(&d.digest), dst.path(&d.digest))
                .map_err(|e| Error::io("copy", src.path(&d.digest), e))?;
        }
    }
    dst.write_bytes(&bytes)?;
    let _ = std::fs::remove_dir(dir.join("ingest"));
    let oci_layout = dir.join("oci-layout");
    std::fs::write(&oci_layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| Error::io("write", &oci_layout, e))?;
    let mut index = read_index(dir).unwrap_or(Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: vec![],
        annotations: BTreeMap::new(),
    });
    index
        .manifests
        .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
    let mut annotations = BTreeMap::new();
    annotations.insert(REF_NAME.to_string(), tag.to_string());
    index.manifests.push(Descriptor {
        media_type: m.media_type.clone().unwrap_or_else(|| OCI_MANIFEST.into()),
        digest: manifest.clone(),
        size: bytes.len() as u64,
        platform: None,
        annotations,
    });
    let p = dir.join("index.json");
    let b = serde_json::to_vec(&index).map_err(|e| Error::json("index.json", e))?;
    std::fs::write(&p, b).map_err(|e| Error::io("write", &p, e))
}

/// Reads a layout's `index.json`.
pub fn read_index(dir: &Path) -> Result<Index> {
    let p = dir.join("index.json");
    let b = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    serde_json::from_slice(&b).map_err(|e| Error::json(p.display().to_string(), e))
}

/// Copies the manifest tagged `tag` (or the only one, if `tag` is None) and its blobs from the
/// layout at `dir` into `dst`, verifying every blob's digest; returns the manifest digest.
pub async fn import(dir: &Path, tag: Option<&str>, dst: &ContentStore) -> Result<Digest> {
    let index = read_index(dir)?;
    let chosen = match tag {
        Some(t) => index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t)),
        None if index.manifests.len() == 1 => index.manifests.first(),
        None => None,
    }
    .ok_or_else(|| Error::Manifest(format!("no manifest {tag:?} in {}", dir.display())))?;
    let blobs = dir.join("blobs/sha256");
    let copy = |d: Digest| {
        let path = blobs.join(d.hex());
        async move {
            if dst.exists(&d) {
                return Ok(());
            }
            let f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::io("open", &path, e))?;
            dst.write_stream(Some(d), f).await.map(|_| ())
        }
    };
    copy(chosen.digest.clone()).await?;
    let Document::Manifest(m) = Document::parse(&dst.read(&chosen.digest)?, None)? else {
        return Err(Error::Manifest(
            "nested indexes in layouts are not supported".into(),
        ));
    };
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        copy(d.digest.clone()).await?;
    }
    Ok(chosen.digest.clone())
}

//! `docker save`-style archives: a tar holding an OCI layout plus Docker's `manifest.json`
//! (`[{Config, RepoTags, Layers}]`), the format `docker save` writes since Docker 25 and
//! `docker load` / `skopeo docker-archive:` read.

use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::ContentStore;
use berth_oci::digest::Digest;
use berth_oci::manifest::{Descriptor, Document, Manifest};
use berth_oci::media;

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Writes the image `manifest` from `store` as a docker archive at `path`, tagged `tags`.
pub fn save(
    store: &ContentStore,
    manifest_digest: &Digest,
    tags: &[String],
    path: &Path,
) -> Result<()> {
    let bytes = store.read(manifest_digest)?;
    let Document::Manifest(m) = Document::parse(&bytes, None)? else {
        return Err(Error::Manifest("only image manifests can be saved".into()));
    };
    let blob_name = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let entry = SaveEntry {
        config: blob_name(&m.config.digest),
        repo_tags: tags.to_vec(),
        layers: m.layers.iter().map(|l| blob_name(&l.digest)).collect(),
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": m.media_type.clone().unwrap_or_else(|| media::OCI_MANIFEST.into()), "digest": manifest_digest, "size": bytes.len(),
                       "annotations": tags.first().map(|t| serde_json::json!({"io.containerd.image.name": t})).unwrap_or_default()}]
    });
    let file = std::fs::File::create(path).map_err(|e| Error::io("create", path, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let io = |e| Error::io("write archive", path, e);
    let mut add = |name: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, name, data).map_err(io)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &to_json(&index)?)?;
    add("manifest.json", &to_json(&vec![entry])?)?;
    add(&blob_name(manifest_digest), &bytes)?;
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        let mut f = std::fs::File::open(store.path(&d.digest))
            .map_err(|_| Error::BlobNotFound(d.digest.to_string()))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(d.size);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, blob_name(&d.digest), (&mut f).take(d.size))
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)?;
    Ok(())
}

/// Reads a docker archive (`docker save`, either format) into `store`: every layer and config
/// is stored under its digest, and an OCI manifest is written for the first image (legacy
/// archives' layers are uncompressed tars, so they get the plain tar media type). Returns the
/// manifest digest and the archive's tags.
pub fn load(path: &Path, store: &ContentStore) -> Result<(Digest, Vec<String>)> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create", "temp dir", e))?;
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    tar::Archive::new(f)
        .unpack(dir.path())
        .map_err(|e| Error::io("unpack", path, e))?;
    let mf = dir.path().join("manifest.json");
    let raw = std::fs::read(&mf).map_err(|e| Error::io("read", &mf, e))?;
    let entries: Vec<SaveEntry> =
        serde_json::from_slice(&raw).map_err(|e| Error::json("manifest.json", e))?;
    let entry = entries
        .into_iter()
        .next()
        .ok_or_else(|| Error::Manifest("empty docker archive".into()))?;
    let add = |rel: &str, media: &str| -> Result<Descriptor> {
        let p = dir.path().join(rel);
        let (digest, size) = store_file(store, &p)?;
        Ok(Descriptor {
            media_type: media.into(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        })
    };
    let config = add(&entry.config, media::OCI_CONFIG)?;
    let layers = entry
        .layers
        .iter()
        .map(|l| {
            let gz = std::fs::File::open(dir.path().join(l))
                .ok()
                .and_then(|mut f| {
                    let mut magic = [0u8; 2];
                    f.read_exact(&mut magic).ok().map(|_| magic == [0x1f, 0x8b])
                });
            add(
                l,
                if gz == Some(true) {
                    media::OCI_LAYER_GZIP
                } else {
                    "application/vnd.oci.image.layer.v1.tar"
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config,
        layers,
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| Error::json("manifest", e))?;
    Ok((store.write_bytes(&bytes)?, entry.repo_tags))
}

/// Hashes a file and moves a copy of it into the store.
fn store_file(store: &ContentStore, p: &Path) -> Result<(Digest, u64)> {
    let tmp = store.ingest_path();
    let size = std::fs::copy(p, &tmp).map_err(|e| Error::io("copy", p, e))?;
    let mut h = berth_oci::digest::Hasher::new();
    let mut f = std::fs::File::open(&tmp).map_err(|e| Error::io("open", &tmp, e))?;
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io("read", &tmp, e))?;
    let digest = h.finish();
    store.commit_verified(&tmp, &digest)?;
    Ok((digest, size))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::json("archive json", e))
}

//! Synthetic images of random layers, for benchmarks (`berth bench image`, `berth bench
//! registry`) and tests.
//!
//! The layer bytes are pseudo-random, so they do not compress; they are wrapped in gzip with
//! compression level 0 (stored blocks) so that the layers are valid `tar+gzip` blobs by media
//! type while costing no CPU to produce, and clients that copy blobs as they are (skopeo, berth)
//! measure transport, not a compressor. The layer content is not a tar archive: nothing here
//! unpacks it, and registries never look inside layers.

use std::io::Write as _;
use std::path::Path;

use berth_image::{ContentStore, Digest};
use flate2::{Compression, GzBuilder};
use rand::rngs::SmallRng;
use rand::{RngCore as _, SeedableRng as _};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Why a synthetic image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The content store or layout refused a blob.
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    /// Compressing a layer failed.
    #[error("gzip of a random layer: {0}")]
    Gzip(#[from] std::io::Error),
    /// A config or manifest did not serialise.
    #[error("serialising the image {what}: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },
}

/// The result of this module's writers.
pub type Result<T> = std::result::Result<T, Error>;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Writes an image of `layers` random layers of `layer_size` uncompressed bytes each into
/// `store`; `seed` makes different images differ. Returns the manifest digest.
pub async fn random_image(
    store: &ContentStore,
    layers: u32,
    layer_size: u64,
    seed: u64,
) -> Result<Digest> {
    Ok(write_image(store, layers, layer_size, seed).await?.manifest)
}

/// Writes such an image as an OCI image layout at `dir`, tagged `tag`; returns the total size
/// of its blobs (layers, config and manifest).
pub async fn random_layout(
    dir: &Path,
    tag: &str,
    layers: u32,
    layer_size: u64,
    seed: u64,
) -> Result<u64> {
    // A layout's blob tree has a content store's shape: write straight into it, then export
    // (which finds every blob already there) adds `oci-layout` and `index.json`.
    let store = ContentStore::open(dir)?;
    let image = write_image(&store, layers, layer_size, seed).await?;
    berth_image::layout::export(&store, &image.manifest, dir, tag)?;
    Ok(image.bytes)
}

/// A written image: its manifest digest and the total size of its blobs.
struct Written {
    manifest: Digest,
    bytes: u64,
}

async fn write_image(
    store: &ContentStore,
    layers: u32,
    layer_size: u64,
    seed: u64,
) -> Result<Written> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut bytes = 0;
    for _ in 0..layers {
        let (digest, size, diff_id) = random_layer(store, layer_size, &mut rng).await?;
        descriptors.push(json!({
            "mediaType": OCI_LAYER_GZIP, "digest": digest.to_string(), "size": size,
        }));
        diff_ids.push(diff_id);
        bytes += size;
    }
    let config = json!({
        "architecture": berth_oci::manifest::host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = to_json("config", &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": store.write_bytes(&config)?.to_string(),
            "size": config.len(),
        },
        "layers": descriptors,
    });
    let manifest = to_json("manifest", &manifest)?;
    Ok(Written {
        manifest: store.write_bytes(&manifest)?,
        bytes: bytes + config.len() as u64 + manifest.len() as u64,
    })
}

fn to_json(what: &'static str, v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Json { what, source })
}

/// One layer, streamed into the store in 1 MiB pieces (never whole in memory). Returns its
/// digest, its size and its diff ID (the digest of the uncompressed bytes).
async fn random_layer(
    store: &ContentStore,
    size: u64,
    rng: &mut SmallRng,
) -> Result<(Digest, u64, String)> {
    let mut blob = store.writer(None).await?;
    // mtime 0 and no name keep the gzip header fixed.
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::none());
    let mut diff = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        // A fast non-cryptographic generator: its output does not compress, which is all we need.
        rng.fill_bytes(&mut chunk[..n]);
        diff.update(&chunk[..n]);
        gz.write_all(&chunk[..n])?;
        left -= n as u64;
        let out = std::mem::take(gz.get_mut());
        blob.write(&out).await?;
    }
    let out = gz.finish()?;
    blob.write(&out).await?;
    let (digest, size) = blob.commit().await?;
    Ok((
        digest,
        size,
        format!("sha256:{}", hex::encode(diff.finalize())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::manifest::Manifest;
    use std::io::Read as _;

    #[tokio::test]
    async fn layers_are_gzip_of_the_diff_ids_and_seeds_differ() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let a = random_image(&store, 2, 1_500_000, 1).await.unwrap();
        let b = random_image(&store, 2, 1_500_000, 2).await.unwrap();
        assert_ne!(a, b);
        let m: Manifest = serde_json::from_slice(&store.read(&a).unwrap()).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&store.read(&m.config.digest).unwrap()).unwrap();
        assert_eq!(m.layers.len(), 2);
        for (i, l) in m.layers.iter().enumerate() {
            assert!(store.size(&l.digest).unwrap() == l.size && l.size > 1_500_000);
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&store.read(&l.digest).unwrap()[..])
                .read_to_end(&mut raw)
                .unwrap();
            assert_eq!(raw.len(), 1_500_000);
            assert_eq!(
                config["rootfs"]["diff_ids"][i],
                Digest::of(&raw).to_string()
            );
        }
    }

    #[tokio::test]
    async fn a_random_layout_is_an_oci_layout_of_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = random_layout(dir.path(), "bench", 2, 200_000, 7)
            .await
            .unwrap();
        let index = berth_image::layout::read_index(dir.path()).unwrap();
        assert_eq!(index.manifests.len(), 1);
        assert!(dir.path().join("oci-layout").is_file());
        assert!(!dir.path().join("ingest").exists());
        let on_disk: u64 = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(bytes, on_disk);
    }
}

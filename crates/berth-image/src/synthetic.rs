//! Synthetic images of random layers, for benchmarks (`berth bench image`) and tests.
//!
//! The layer bytes are pseudo-random, so they do not compress; they are wrapped in gzip with
//! compression level 0 (stored blocks) so that the layers are valid `tar+gzip` blobs by media
//! type while costing no CPU to produce, and clients that copy blobs as they are (skopeo, berth)
//! measure transport, not a compressor. The layer content is not a tar archive: nothing here
//! unpacks it, and registries never look inside layers.

use flate2::{Compression, GzBuilder};
use serde_json::json;
use std::io::Write as _;

use crate::error::{Error, Result};
use crate::store::ContentStore;
use berth_oci::digest::{Digest, Hasher};
use berth_oci::manifest::{self, Descriptor, Manifest};
use berth_oci::media;

/// Writes an image of `layers` random layers of `layer_size` uncompressed bytes each into
/// `store`; `seed` makes different images differ. Returns the manifest digest.
pub async fn random_image(
    store: &ContentStore,
    layers: u32,
    layer_size: u64,
    seed: u64,
) -> Result<Digest> {
    let mut rng = SplitMix64(seed);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for _ in 0..layers {
        let (desc, diff_id) = random_layer(store, layer_size, &mut rng).await?;
        descriptors.push(desc);
        diff_ids.push(diff_id.to_string());
    }
    let config = json!({
        "architecture": manifest::host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).map_err(|e| Error::json("image config", e))?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: store.write_bytes(&config)?,
            size: config.len() as u64,
            platform: None,
            annotations: Default::default(),
        },
        layers: descriptors,
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| Error::json("manifest", e))?;
    store.write_bytes(&bytes)
}

/// One layer, streamed into the store in 1 MiB pieces (never whole in memory).
async fn random_layer(
    store: &ContentStore,
    size: u64,
    rng: &mut SplitMix64,
) -> Result<(Descriptor, Digest)> {
    let mut blob = store.writer(None).await?;
    // mtime 0 and no name keep the gzip header fixed.
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::none());
    let mut diff = Hasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill(&mut chunk[..n]);
        diff.update(&chunk[..n]);
        gz.write_all(&chunk[..n])
            .map_err(|e| Error::io("gzip", "layer", e))?;
        left -= n as u64;
        let out = std::mem::take(gz.get_mut());
        blob.write(&out).await?;
    }
    let out = gz.finish().map_err(|e| Error::io("gzip", "layer", e))?;
    blob.write(&out).await?;
    let (digest, size) = blob.commit().await?;
    let desc = Descriptor {
        media_type: media::OCI_LAYER_GZIP.into(),
        digest,
        size,
        platform: None,
        annotations: Default::default(),
    };
    Ok((desc, Digest::from_hasher(diff)))
}

/// A fast, non-cryptographic generator (SplitMix64); its output does not compress.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}

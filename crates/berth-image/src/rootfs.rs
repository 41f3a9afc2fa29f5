//! An image's root filesystem written out to a directory: every layer in order, whiteouts
//! applied, through berth-oci's confined unpacker (`berth pull --unpack`, `COPY --from`).

use std::path::Path;

use berth_oci::unpack::{self, Compression, Mode};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::local::LocalImages;
use crate::store::ContentStore;
use berth_oci::digest::Digest;
use berth_oci::manifest::Descriptor;

/// Unpacks the local image whose manifest is `manifest` into the existing directory `dest`.
pub fn unpack_image(images: &LocalImages, manifest: &Digest, dest: &Path) -> Result<()> {
    let m = images.manifest(manifest)?;
    let config: Value = serde_json::from_slice(&images.content().read(&m.config.digest)?)
        .map_err(|e| Error::json("image config", e))?;
    let diff_ids: Vec<String> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    unpack_layers(images.content(), &m.layers, &diff_ids, dest)
}

/// Applies `layers` (blobs in `store`, base first) onto `dest`. When `diff_ids` has one entry per
/// layer, each unpacked layer must hash to its diff id.
pub fn unpack_layers(
    store: &ContentStore,
    layers: &[Descriptor],
    diff_ids: &[String],
    dest: &Path,
) -> Result<()> {
    let check = diff_ids.len() == layers.len();
    for (i, layer) in layers.iter().enumerate() {
        let actual = unpack_blob(store, layer, dest)?;
        if check && actual != diff_ids[i] {
            return Err(Error::DigestMismatch {
                expected: diff_ids[i].clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// Unpacks one layer blob onto `dest`; returns its diff id.
fn unpack_blob(store: &ContentStore, layer: &Descriptor, dest: &Path) -> Result<String> {
    let compression = Compression::from_media_type(&layer.media_type)?;
    let path = store.path(&layer.digest);
    let file = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let reader = compression
        .reader(std::io::BufReader::new(file))
        .map_err(|e| Error::io("read", &path, e))?;
    unpack::unpack_layer(reader, dest, Mode::Flatten).map_err(|source| Error::Unpack {
        layer: layer.digest.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Entry, EntryKind, LayerBuilder};

    #[test]
    fn layers_are_applied_in_order_and_diff_ids_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("store")).unwrap();
        let layer = |entries: &[(&str, EntryKind)]| {
            let mut b = LayerBuilder::default();
            for (path, kind) in entries {
                b.insert(
                    path,
                    Entry {
                        kind: kind.clone(),
                        mode: 0o644,
                    },
                );
            }
            b.write(&store, 0, 0, 0).unwrap()
        };
        let base = layer(&[
            ("etc/old", EntryKind::Data(b"1".to_vec())),
            ("etc/kept", EntryKind::Data(b"1".to_vec())),
        ]);
        let upper = layer(&[
            ("etc/.wh.old", EntryKind::Data(Vec::new())),
            ("etc/new", EntryKind::Data(b"2".to_vec())),
        ]);
        let descs: Vec<Descriptor> = [&base, &upper]
            .iter()
            .map(|l| Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: l.digest.clone(),
                size: l.size,
                platform: None,
                annotations: Default::default(),
            })
            .collect();
        let diff_ids = vec![base.diff_id.to_string(), upper.diff_id.to_string()];
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        unpack_layers(&store, &descs, &diff_ids, &root).unwrap();
        assert!(!root.join("etc/old").exists());
        assert_eq!(std::fs::read(root.join("etc/kept")).unwrap(), b"1");
        assert_eq!(std::fs::read(root.join("etc/new")).unwrap(), b"2");
        let wrong = vec![diff_ids[1].clone(), diff_ids[0].clone()];
        let err = unpack_layers(&store, &descs, &wrong, &root).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }
}

//! Snapshot store tests: layers are unpacked once, verified against their diff id, and hostile
//! layers (berth-testkit's catalogue) are refused with nothing written outside and no partial
//! snapshot kept. The unpacker's own tests live with it in berth-oci. They need root.

use std::fs;

use berth_testkit::hostile;

use super::*;

/// A layer of one regular file `name` holding `data`.
fn one_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, name, data).expect("append");
    b.into_inner().expect("finish tar")
}

/// Writes `data` gzip-compressed to `path`.
fn gzip_blob(path: &Path, data: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, data).expect("gzip");
    fs::write(path, gz.finish().expect("gzip")).expect("blob");
}

#[test]
fn store_unpacks_gzip_once_and_rejects_a_wrong_diff_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(tmp.path().join("snapshots")).expect("store");
    let data = one_file_tar("hello", b"world");
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let blob = tmp.path().join("blob");
    gzip_blob(&blob, &data);
    let compression =
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip").expect("mt");

    let bad = store
        .unpack("sha256:bad", "sha256:0000", compression, &blob)
        .expect_err("mismatch");
    assert!(matches!(bad, SnapshotError::DiffIdMismatch { .. }));
    assert!(!store.exists("sha256:bad"));

    let chain = chain_ids(std::slice::from_ref(&diff_id));
    let dir = store
        .unpack(&chain[0], &diff_id, compression, &blob)
        .expect("unpack");
    assert_eq!(fs::read(dir.join("hello")).expect("hello"), b"world");
    // Only the snapshot remains: no temp dirs left behind by the failed attempt.
    assert_eq!(
        fs::read_dir(tmp.path().join("snapshots"))
            .expect("ls")
            .count(),
        1
    );
    store.remove(&chain[0]).expect("remove");
    assert!(!store.exists(&chain[0]));
}

#[test]
fn chain_ids_follow_the_oci_definition() {
    let d = vec!["sha256:a".to_string(), "sha256:b".to_string()];
    let c = chain_ids(&d);
    assert_eq!(c[0], "sha256:a");
    assert_eq!(
        c[1],
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:a sha256:b"))
        )
    );
}

#[test]
fn store_refuses_hostile_layers_and_keeps_no_partial_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = hostile::outside_dir(tmp.path()).expect("outside");
    let store = SnapshotStore::open(tmp.path().join("snapshots")).expect("store");
    let compression =
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip").expect("mt");
    for layer in hostile::hostile_layers(&outside).expect("layers") {
        let blob = tmp.path().join(layer.name);
        gzip_blob(&blob, &layer.tar);
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer.tar)));
        let chain = format!("sha256:{}", hex::encode(Sha256::digest(layer.name)));
        let result = store.unpack(&chain, &diff_id, compression, &blob);
        if layer.refused {
            let err = result.expect_err(layer.name);
            assert!(
                matches!(err, SnapshotError::Unpack(UnpackError::Escape { .. })),
                "{}: {err}",
                layer.name
            );
            assert!(err.to_string().contains("escapes"), "{err}");
            assert!(!store.exists(&chain), "{}: partial snapshot", layer.name);
        } else {
            let dir = result.expect(layer.name);
            let inside = dir.join(outside.strip_prefix("/").expect("absolute"));
            assert_eq!(fs::read(inside.join("evil")).expect("confined"), b"pwn");
        }
        hostile::assert_outside_untouched(&outside);
    }
    // Only the one accepted snapshot remains: refused ones left no temp dirs behind.
    assert_eq!(
        fs::read_dir(tmp.path().join("snapshots"))
            .expect("ls")
            .count(),
        1
    );
}

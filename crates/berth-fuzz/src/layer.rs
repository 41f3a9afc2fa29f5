//! The layer target: a layer blob unpacked into a temporary root, as the runtime's snapshotter
//! and `berth pull --unpack` do.

use std::io::Read;

use berth_oci::unpack::{Compression, Mode, unpack_layer};

/// The name of the root inside the temporary directory; nothing else may appear beside it.
const ROOT: &str = "root";

/// A layer blob (plain, gzip or zstd tar, detected from its first bytes as `berth-image` does)
/// unpacked in both [`Mode`]s into `root/` of a fresh temporary directory. Whatever the tar says,
/// nothing may appear in that directory beside `root/`.
pub fn layer_tar(data: &[u8]) {
    for mode in [Mode::Flatten, Mode::Snapshot] {
        let Ok(dir) = tempfile::tempdir() else {
            return;
        };
        let root = dir.path().join(ROOT);
        if std::fs::create_dir(&root).is_err() {
            return;
        }
        if let Ok(reader) = Compression::detect(data).reader(data) {
            let _ = unpack_layer(bounded(reader), &root, mode);
        }
        let beside: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        assert_eq!(beside, [ROOT], "a {mode:?} layer wrote outside its root");
    }
}

/// At most 64 MiB of decompressed tar: a small compressed input may expand without bound, and a
/// fuzzer's memory and disk are limited (the product streams layers of any size).
fn bounded<R: Read>(r: R) -> impl Read {
    r.take(64 << 20)
}

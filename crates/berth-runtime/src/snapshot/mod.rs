//! Layer snapshots: each image layer unpacked once into `snapshots/<chain id>/`, used as an
//! overlayfs lower dir by every container of every image that shares that layer chain. The
//! unpacking itself is berth-oci's confined unpacker, in its overlayfs snapshot mode.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_oci::unpack::{Compression, Mode, UnpackError, UnsupportedMediaType, unpack_layer};
use sha2::{Digest, Sha256};

/// Why a snapshot could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The layer content is malicious or malformed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The uncompressed layer does not hash to the diff id the image config declares.
    #[error("layer diff id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff id from the image config.
        expected: String,
        /// The digest of what was unpacked.
        actual: String,
    },
    /// A layer media type this runtime cannot decompress.
    #[error(transparent)]
    MediaType(#[from] UnsupportedMediaType),
    /// A filesystem error outside a layer entry.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The chain ids of a list of diff ids (bottom layer first), as the OCI image spec defines them:
/// `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// The directory of unpacked layers (`<root>/snapshots`).
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Opens (creating) the snapshot directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SnapshotError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| SnapshotError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The directory of the snapshot for `chain_id` (whether or not it exists yet).
    pub fn path(&self, chain_id: &str) -> PathBuf {
        self.dir.join(chain_id.trim_start_matches("sha256:"))
    }

    /// Whether the snapshot for `chain_id` is already unpacked.
    pub fn exists(&self, chain_id: &str) -> bool {
        self.path(chain_id).is_dir()
    }

    /// Unpacks `blob` (compressed as `compression`) as the snapshot `chain_id`, checking that
    /// it hashes to `diff_id`. Unpacking goes to a temporary dir renamed into place, so a
    /// snapshot dir either holds a complete verified layer or does not exist.
    pub fn unpack(
        &self,
        chain_id: &str,
        diff_id: &str,
        compression: Compression,
        blob: &Path,
    ) -> Result<PathBuf, SnapshotError> {
        let target = self.path(chain_id);
        if target.is_dir() {
            return Ok(target);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .map_err(io(&self.dir))?;
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(io(tmp.path()))?;
        let file = fs::File::open(blob).map_err(io(blob))?;
        let reader = compression
            .reader(io::BufReader::new(file))
            .map_err(io(blob))?;
        let actual = unpack_layer(reader, tmp.path(), Mode::Snapshot)?;
        if actual != diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                expected: diff_id.to_string(),
                actual,
            });
        }
        let tmp_path = tmp.keep();
        if let Err(e) = fs::rename(&tmp_path, &target) {
            // Lost a race with a concurrent unpack of the same layer: theirs is as good as ours.
            let _ = fs::remove_dir_all(&tmp_path);
            if !target.is_dir() {
                return Err(io(&target)(e));
            }
        }
        Ok(target)
    }

    /// Removes the snapshot `chain_id` (missing is fine).
    pub fn remove(&self, chain_id: &str) -> Result<(), SnapshotError> {
        let p = self.path(chain_id);
        match fs::remove_dir_all(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(SnapshotError::Io { path: p, source: e })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

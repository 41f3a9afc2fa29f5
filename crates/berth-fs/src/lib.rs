//! `berth-fs`: filesystem basics shared by every crate that persists state.
//!
//! - [`write_atomic`]: replace a file's content so that readers see the old or the new content,
//!   never half of it, and the new content survives a crash once the call returns;
//! - [`write_atomic_private`]: the same for secrets, with mode 0600 from the file's creation.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

use std::fs::{File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Writes `data` to `path` atomically: a uniquely named temp file in the same directory (so two
/// writers never share one) is written, synced and renamed over `path`, then the directory is
/// synced so the rename itself is durable. The file gets the temp file's mode (0600, tempfile's
/// default) widened to 0644, the mode a plain `File::create` gives under the usual umask.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with_mode(path, data, 0o644)
}

/// Like [`write_atomic`], but the file has mode 0600 from its creation, so a secret is never
/// readable by others, not even briefly.
pub fn write_atomic_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with_mode(path, data, 0o600)
}

fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_in_place(path, data, mode).map_err(|e| with_path(path, e))
}

fn write_in_place(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    // tempfile creates with mode 0600; a public file is widened only after that creation.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    if mode != 0o600 {
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))?;
    }
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f.json");
        write_atomic(&p, b"old").expect("first write");
        write_atomic(&p, b"new").expect("second write");
        assert_eq!(std::fs::read(&p).expect("read"), b"new");
    }

    #[test]
    fn leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f.json");
        write_atomic(&p, b"a").expect("write");
        write_atomic_private(&dir.path().join("k"), b"b").expect("write private");
        assert_eq!(
            entries(dir.path()),
            vec!["f.json".to_string(), "k".to_string()]
        );
    }

    #[test]
    fn private_file_has_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("secret");
        std::fs::write(&p, b"old").expect("seed");
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).expect("chmod");
        write_atomic_private(&p, b"s3cret").expect("write");
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(std::fs::read(&p).expect("read"), b"s3cret");
    }

    #[test]
    fn public_file_has_mode_0644() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pub");
        write_atomic(&p, b"x").expect("write");
        assert_eq!(mode_of(&p), 0o644);
    }

    #[test]
    fn error_names_the_path() {
        let p = Path::new("/nonexistent-berth-dir/f");
        let e = write_atomic(p, b"x").expect_err("no such dir");
        assert!(e.to_string().contains("/nonexistent-berth-dir/f"));
    }
}

//! Hostile layers: uncompressed layer tars that try to write, link or delete outside the directory
//! they are unpacked into, one attack per layer.
//!
//! Every attack aims at one `outside` directory (made by [`outside_dir`], holding a `secret`
//! file), so a test can unpack each layer through its caller of the unpacker (runtime snapshots,
//! `berth pull --unpack`, `COPY --from`) and then check with [`assert_outside_untouched`] that
//! nothing happened there. Paths that climb with `..` climb far enough to reach `/` from any
//! temp dir and then name `outside` by its absolute path, so they would hit it if followed.

use std::io;
use std::path::{Path, PathBuf};

use tar::EntryType;

/// The file every `outside` directory holds, and its content.
pub const SECRET: (&str, &[u8]) = ("secret", b"keep");

/// One hostile layer.
pub struct HostileLayer {
    /// A short name for the attack (usable in image names: lowercase and dashes).
    pub name: &'static str,
    /// The uncompressed layer tar.
    pub tar: Vec<u8>,
    /// Whether the unpacker must refuse it (an error naming the escape). The one layer not
    /// refused (absolute paths) must land inside the root instead.
    pub refused: bool,
}

/// Creates `dir/outside` holding only [`SECRET`] and returns its path.
pub fn outside_dir(dir: &Path) -> io::Result<PathBuf> {
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join(SECRET.0), SECRET.1)?;
    Ok(outside)
}

/// Panics unless `outside` still holds exactly [`SECRET`], unchanged and with no extra link.
pub fn assert_outside_untouched(outside: &Path) {
    let names: Vec<_> = std::fs::read_dir(outside)
        .expect("read outside dir")
        .map(|e| e.expect("outside entry").file_name())
        .collect();
    assert_eq!(names, [SECRET.0], "something was written in {outside:?}");
    let secret = outside.join(SECRET.0);
    assert_eq!(std::fs::read(&secret).expect("secret"), SECRET.1);
    let meta = std::fs::metadata(&secret).expect("secret");
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&meta),
        1,
        "secret was hard-linked"
    );
}

/// Every attack on `outside` (an absolute path): `..` traversal, a symlink escape written
/// through, hard links to outside (directly and through a symlink), an absolute path, and
/// whiteouts and opaque markers aimed outside (through `..` and through a symlink).
pub fn hostile_layers(outside: &Path) -> io::Result<Vec<HostileLayer>> {
    let abs = outside
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 outside dir"))?;
    let climb = format!("{}{}", "../".repeat(12), abs.trim_start_matches('/'));
    let file = |path: &str| (path.to_string(), EntryType::Regular, String::new());
    let symlink = || ("s".to_string(), EntryType::Symlink, abs.to_string());
    let link = |target: &str| ("stolen".to_string(), EntryType::Link, target.to_string());
    let cases = [
        ("parent-dir", vec![file(&format!("{climb}/evil"))], true),
        ("symlink-escape", vec![symlink(), file("s/evil")], true),
        (
            "hardlink-outside",
            vec![link(&format!("{climb}/{}", SECRET.0))],
            true,
        ),
        (
            "hardlink-via-symlink",
            vec![symlink(), link(&format!("s/{}", SECRET.0))],
            true,
        ),
        ("absolute-path", vec![file(&format!("{abs}/evil"))], false),
        (
            "whiteout-outside",
            vec![file(&format!("{climb}/.wh.{}", SECRET.0))],
            true,
        ),
        (
            "whiteout-via-symlink",
            vec![symlink(), file(&format!("s/.wh.{}", SECRET.0))],
            true,
        ),
        (
            "opaque-outside",
            vec![file(&format!("{climb}/.wh..wh..opq"))],
            true,
        ),
        (
            "opaque-via-symlink",
            vec![symlink(), file("s/.wh..wh..opq")],
            true,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, entries, refused)| {
            Ok(HostileLayer {
                name,
                tar: layer_tar(&entries)?,
                refused,
            })
        })
        .collect()
}

/// A tar of `(path, kind, link target)` entries (regular files hold `pwn`), with the names
/// written raw because the tar crate's safe setters refuse `..`, which is the point here.
fn layer_tar(entries: &[(String, EntryType, String)]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link) in entries {
        let data: &[u8] = if *kind == EntryType::Regular {
            b"pwn"
        } else {
            b""
        };
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let old = h.as_old_mut();
        copy_name(&mut old.name, path)?;
        copy_name(&mut old.linkname, link)?;
        h.set_cksum();
        b.append(&h, data)?;
    }
    b.into_inner()
}

/// Writes `value` into a fixed-size ustar name field.
fn copy_name(field: &mut [u8; 100], value: &str) -> io::Result<()> {
    let bytes = value.as_bytes();
    if bytes.len() > field.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tar name too long for ustar: {value}"),
        ));
    }
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

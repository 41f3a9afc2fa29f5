//! Unpacker tests: real layers unpack faithfully in both modes; hostile layers (`..`, symlink and
//! hard-link escapes, absolute paths, whiteouts and opaque markers aimed outside) are refused, or
//! confined, and write nothing outside the root. They need root (chown, mknod, trusted xattrs),
//! as CI runs them.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;

/// Appends an entry whose raw name (and link name) bytes are written verbatim, because the tar
/// crate's safe setters refuse `..`, which is exactly what these tests need to produce.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
    mode: u32,
) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_600_000_000);
    {
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().expect("finish tar")
}

/// A fresh `<tmp>/snap` to unpack into, next to `<tmp>/outside` which must stay untouched.
fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let snap = tmp.path().join("snap");
    let outside = tmp.path().join("outside");
    fs::create_dir(&snap).expect("snap");
    fs::create_dir(&outside).expect("outside");
    fs::write(outside.join("secret"), b"keep").expect("secret");
    (tmp, snap, outside)
}

fn assert_outside_untouched(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside)
        .expect("read outside")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("secret")],
        "something was written outside"
    );
    assert_eq!(fs::read(outside.join("secret")).expect("secret"), b"keep");
}

#[test]
fn unpacks_files_dirs_links_devices_with_attributes_and_diff_id() {
    let (_tmp, snap, _) = dirs();
    let data = tar_of(|b| {
        raw_entry(b, "bin/", tar::EntryType::Directory, "", b"", 0o755);
        raw_entry(
            b,
            "bin/busybox",
            tar::EntryType::Regular,
            "",
            b"#!elf",
            0o4755,
        );
        raw_entry(
            b,
            "bin/sh",
            tar::EntryType::Symlink,
            "/bin/busybox",
            b"",
            0o777,
        );
        raw_entry(
            b,
            "bin/hard",
            tar::EntryType::Link,
            "bin/busybox",
            b"",
            0o755,
        );
        raw_entry(b, "deep/er/file", tar::EntryType::Regular, "", b"x", 0o640);
        raw_entry(b, "dev/fifo", tar::EntryType::Fifo, "", b"", 0o600);
    });
    let diff_id = unpack_layer(&data[..], &snap, Mode::Snapshot).expect("unpack");
    assert_eq!(
        diff_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&data)))
    );

    let bb = fs::metadata(snap.join("bin/busybox")).expect("busybox");
    assert_eq!(
        bb.permissions().mode() & 0o7777,
        0o4755,
        "setuid bit kept after chown"
    );
    assert_eq!((bb.uid(), bb.gid()), (1000, 1001));
    assert_eq!(bb.mtime(), 1_600_000_000);
    assert_eq!(fs::read(snap.join("bin/busybox")).expect("read"), b"#!elf");
    assert_eq!(
        fs::read_link(snap.join("bin/sh")).expect("link"),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(snap.join("bin/hard")).expect("hard").ino(),
        bb.ino()
    );
    assert_eq!(
        fs::metadata(snap.join("deep/er/file"))
            .expect("deep")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    assert!(
        fs::symlink_metadata(snap.join("dev/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo()
    );
}

#[test]
fn whiteouts_become_char_devices_and_opaque_dirs_get_the_xattr() {
    let (_tmp, snap, _) = dirs();
    let data = tar_of(|b| {
        raw_entry(b, "etc/.wh.gone", tar::EntryType::Regular, "", b"", 0o644);
        raw_entry(
            b,
            "var/.wh..wh..opq",
            tar::EntryType::Regular,
            "",
            b"",
            0o644,
        );
    });
    unpack_layer(&data[..], &snap, Mode::Snapshot).expect("unpack");
    let wh = fs::symlink_metadata(snap.join("etc/gone")).expect("whiteout");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!snap.join("etc/.wh.gone").exists());
    let mut buf = [0u8; 4];
    let p = fsat::cstr(snap.join("var").as_os_str()).expect("cstr");
    let key = fsat::cstr(std::ffi::OsStr::new("trusted.overlay.opaque")).expect("key");
    // SAFETY: valid C strings and a buffer with its length.
    let n = unsafe { libc::getxattr(p.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, 1, "opaque xattr present");
    assert_eq!(buf[0], b'y');
    assert!(!snap.join("var/.wh..wh..opq").exists());
}

#[test]
fn refuses_parent_dir_paths() {
    let (_tmp, snap, outside) = dirs();
    let data = tar_of(|b| {
        raw_entry(
            b,
            "../outside/evil",
            tar::EntryType::Regular,
            "",
            b"pwn",
            0o644,
        )
    });
    let err = unpack_layer(&data[..], &snap, Mode::Snapshot).expect_err("must refuse");
    assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
    assert_outside_untouched(&outside);
}

#[test]
fn refuses_writing_through_an_absolute_symlink() {
    let (_tmp, snap, outside) = dirs();
    let data = tar_of(|b| {
        raw_entry(
            b,
            "escape",
            tar::EntryType::Symlink,
            outside.to_str().expect("utf8"),
            b"",
            0o777,
        );
        raw_entry(b, "escape/evil", tar::EntryType::Regular, "", b"pwn", 0o644);
    });
    let err = unpack_layer(&data[..], &snap, Mode::Snapshot).expect_err("must refuse");
    assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
    assert_outside_untouched(&outside);
}

#[test]
fn refuses_hardlinks_to_outside() {
    let (_tmp, snap, outside) = dirs();
    let data = tar_of(|b| {
        raw_entry(
            b,
            "h",
            tar::EntryType::Link,
            "../outside/secret",
            b"",
            0o644,
        )
    });
    assert!(matches!(
        unpack_layer(&data[..], &snap, Mode::Snapshot),
        Err(UnpackError::Escape { .. })
    ));
    // Through a symlinked parent too.
    let (_tmp2, snap2, outside2) = dirs();
    let data = tar_of(|b| {
        raw_entry(
            b,
            "s",
            tar::EntryType::Symlink,
            outside2.to_str().expect("utf8"),
            b"",
            0o777,
        );
        raw_entry(b, "h", tar::EntryType::Link, "s/secret", b"", 0o644);
    });
    assert!(matches!(
        unpack_layer(&data[..], &snap2, Mode::Snapshot),
        Err(UnpackError::Escape { .. })
    ));
    assert!(!snap.join("h").exists() && !snap2.join("h").exists());
    assert_outside_untouched(&outside);
    assert_outside_untouched(&outside2);
    assert_eq!(
        fs::metadata(outside2.join("secret"))
            .expect("secret")
            .nlink(),
        1
    );
}

#[test]
fn refuses_whiteout_of_parent() {
    let (_tmp, snap, outside) = dirs();
    for path in [".wh...", "outside/.wh..", "../.wh.outside"] {
        let data = tar_of(|b| raw_entry(b, path, tar::EntryType::Regular, "", b"", 0o644));
        let err = unpack_layer(&data[..], &snap, Mode::Snapshot).expect_err(path);
        assert!(matches!(err, UnpackError::Escape { .. }), "{path}: {err}");
    }
    assert_outside_untouched(&outside);
    assert!(snap.parent().expect("parent").join("outside").is_dir());
}

#[test]
fn flatten_applies_whiteouts_and_opaque_dirs_over_lower_layers() {
    let (_tmp, root, _) = dirs();
    let lower = tar_of(|b| {
        raw_entry(b, "etc/gone", tar::EntryType::Regular, "", b"old", 0o644);
        raw_entry(b, "etc/kept", tar::EntryType::Regular, "", b"old", 0o644);
        raw_entry(b, "var/old/f", tar::EntryType::Regular, "", b"old", 0o644);
        raw_entry(b, "var/lower", tar::EntryType::Regular, "", b"old", 0o644);
    });
    // The upper layer writes var/new before its opaque marker: the marker must keep it.
    let upper = tar_of(|b| {
        raw_entry(b, "etc/.wh.gone", tar::EntryType::Regular, "", b"", 0o644);
        raw_entry(b, "var/new/f", tar::EntryType::Regular, "", b"new", 0o644);
        raw_entry(
            b,
            "var/.wh..wh..opq",
            tar::EntryType::Regular,
            "",
            b"",
            0o644,
        );
        raw_entry(b, "var/after", tar::EntryType::Regular, "", b"new", 0o644);
    });
    unpack_layer(&lower[..], &root, Mode::Flatten).expect("lower");
    unpack_layer(&upper[..], &root, Mode::Flatten).expect("upper");
    assert!(fs::symlink_metadata(root.join("etc/gone")).is_err());
    assert_eq!(fs::read(root.join("etc/kept")).expect("kept"), b"old");
    let mut var: Vec<_> = fs::read_dir(root.join("var"))
        .expect("var")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    var.sort();
    assert_eq!(var, ["after", "new"]);
    assert_eq!(fs::read(root.join("var/new/f")).expect("new"), b"new");
    assert!(!root.join("etc/.wh.gone").exists() && !root.join("var/.wh..wh..opq").exists());
}

#[test]
fn absolute_paths_are_taken_inside_the_root() {
    let (_tmp, root, outside) = dirs();
    let abs = format!("{}/evil", outside.display());
    let data = tar_of(|b| {
        raw_entry(b, "/abs-file", tar::EntryType::Regular, "", b"in", 0o644);
        raw_entry(b, &abs, tar::EntryType::Regular, "", b"in", 0o644);
    });
    for mode in [Mode::Snapshot, Mode::Flatten] {
        unpack_layer(&data[..], &root, mode).expect("absolute paths are confined");
        assert_eq!(fs::read(root.join("abs-file")).expect("abs"), b"in");
        let inside = root.join(abs.trim_start_matches('/'));
        assert_eq!(fs::read(inside).expect("confined"), b"in");
        assert_outside_untouched(&outside);
    }
}

#[test]
fn refuses_whiteouts_and_opaque_markers_aimed_outside() {
    for mode in [Mode::Snapshot, Mode::Flatten] {
        let (_tmp, root, outside) = dirs();
        let link = outside.to_str().expect("utf8");
        // Through `..`, and through a symlink the layer planted: both would delete `secret`.
        let cases: [&[(&str, tar::EntryType, &str)]; 4] = [
            &[("../outside/.wh.secret", tar::EntryType::Regular, "")],
            &[("../outside/.wh..wh..opq", tar::EntryType::Regular, "")],
            &[
                ("s", tar::EntryType::Symlink, link),
                ("s/.wh.secret", tar::EntryType::Regular, ""),
            ],
            &[
                ("s", tar::EntryType::Symlink, link),
                ("s/.wh..wh..opq", tar::EntryType::Regular, ""),
            ],
        ];
        for entries in cases {
            let data = tar_of(|b| {
                for (path, kind, target) in entries {
                    raw_entry(b, path, *kind, target, b"", 0o644);
                }
            });
            let err = unpack_layer(&data[..], &root, mode).expect_err("must refuse");
            assert!(matches!(err, UnpackError::Escape { .. }), "{mode:?}: {err}");
            assert!(err.to_string().contains("escapes the unpack root"), "{err}");
            assert_outside_untouched(&outside);
        }
    }
}

#[test]
fn flatten_refuses_the_snapshot_escapes_too() {
    let (_tmp, root, outside) = dirs();
    let link = outside.to_str().expect("utf8");
    let cases: [&[(&str, tar::EntryType, &str)]; 3] = [
        &[("../outside/evil", tar::EntryType::Regular, "")],
        &[
            ("escape", tar::EntryType::Symlink, link),
            ("escape/evil", tar::EntryType::Regular, ""),
        ],
        &[("h", tar::EntryType::Link, "../outside/secret")],
    ];
    for entries in cases {
        let data = tar_of(|b| {
            for (path, kind, target) in entries {
                raw_entry(b, path, *kind, target, b"pwn", 0o644);
            }
        });
        let err = unpack_layer(&data[..], &root, Mode::Flatten).expect_err("must refuse");
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
        assert_outside_untouched(&outside);
    }
}

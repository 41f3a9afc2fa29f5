//! OCI layouts built with `umoci` (an independent tool, so berth's own image code is not both
//! producer and consumer in the registry and image tests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `umoci ARGS`, asserting success.
pub fn umoci(args: &[&str]) {
    let out = Command::new("umoci")
        .args(args)
        .output()
        .expect("umoci installed");
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout at `<dir>/oci` tagged `base`: an empty umoci image plus /bin/busybox.
pub fn busybox_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    let l = layout.to_str().expect("utf-8 path");
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &format!("{l}:base")]);
    umoci(&[
        "insert",
        "--image",
        &format!("{l}:base"),
        "/bin/busybox",
        "/bin/busybox",
    ]);
    // Drop the blobs of the empty image `insert` replaced, so the layout holds one image.
    umoci(&["gc", "--layout", l]);
    layout
}

//! Debian's docker-registry on loopback (berth-testkit's), and the busybox test image to push to it.

use std::path::{Path, PathBuf};

/// Debian's docker-registry on a free loopback port, storage in its own temp dir; killed on drop.
pub type Registry = berth_testkit::peer::DockerRegistry;

/// Writes the busybox test image as an OCI layout (tag `latest`) in `dir`; returns the layout.
pub fn busybox(dir: &Path) -> PathBuf {
    berth_testkit::busybox::busybox_layout(dir).expect("busybox layout (busybox-static installed)")
}

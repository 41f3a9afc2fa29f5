//! A busybox OCI image layout built from Debian's busybox-static, for tests and benchmarks
//! (pushed to a registry with skopeo, then pulled through CRI like any image).

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::sha256 as sha;

/// Where busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Why the layout could not be written.
pub type Result<T> = std::io::Result<T>;

/// Writes an OCI image layout `dir/layout` of busybox-static (applet symlinks, USER `app`
/// = uid 1000, tag `latest`).
pub fn busybox_layout(dir: &Path) -> Result<PathBuf> {
    let staging = dir.join("staging");
    std::fs::create_dir_all(staging.join("bin"))?;
    std::fs::create_dir_all(staging.join("etc"))?;
    std::fs::copy(BUSYBOX, staging.join("bin/busybox"))?;
    for applet in [
        "sh", "echo", "id", "sleep", "true", "false", "cat", "httpd", "wget", "rm", "mkdir",
        "kill", "ls", "ps", "hostname", "test", "chmod", "nc", "stty", "tty",
    ] {
        symlink("busybox", staging.join("bin").join(applet))?;
    }
    std::fs::write(
        staging.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &staging)?;
    let layer_tar = tar.into_inner()?;
    write_layout(dir, "layout", &layer_tar)
}

/// Writes the busybox layout under `dir` and pushes it to `image` (`HOST/REPO:TAG`) with
/// skopeo, with optional `user:password` credentials.
pub fn push_busybox(dir: &Path, image: &str, creds: Option<&str>) -> anyhow::Result<()> {
    let layout = busybox_layout(dir).map_err(|e| {
        anyhow::anyhow!("writing the busybox layout (is busybox-static installed?): {e}")
    })?;
    crate::peer::push_layout(&layout, image, creds)
}

/// Writes an OCI layout (one gzip layer made of `layer_tar`) at `dir/name`.
pub fn write_layout(dir: &Path, name: &str, layer_tar: &[u8]) -> Result<PathBuf> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(layer_tar)?;
    let layer = gz.finish()?;
    let config = serde_json::json!({
        "architecture": berth_oci::manifest::host_arch(), "os": "linux",
        "config": { "Cmd": ["sh"], "User": "app", "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [sha(layer_tar)] },
    });
    let config = serde_json::to_vec(&config).map_err(std::io::Error::other)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&layer), "size": layer.len() }],
    }))?;
    let layout = dir.join(name);
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    for blob in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(&sha(blob)[7..]), blob)?;
    }
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest), "size": manifest.len(),
        "annotations": { "org.opencontainers.image.ref.name": "latest" } }] });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).map_err(std::io::Error::other)?,
    )?;
    Ok(layout)
}

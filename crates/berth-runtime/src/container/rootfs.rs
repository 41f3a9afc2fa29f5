//! The container rootfs: an overlay of the image's snapshot dirs with a per-container upper dir.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Mounts `lowers` (bottom layer first) plus `dir/upper` + `dir/work` at `dir/rootfs`.
pub fn mount_overlay(dir: &Path, lowers: &[PathBuf]) -> io::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d)?;
    }
    if lowers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an image needs at least one layer",
        ));
    }
    // overlayfs wants the topmost lower dir first.
    let lowerdir = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io::Error::from)?;
    Ok(rootfs)
}

/// Unmounts the rootfs if mounted (lazily, so a lingering process cannot make remove fail).
pub fn unmount(dir: &Path) -> io::Result<()> {
    match umount2(&dir.join("rootfs"), MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

//! Garbage collection: mark every blob named by a manifest or index of any repository, then
//! delete the blobs nothing marks (and the repository links to them). Runs under the registry's
//! exclusive lock, so never while a registry serves the same directory.

use std::collections::HashSet;
use std::path::Path;

use crate::storage::Storage;
use crate::{OpenError, registry_dir, take_lock};
use berth_oci::digest::Digest;
use berth_oci::manifest::Summary;

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs kept (referenced).
    pub blobs_kept: usize,
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Bytes those blobs took.
    pub bytes_freed: u64,
    /// Repository links to deleted blobs that were removed.
    pub links_removed: usize,
}

/// Collects garbage in `data_dir/registry`. Fails with [`OpenError::Locked`] while a registry
/// serves that directory.
pub fn gc(data_dir: &Path) -> Result<GcReport, OpenError> {
    let root = registry_dir(data_dir);
    let _lock = take_lock(&root)?;
    let storage = Storage::open(&root)?;
    let repos = storage.repositories_blocking()?;
    let marked = mark(&storage, &repos)?;
    let mut report = GcReport::default();
    for d in storage.blob_digests_blocking()? {
        if marked.contains(&d) {
            report.blobs_kept += 1;
            continue;
        }
        let path = storage.blob_path(&d);
        report.bytes_freed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(&path)?;
        report.blobs_removed += 1;
        tracing::debug!(digest = %d, "gc: removed blob");
    }
    for repo in &repos {
        for (d, link) in storage.layer_links_blocking(repo)? {
            if !marked.contains(&d) {
                std::fs::remove_file(link)?;
                report.links_removed += 1;
            }
        }
    }
    Ok(report)
}

/// Every manifest of every repository, and the config and layer blobs each one names.
fn mark(storage: &Storage, repos: &[String]) -> Result<HashSet<Digest>, OpenError> {
    let mut marked = HashSet::new();
    for repo in repos {
        for m in storage.manifest_digests_blocking(repo)? {
            marked.insert(m.clone());
            let bytes = match std::fs::read(storage.blob_path(&m)) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            match Summary::parse(&bytes, None) {
                Ok(parsed) => marked.extend(parsed.blobs),
                // Whatever it names cannot be proven unreferenced, so collecting would be unsafe.
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("manifest {m} in {repo} is unreadable ({e}); not collecting"),
                    )
                    .into());
                }
            }
        }
    }
    Ok(marked)
}

//! `COPY`/`ADD` source expansion: a source path or glob, under the build context or a `--from`
//! root filesystem, to the files and directories it names (never outside that root).

use std::path::{Component, Path, PathBuf};

use crate::context::path_glob;

/// Expands the source `rel` (globs allowed) under `root`, keeping only paths `keep` accepts
/// (relative to `root`): sorted (absolute path, path relative to root) pairs. An error says why
/// the source is refused (outside the root, invalid pattern).
pub fn resolve_sources(
    root: &Path,
    rel: &str,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let rel_trim = rel.trim_end_matches('/');
    if Path::new(rel_trim)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!("{rel}: source outside the build context"));
    }
    if !rel_trim.contains(['*', '?', '[']) {
        return literal_source(root, rel, rel_trim, keep);
    }
    let glob = path_glob(rel_trim).ok_or_else(|| format!("invalid pattern {rel}"))?;
    // Symlinks are not followed: a glob never leads out of the root through one.
    let mut out: Vec<(PathBuf, PathBuf)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_path_buf();
            (glob.is_match(&rel) && keep(&rel)).then(|| (e.path().to_path_buf(), rel))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A source without glob characters: the path itself, if it exists and is kept.
fn literal_source(
    root: &Path,
    rel: &str,
    rel_trim: &str,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let abs = if rel_trim.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel_trim)
    };
    let ok = std::fs::symlink_metadata(&abs).is_ok()
        && (rel_trim.is_empty() || keep(Path::new(rel_trim)));
    // A symlinked directory on the way must not lead out of the context (or stage root).
    if ok && !inside(root, abs.parent().unwrap_or(root)) {
        return Err(format!("{rel}: resolves outside the build context"));
    }
    Ok(if ok {
        vec![(abs, PathBuf::from(rel_trim))]
    } else {
        vec![]
    })
}

/// Whether `p` (after resolving symlinks) lies under `root`.
fn inside(root: &Path, p: &Path) -> bool {
    match (root.canonicalize(), p.canonicalize()) {
        (Ok(r), Ok(p)) => p.starts_with(r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_components_and_respect_keep() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for f in ["x.txt", "y.txt", "a/z.txt", "a/b/w.txt"] {
            std::fs::write(root.join(f), f).unwrap();
        }
        let rels = |pat: &str, keep: &dyn Fn(&Path) -> bool| -> Vec<PathBuf> {
            resolve_sources(root, pat, keep)
                .unwrap()
                .into_iter()
                .map(|(_, rel)| rel)
                .collect()
        };
        let all = |_: &Path| true;
        assert_eq!(
            rels("*.txt", &all),
            [Path::new("x.txt"), Path::new("y.txt")]
        );
        assert_eq!(
            rels("a/**/*.txt", &all),
            [Path::new("a/b/w.txt"), Path::new("a/z.txt")]
        );
        assert_eq!(
            rels("*.txt", &|p| p != Path::new("y.txt")),
            [Path::new("x.txt")]
        );
        assert_eq!(rels("a", &all), [Path::new("a")]);
        assert!(rels("missing", &all).is_empty());
        assert!(resolve_sources(root, "../x", &all).is_err());
    }
}

//! Build context selection: which files of the context `.dockerignore` leaves to `COPY`/`ADD`.
//!
//! Docker's rules, not git's: patterns are globs anchored at the context root (`*` and `?` stop
//! at `/`, `**` crosses directories), `!` re-includes, the last matching rule wins, and a rule
//! matching a parent directory applies to everything below it. The globs are `globset`'s.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

/// `.dockerignore` rules, in file order.
#[derive(Debug, Default)]
pub struct Ignore {
    /// Each pattern with whether it re-includes (`!`).
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    /// Reads `CONTEXT/.dockerignore` (none means nothing is ignored).
    pub fn load(context: &Path) -> Result<Self> {
        match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(s) => Ok(Ignore::parse(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(Error::io("read", context.join(".dockerignore"), e)),
        }
    }

    /// Parses the file's text; lines that are not valid globs are skipped, as Docker does.
    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (negate, pat) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let pat = pat
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .trim_end_matches('/');
                path_glob(pat).map(|g| (g, negate))
            })
            .collect();
        Ignore { rules }
    }

    /// Whether `rel` (relative to the context) is excluded.
    pub fn excluded(&self, rel: &Path) -> bool {
        let rel = rel.to_string_lossy();
        let mut prefixes: Vec<&str> = rel.match_indices('/').map(|(i, _)| &rel[..i]).collect();
        prefixes.push(&rel);
        let mut out = false;
        for (glob, negate) in &self.rules {
            if prefixes.iter().any(|p| glob.is_match(p)) {
                out = !negate;
            }
        }
        out
    }
}

/// A path glob as Docker reads one: `*`, `?` and `[...]` within one path component, `**` across
/// components. `None` if the pattern is not a valid glob.
pub fn path_glob(pattern: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_last_match_wins_and_parents_apply() {
        let ig = Ignore::parse("# comment\n*\n!dist/app\n!models/\nmodels/*.tmp\n");
        assert!(ig.excluded(Path::new("Dockerfile")));
        assert!(ig.excluded(Path::new("src/main.rs")));
        assert!(!ig.excluded(Path::new("dist/app")));
        assert!(ig.excluded(Path::new("dist/other")));
        assert!(!ig.excluded(Path::new("models/churn.json")));
        assert!(ig.excluded(Path::new("models/x.tmp")));
        let ig = Ignore::parse("**/*.log\n.git\n");
        assert!(ig.excluded(Path::new("a/b/c.log")) && ig.excluded(Path::new("c.log")));
        assert!(ig.excluded(Path::new(".git/config")));
        assert!(!ig.excluded(Path::new("a/b/c.txt")));
    }
}

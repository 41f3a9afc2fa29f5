//! Repository names and tags, validated per the distribution spec so that they are safe to map
//! onto directories (no `..`, no empty or absolute components), and what a registry's
//! `/manifests/<reference>` path names.

use std::fmt;

use crate::digest::Digest;

/// Longest repository name accepted (the spec suggests clients keep names under 255).
const MAX_NAME: usize = 255;

/// Longest tag accepted.
const MAX_TAG: usize = 128;

/// A validated repository name, e.g. `library/busybox`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validates `s` against `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > MAX_NAME {
            return None;
        }
        s.split('/')
            .all(valid_component)
            .then(|| RepoName(s.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: lowercase alphanumeric runs joined by `.`, `_`, `__` or runs of `-`.
pub(crate) fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or `-+`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates a tag.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let first = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        let rest = |x: u8| first(x) || x == b'.' || x == b'-';
        let ok =
            !b.is_empty() && b.len() <= MAX_TAG && first(b[0]) && b[1..].iter().all(|&x| rest(x));
        ok.then(|| Tag(s.to_string()))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a registry's `/manifests/<reference>` path names: a tag or a digest.
#[derive(Clone, Debug)]
pub enum TagOrDigest {
    /// A tag.
    Tag(Tag),
    /// A digest.
    Digest(Digest),
}

impl TagOrDigest {
    /// Parses a path reference: anything with `:` must be a digest, everything else a tag.
    pub fn parse(s: &str) -> Option<Self> {
        if s.contains(':') {
            s.parse().ok().map(TagOrDigest::Digest)
        } else {
            Tag::parse(s).map(TagOrDigest::Tag)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "library/busybox", "a.b_c__d--e/f-1", "x/y/z"] {
            assert!(RepoName::parse(good).is_some(), "{good}");
        }
        for bad in [
            "", "..", "a/../b", "/a", "a/", "A", "a//b", "a___b", "a.-b", "-a", "a/./b",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(Tag::parse("v1.0-rc_1").is_some());
        assert!(Tag::parse(".hidden").is_none());
        assert!(Tag::parse("a/b").is_none());
        assert!(Tag::parse(&"a".repeat(129)).is_none());
    }
}

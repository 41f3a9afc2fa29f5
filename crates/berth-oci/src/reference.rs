//! Image references: `[registry[:port]/]repository[:tag][@algorithm:hex]`.
//!
//! [`Reference::parse`] follows the grammar of the distribution project's reference package
//! (lowercase path components joined by `.`, `_`, `__` or runs of `-`; tags of up to 128 word
//! characters) and keeps what was written. berth works offline against its own registry, so the
//! normalised view ([`Reference::registry`], [`Reference::tag`], `Display`) resolves a bare name
//! (`churn-model:v1`, whose first component has no `.` or `:` and is not `localhost`) to
//! [`DEFAULT_REGISTRY`], `localhost:5000`, the port `berth server` serves its registry on; Docker
//! Hub defaults are not applied. A missing tag (without digest) means `latest`.

mod name;

use std::fmt;
use std::hash::{Hash, Hasher};

pub use name::{RepoName, Tag, TagOrDigest};

use crate::digest::Digest;

/// The registry bare names resolve to.
pub const DEFAULT_REGISTRY: &str = "localhost:5000";

/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";

/// Longest repository name (registry included).
const NAME_MAX: usize = 255;

/// A parsed image reference. Equality and hashing follow the normalised form, so `busybox` and
/// `localhost:5000/busybox:latest` are the same image.
#[derive(Debug, Clone)]
pub struct Reference {
    registry: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// The repository name, with its registry (the default one for a bare name), exceeds 255
    /// characters.
    #[error("repository name must not be more than {NAME_MAX} characters")]
    NameTooLong,
    /// A bad registry host.
    #[error("invalid registry host {0:?}")]
    Registry(String),
    /// A bad repository path component.
    #[error(
        "invalid repository path component {0:?} (lowercase letters, digits and separators . _ __ -)"
    )]
    Component(String),
    /// A bad tag.
    #[error("invalid tag {0:?} (up to 128 of [A-Za-z0-9_.-], not starting with . or -)")]
    Tag(String),
    /// A bad digest.
    #[error("invalid digest {0:?} (algorithm:hex)")]
    Digest(String),
}

impl Reference {
    /// Parses `s` strictly, keeping what was written (see the module docs for the defaults).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d)?)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(parse_tag(&rest[last_slash + i + 1..])?),
            ),
            None => (rest, None),
        };
        let (registry, repository) = split_registry(name);
        // The limit is on the name the reference means, so that what it prints parses again.
        if registry.unwrap_or(DEFAULT_REGISTRY).len() + 1 + repository.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        if let Some(reg) = registry {
            check_registry(reg)?;
        }
        if let Some(bad) = repository.split('/').find(|c| !name::valid_component(c)) {
            return Err(ReferenceError::Component(bad.to_string()));
        }
        Ok(Reference {
            registry: registry.map(str::to_string),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Registry host\[:port\], [`DEFAULT_REGISTRY`] when the reference names none.
    pub fn registry(&self) -> &str {
        self.registry.as_deref().unwrap_or(DEFAULT_REGISTRY)
    }

    /// The registry as written, if the reference names one.
    pub fn explicit_registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; [`DEFAULT_TAG`] when neither tag nor digest was given.
    pub fn tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG),
        }
    }

    /// The tag as written, if any.
    pub fn explicit_tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether the image it names may change: no digest, and tag `latest` or none.
    pub fn is_floating(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == DEFAULT_TAG)
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn object(&self) -> String {
        match &self.digest {
            Some(d) => d.to_string(),
            None => self.tag().unwrap_or(DEFAULT_TAG).to_string(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository)
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Self {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The normalised parts equality and hashing compare.
    fn key(&self) -> (&str, &str, Option<&str>, Option<&Digest>) {
        (self.registry(), &self.repository, self.tag(), self.digest())
    }
}

impl PartialEq for Reference {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Reference {}

impl Hash for Reference {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// The normalised form: `registry/repository[:tag][@digest]`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry(), self.repository)?;
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The first path component is a registry when it looks like a host: it has a `.` or a `:`, or
/// is `localhost` (docker's rule, so `library/busybox` stays a repository).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host[:port]` with DNS-label host components, or `[ipv6][:port]`.
fn check_registry(reg: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Registry(reg.to_string());
    let (host, port) = if let Some(v6) = reg.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        ("", after.strip_prefix(':'))
    } else {
        match reg.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (reg, None),
        }
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    if !host.is_empty() && !host.split('.').all(component_ok) {
        return Err(bad());
    }
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    Ok(())
}

fn parse_tag(t: &str) -> Result<String, ReferenceError> {
    Tag::parse(t)
        .map(|t| t.as_str().to_string())
        .ok_or_else(|| ReferenceError::Tag(t.to_string()))
}

fn parse_digest(d: &str) -> Result<Digest, ReferenceError> {
    Digest::parse(d).map_err(|_| ReferenceError::Digest(d.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_limit_counts_the_default_registry_so_printed_names_parse_again() {
        let longest = "a".repeat(NAME_MAX - DEFAULT_REGISTRY.len() - 1);
        let r = Reference::parse(&longest).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        assert!(matches!(
            Reference::parse(&format!("{longest}a")),
            Err(ReferenceError::NameTooLong)
        ));
    }

    #[test]
    fn parses_full_reference() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/team/churn-model:v1@{d}")).unwrap();
        assert_eq!(r.explicit_registry(), Some("localhost:5000"));
        assert_eq!(r.repository(), "team/churn-model");
        assert_eq!(r.explicit_tag(), Some("v1"));
        assert_eq!(
            r.digest().map(ToString::to_string).as_deref(),
            Some(d.as_str())
        );
        assert_eq!(
            r.to_string(),
            format!("localhost:5000/team/churn-model:v1@{d}")
        );
    }

    #[test]
    fn docker_hub_style_names_have_no_registry() {
        let r = Reference::parse("library/busybox").unwrap();
        assert_eq!(r.explicit_registry(), None);
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.explicit_tag(), None);
        let r = Reference::parse("busybox:1.36").unwrap();
        assert_eq!(
            (r.repository(), r.explicit_tag()),
            ("busybox", Some("1.36"))
        );
        assert!(
            Reference::parse("localhost/x")
                .unwrap()
                .explicit_registry()
                .is_some()
        );
        assert!(
            Reference::parse("[::1]:5000/x")
                .unwrap()
                .explicit_registry()
                .is_some()
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Upper/case",
            "a//b",
            "a:",
            "a:-tag",
            "repo@sha256:abc",
            "repo@sha256",
            "-a",
            "a..b",
            "reg:port/x",
            "has space",
            &format!("x:{}", "t".repeat(129)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Reference::parse("a___b"),
            Err(ReferenceError::Component("a___b".into()))
        );
        assert!(Reference::parse("a__b.c-d---e").is_ok());
    }

    #[test]
    fn normalises_forms() {
        let r = Reference::parse("churn-model:v1").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "churn-model", Some("v1"))
        );
        let r = Reference::parse("127.0.0.1:5001/team/model").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5001", "team/model", Some("latest"))
        );
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("localhost/a/b:t@{d}")).unwrap();
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.object(), d.to_string());
        assert_eq!(r.to_string(), format!("localhost/a/b:t@{d}"));
        assert_eq!(
            Reference::parse("ghcr.io/x/y:1.0").unwrap().to_string(),
            "ghcr.io/x/y:1.0"
        );
        assert!(Reference::parse("UPPER:1").is_err());
        assert!(Reference::parse("a:bad tag").is_err());
        assert!(Reference::parse("localhost:5000/").is_err());
    }

    #[test]
    fn equality_follows_the_normalised_form() {
        let bare = Reference::parse("busybox").unwrap();
        assert_eq!(
            bare,
            Reference::parse("localhost:5000/busybox:latest").unwrap()
        );
        assert_eq!(bare.to_string(), "localhost:5000/busybox:latest");
        assert!(bare.is_floating());
        assert!(!Reference::parse("busybox:1").unwrap().is_floating());
        let pinned = Reference::parse(&format!("busybox@{}", Digest::of(b"x"))).unwrap();
        assert!(!pinned.is_floating());
        assert_eq!(pinned.tag(), None);
    }
}

//! Image references: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
//!
//! berth works offline against its own registry, so a bare name (`churn-model:v1`, whose first
//! component has no `.` or `:` and is not `localhost`) resolves to [`DEFAULT_REGISTRY`],
//! `localhost:5000`, the port `berth server` serves its registry on. Docker Hub defaults are not
//! applied. A missing tag means `latest`.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The registry bare names resolve to.
pub const DEFAULT_REGISTRY: &str = "localhost:5000";

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host\[:port\].
    pub registry: String,
    /// Repository path inside the registry.
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Digest, if pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference string.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why| Error::InvalidReference(s.to_string(), why);
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if repository.is_empty() {
            return Err(bad("empty repository"));
        }
        let repo_ok = repository.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if !repo_ok {
            return Err(bad(
                "repository must be lowercase [a-z0-9._-] components separated by '/'",
            ));
        }
        if let Some(t) = &tag {
            let tag_ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !tag_ok {
                return Err(bad("invalid tag"));
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Self {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let r = Reference::parse("churn-model:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "churn-model", Some("v1"))
        );
        let r = Reference::parse("127.0.0.1:5001/team/model").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5001", "team/model", Some("latest"))
        );
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("localhost/a/b:t@{d}")).unwrap();
        assert_eq!(r.registry, "localhost");
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
}

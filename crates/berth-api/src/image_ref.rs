//! Image references: `[registry[:port]/]repository[:tag][@algorithm:hex]`, following the grammar
//! of the distribution project's reference package (lowercase path components joined by `.`,
//! `_`, `__` or runs of `-`; tags of up to 128 word characters; digests of at least 32 hex).

use std::fmt;

/// Longest repository name (registry included).
const NAME_MAX: usize = 255;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), if the reference names one.
    pub registry: Option<String>,
    /// Repository path within the registry, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`algorithm:hex`), if any.
    pub digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// The repository name exceeds 255 characters.
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

impl ImageRef {
    /// Parses `s` as an image reference.
    pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
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
        if name.len() > NAME_MAX {
            return Err(ImageRefError::NameTooLong);
        }
        let (registry, repository) = split_registry(name);
        if let Some(reg) = registry {
            check_registry(reg)?;
        }
        repository.split('/').try_for_each(check_component)?;
        Ok(ImageRef {
            registry: registry.map(str::to_string),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
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

fn check_registry(reg: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::Registry(reg.to_string());
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

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn check_component(c: &str) -> Result<(), ImageRefError> {
    let bad = || ImageRefError::Component(c.to_string());
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    if !c.starts_with(alnum) || !c.ends_with(alnum) {
        return Err(bad());
    }
    let mut sep = String::new();
    for ch in c.chars() {
        if alnum(ch) {
            let ok = sep.is_empty()
                || sep == "."
                || sep == "_"
                || sep == "__"
                || sep.chars().all(|s| s == '-');
            if !ok {
                return Err(bad());
            }
            sep.clear();
        } else if matches!(ch, '.' | '_' | '-') {
            sep.push(ch);
        } else {
            return Err(bad());
        }
    }
    Ok(())
}

fn parse_tag(t: &str) -> Result<String, ImageRefError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok =
        t.len() <= 128 && t.starts_with(word) && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(t.to_string())
    } else {
        Err(ImageRefError::Tag(t.to_string()))
    }
}

fn parse_digest(d: &str) -> Result<String, ImageRefError> {
    let bad = || ImageRefError::Digest(d.to_string());
    let (alg, hex) = d.split_once(':').ok_or_else(bad)?;
    let alg_ok = !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    let hex_ok = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    let len_ok = match alg {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => true,
    };
    if alg_ok && hex_ok && len_ok {
        Ok(d.to_string())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_reference() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost:5000/team/churn-model:v1@{d}")).unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "team/churn-model");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(
            r.to_string(),
            format!("localhost:5000/team/churn-model:v1@{d}")
        );
    }

    #[test]
    fn docker_hub_style_names_have_no_registry() {
        let r = ImageRef::parse("library/busybox").unwrap();
        assert_eq!(r.registry, None);
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag, None);
        let r = ImageRef::parse("busybox:1.36").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("busybox", Some("1.36"))
        );
        assert!(ImageRef::parse("localhost/x").unwrap().registry.is_some());
        assert!(ImageRef::parse("[::1]:5000/x").unwrap().registry.is_some());
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
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ImageRef::parse("a___b"),
            Err(ImageRefError::Component("a___b".into()))
        );
        assert!(ImageRef::parse("a__b.c-d---e").is_ok());
    }
}

//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and the streaming hashers that compute them.
//!
//! A [`Digest`] is validated on construction: a known algorithm and its lowercase hex of the
//! right length, so its hex is safe to use as a file name. oci-spec's
//! [`oci_spec::image::Digest`] accepts any algorithm; berth only computes and stores the two it
//! can hash, and converts to and from oci-spec's type where the two meet.

use std::fmt;
use std::str::FromStr;

/// A digest algorithm berth computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`, the default.
    Sha256,
    /// `sha512`, accepted when a client asks for it.
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings and on disk.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Parses an algorithm name (`sha256`, `sha512`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Length of the hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        let alg = match self {
            Algorithm::Sha256 => &ring::digest::SHA256,
            Algorithm::Sha512 => &ring::digest::SHA512,
        };
        Hasher {
            algorithm: self,
            context: ring::digest::Context::new(alg),
        }
    }
}

/// A validated digest: a known algorithm and its lowercase hex encoding of the right length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}")]
pub struct InvalidDigest(pub String);

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Self, InvalidDigest> {
        let bad = || InvalidDigest(s.to_string());
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let algorithm = Algorithm::from_name(alg).ok_or_else(bad)?;
        let ok = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(bad());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The SHA-256 digest of `data` (what berth writes).
    pub fn of(data: &[u8]) -> Self {
        Self::of_with(Algorithm::Sha256, data)
    }

    /// The digest of `data` with `algorithm`.
    pub fn of_with(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }

    /// The finished digest of a running hasher.
    pub fn from_hasher(h: Hasher) -> Self {
        h.finish()
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Its lowercase hex part (used as the blob file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `docker images` shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Whether `data` hashes to this digest.
    pub fn matches(&self, data: &[u8]) -> bool {
        Self::of_with(self.algorithm, data) == *self
    }
}

/// A running digest computation (also an `io::Write` sink, for `io::copy`); cloneable so a
/// failed chunk can be rolled back.
#[derive(Clone)]
pub struct Hasher {
    algorithm: Algorithm,
    context: ring::digest::Context,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    /// A fresh SHA-256 hasher.
    pub fn new() -> Self {
        Algorithm::Sha256.hasher()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.context.update(data);
    }

    /// The algorithm it computes.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest {
            algorithm: self.algorithm,
            hex: hex::encode(self.context.finish().as_ref()),
        }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

// Debug shows the digest string: derived output would bury it in struct syntax in test failures.
impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = InvalidDigest;
    /// Accepts oci-spec digests of the algorithms berth computes.
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse("md5:2cf24dba5fb0a30e26e83b2ac5b9e29e").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "G".repeat(64))).is_err());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
    }

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::of_with(Algorithm::Sha256, b""));
        for bad in [
            "sha256:abc",
            "md5:00",
            "sha256:../../etc/passwd",
            "sha256",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sha512_hashers_and_oci_spec_conversion() {
        let mut h = Algorithm::Sha512.hasher();
        h.update(b"he");
        let rollback = h.clone();
        h.update(b"llo");
        let d = h.finish();
        assert_eq!(d, Digest::of_with(Algorithm::Sha512, b"hello"));
        assert_eq!(d.hex().len(), 128);
        assert!(d.matches(b"hello") && !d.matches(b"he"));
        assert_eq!(rollback.finish(), Digest::of_with(Algorithm::Sha512, b"he"));
        let oci: oci_spec::image::Digest = d.to_string().parse().unwrap();
        assert_eq!(Digest::try_from(&oci).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}

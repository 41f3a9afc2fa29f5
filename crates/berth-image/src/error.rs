//! The crate's error type.

use std::path::PathBuf;

use berth_oci::digest::InvalidDigest;
use berth_oci::manifest::ManifestError;
use berth_oci::reference::ReferenceError;

/// Errors of content storage, registries and image handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A digest string is not `algorithm:<lowercase hex>` of a known algorithm.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// Received content does not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest that was announced.
        expected: String,
        /// The digest of the bytes actually received.
        actual: String,
    },
    /// A blob is not in the content store.
    #[error("blob {0} not found in the content store")]
    BlobNotFound(String),
    /// An image reference could not be parsed.
    #[error("invalid image reference: {0}")]
    InvalidReference(#[from] ReferenceError),
    /// JSON (manifest, index, config, credentials) could not be decoded or encoded.
    #[error("{what}: {source}")]
    Json {
        /// What was being decoded.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// An HTTP request failed before a response arrived.
    #[error("request to {url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: registry answered {status}: {body}")]
    Registry {
        /// HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (registry error JSON).
        body: String,
    },
    /// Authentication with the registry failed.
    #[error("authentication with {registry} failed: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// Why.
        reason: String,
    },
    /// A manifest or index is unusable (unknown media type, no matching platform...).
    #[error("manifest: {0}")]
    Manifest(String),
    /// A local image name is not known.
    #[error("image {0} not found locally")]
    ImageNotFound(String),
    /// A layer's media type names no compression berth can undo.
    #[error(transparent)]
    MediaType(#[from] berth_oci::unpack::UnsupportedMediaType),
    /// A layer could not be unpacked (it tries to leave the root, or is malformed).
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer blob's digest.
        layer: String,
        /// What the unpacker refused or failed at.
        source: berth_oci::unpack::UnpackError,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with what was being decoded.
    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }
}

impl From<InvalidDigest> for Error {
    fn from(e: InvalidDigest) -> Self {
        Error::InvalidDigest(e.0)
    }
}

/// Keeps the messages the image client gave before the manifest code moved to berth-oci.
impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::Json(source) => Error::json("manifest", source),
            ManifestError::Decode { what, source } => Error::json(what, source),
            ManifestError::Digest(d) => Error::InvalidDigest(d),
            ManifestError::MediaType(_) | ManifestError::NoPlatform { .. } => {
                Error::Manifest(e.to_string())
            }
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

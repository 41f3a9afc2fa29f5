//! Just enough understanding of manifests to validate pushes, answer referrers and collect
//! garbage: which blobs and child manifests a manifest names, and its subject.

use serde::Deserialize;

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of a manifest shape.
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The declared media type disagrees with Content-Type or is not supported.
    #[error("{0}")]
    MediaType(String),
    /// A descriptor carries a malformed digest.
    #[error("descriptor has invalid digest {0:?}")]
    Digest(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    urls: Vec<String>,
}

/// A parsed manifest or index.
#[derive(Debug)]
pub struct Manifest {
    /// Its media type (from Content-Type or the body).
    pub media_type: String,
    /// Config and layer blobs that must be present in the repository (foreign and
    /// non-distributable layers, which clients fetch elsewhere, are left out).
    pub blobs: Vec<Digest>,
    /// Child manifests of an index.
    pub children: Vec<Digest>,
    /// The manifest this one refers to (may be absent from the registry).
    pub subject: Option<Digest>,
    /// `artifactType`, else the config media type (what referrers report).
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Manifest {
    /// Parses `bytes`; `content_type` is the request's Content-Type (None when reading back).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: Raw = serde_json::from_slice(bytes)?;
        let media_type = media_type_of(&raw, content_type)?;
        let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        if is_index {
            for m in raw.manifests.iter().flatten() {
                children.push(parse_digest(&m.digest)?);
            }
        } else {
            if let Some(c) = &raw.config {
                blobs.push(parse_digest(&c.digest)?);
            }
            for l in &raw.layers {
                let d = parse_digest(&l.digest)?;
                if !is_external(l) {
                    blobs.push(d);
                }
            }
        }
        let subject = raw
            .subject
            .as_ref()
            .map(|s| parse_digest(&s.digest))
            .transpose()?;
        let artifact_type = raw.artifact_type.clone().or_else(|| {
            raw.config
                .as_ref()
                .and_then(|c| c.media_type.clone())
                .filter(|_| !is_index)
        });
        Ok(Manifest {
            media_type,
            blobs,
            children,
            subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }
}

/// Foreign (Docker) and non-distributable (OCI) layers and layers with `urls` are not pushed.
fn is_external(d: &RawDescriptor) -> bool {
    let mt = d.media_type.as_deref().unwrap_or("");
    !d.urls.is_empty() || mt.contains("nondistributable") || mt.contains("foreign")
}

fn parse_digest(s: &str) -> Result<Digest, ManifestError> {
    s.parse().map_err(|_| ManifestError::Digest(s.to_string()))
}

/// The media type: the body's `mediaType` must agree with Content-Type when both are given.
fn media_type_of(raw: &Raw, content_type: Option<&str>) -> Result<String, ManifestError> {
    let known = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
    // Parameters such as `; charset=utf-8` are not part of the type, and generic types
    // (`application/json`) sent by simple clients say nothing about the manifest.
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| known.contains(&c.as_str()));
    let chosen = match (raw.media_type.as_deref(), header.as_deref()) {
        (Some(body), Some(h)) if body != h => {
            return Err(ManifestError::MediaType(format!(
                "mediaType {body:?} does not match Content-Type {h:?}"
            )));
        }
        (Some(body), _) => body.to_string(),
        (None, Some(h)) => h.to_string(),
        // No type anywhere: infer from shape (OCI allows omitting mediaType).
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if !known.contains(&chosen.as_str()) {
        return Err(ManifestError::MediaType(format!(
            "unsupported manifest media type {chosen:?}"
        )));
    }
    Ok(chosen)
}

//! Manifests, indexes and descriptors (OCI and Docker schema 2), platform resolution, and the
//! [`Summary`] a registry checks pushes against.
//!
//! These are berth's own types rather than oci-spec's `ImageManifest`/`ImageIndex`: their
//! digests are berth's validated [`Digest`] (checked while decoding, so a hostile manifest cannot
//! name a path-like blob), Docker schema-2 documents decode into the same shapes, and the image
//! builder writes them field by field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media::{self, DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST};

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of a manifest shape (registry pushes).
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A document of `what` kind could not be decoded (client reads).
    #[error("{what}: {source}")]
    Decode {
        /// What was being decoded (`manifest`, `image index`, ...).
        what: &'static str,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The declared media type disagrees with Content-Type or is not supported.
    #[error("{0}")]
    MediaType(String),
    /// A descriptor carries a malformed digest.
    #[error("descriptor has invalid digest {0:?}")]
    Digest(String),
    /// An index has no manifest for the wanted platform.
    #[error("no {os}/{arch} manifest in the index")]
    NoPlatform {
        /// Operating system asked for.
        os: String,
        /// Architecture asked for.
        arch: String,
    },
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform (only in indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A platform entry of an index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2; same shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / manifest list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Child manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A decoded manifest document.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// A single-platform image manifest.
    Manifest(Manifest),
    /// A multi-platform index.
    Index(Index),
}

impl Document {
    /// Decodes bytes, using the Content-Type header if given and else the `mediaType` field or the
    /// presence of `manifests`.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let decode = |what| move |source| ManifestError::Decode { what, source };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(decode("manifest"))?;
        let media = content_type
            .map(|c| media::essence(c).to_string())
            .filter(|c| !c.is_empty() && c != "application/json" && c != "application/octet-stream")
            .or_else(|| {
                value
                    .get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            });
        let is_index = match media.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            Some(other) => {
                return Err(ManifestError::MediaType(format!(
                    "unsupported media type {other}"
                )));
            }
            None => value.get("manifests").is_some(),
        };
        if is_index {
            serde_json::from_value(value)
                .map(Document::Index)
                .map_err(decode("image index"))
        } else {
            serde_json::from_value(value)
                .map(Document::Manifest)
                .map_err(decode("image manifest"))
        }
    }
}

impl Index {
    /// Picks the manifest for `os`/`arch`, skipping attestation and unknown-platform entries.
    pub fn select(&self, os: &str, arch: &str) -> Result<&Descriptor, ManifestError> {
        self.manifests
            .iter()
            .filter(|d| {
                d.annotations
                    .get("vnd.docker.reference.type")
                    .map(String::as_str)
                    != Some("attestation-manifest")
            })
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == arch)
            })
            .ok_or_else(|| ManifestError::NoPlatform {
                os: os.to_string(),
                arch: arch.to_string(),
            })
    }
}

/// The architecture name OCI uses for the machine berth runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What a registry needs to know of a pushed manifest or index to validate it, answer referrers
/// and collect garbage: which blobs and child manifests it names, and its subject.
#[derive(Debug)]
pub struct Summary {
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

/// The loosely typed form a registry accepts: unknown fields are kept out of the way and digests
/// are checked one by one so the error can name the bad one.
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

impl Summary {
    /// Parses `bytes`; `content_type` is the request's Content-Type (None when reading back).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: Raw = serde_json::from_slice(bytes)?;
        let media_type = media_type_of(&raw, content_type)?;
        let is_index = media::is_index(&media_type);
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
        Ok(Summary {
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
    // Generic types (`application/json`) sent by simple clients say nothing about the manifest.
    let header = content_type
        .map(media::essence)
        .filter(|c| MANIFEST_TYPES.contains(c));
    let chosen = match (raw.media_type.as_deref(), header) {
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
    if !MANIFEST_TYPES.contains(&chosen.as_str()) {
        return Err(ManifestError::MediaType(format!(
            "unsupported manifest media type {chosen:?}"
        )));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(
        media: &str,
        data: &[u8],
        platform: Option<(&str, &str)>,
        attest: bool,
    ) -> serde_json::Value {
        let mut v = serde_json::json!({"mediaType": media, "digest": Digest::of(data).to_string(), "size": data.len()});
        if let Some((os, arch)) = platform {
            v["platform"] = serde_json::json!({"os": os, "architecture": arch});
        }
        if attest {
            v["annotations"] =
                serde_json::json!({"vnd.docker.reference.type": "attestation-manifest"});
        }
        v
    }

    #[test]
    fn index_selects_linux_amd64_skipping_attestations() {
        let idx = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                desc(OCI_MANIFEST, b"arm", Some(("linux", "arm64")), false),
                desc(OCI_MANIFEST, b"att", Some(("linux", "amd64")), true),
                desc(OCI_MANIFEST, b"unk", Some(("unknown", "unknown")), false),
                desc(OCI_MANIFEST, b"amd", Some(("linux", "amd64")), false),
            ]
        });
        let bytes = serde_json::to_vec(&idx).unwrap();
        let Document::Index(i) = Document::parse(&bytes, None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            i.select("linux", "amd64").unwrap().digest,
            Digest::of(b"amd")
        );
        assert!(i.select("windows", "amd64").is_err());
    }

    #[test]
    fn docker_manifest_by_content_type() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": desc("application/vnd.docker.container.image.v1+json", b"cfg", None, false),
            "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", b"l1", None, false)]
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let Document::Manifest(m) = Document::parse(&bytes, Some(DOCKER_MANIFEST)).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert!(
            Document::parse(
                &bytes,
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            )
            .is_err()
        );
        let list =
            serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": []});
        assert!(matches!(
            Document::parse(&serde_json::to_vec(&list).unwrap(), None).unwrap(),
            Document::Index(_)
        ));
    }

    #[test]
    fn summary_names_blobs_children_and_subject() {
        let subject = desc(OCI_MANIFEST, b"subj", None, false);
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": desc("application/vnd.example+json", b"cfg", None, false),
            "layers": [
                desc(media::OCI_LAYER_GZIP, b"l1", None, false),
                desc("application/vnd.oci.image.layer.nondistributable.v1.tar", b"l2", None, false),
            ],
            "subject": subject,
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let s = Summary::parse(&bytes, Some("application/json; charset=utf-8")).unwrap();
        assert_eq!(s.media_type, OCI_MANIFEST);
        assert_eq!(s.blobs, vec![Digest::of(b"cfg"), Digest::of(b"l1")]);
        assert_eq!(s.subject, Some(Digest::of(b"subj")));
        assert_eq!(
            s.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        assert!(matches!(
            Summary::parse(&bytes, Some(OCI_INDEX)),
            Ok(Summary { ref media_type, .. }) if media_type == OCI_INDEX
        ));
        let typed =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []});
        let bytes = serde_json::to_vec(&typed).unwrap();
        assert!(matches!(
            Summary::parse(&bytes, Some(OCI_INDEX)),
            Err(ManifestError::MediaType(_))
        ));
        let bad = br#"{"schemaVersion": 2, "layers": [{"digest": "sha256:../x"}]}"#;
        assert!(matches!(
            Summary::parse(bad, None),
            Err(ManifestError::Digest(_))
        ));
    }
}

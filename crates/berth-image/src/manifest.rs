//! Manifests, indexes and descriptors (OCI and Docker schema 2), and platform resolution.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The Accept header value asking for every manifest kind berth understands.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

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
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::json("manifest", e))?;
        let media = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
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
            Some(other) => return Err(Error::Manifest(format!("unsupported media type {other}"))),
            None => value.get("manifests").is_some(),
        };
        if is_index {
            serde_json::from_value(value)
                .map(Document::Index)
                .map_err(|e| Error::json("image index", e))
        } else {
            serde_json::from_value(value)
                .map(Document::Manifest)
                .map_err(|e| Error::json("image manifest", e))
        }
    }
}

impl Index {
    /// Picks the manifest for `os`/`arch`, skipping attestation and unknown-platform entries.
    pub fn select(&self, os: &str, arch: &str) -> Result<&Descriptor> {
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
            .ok_or_else(|| Error::Manifest(format!("no {os}/{arch} manifest in the index")))
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
}

//! Media types berth reads and writes: OCI manifests, indexes, configs and layers, and the
//! Docker schema-2 manifest and list types registries still serve.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip-compressed layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker image manifest v2, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type berth understands.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// The Accept header value asking for every manifest kind berth understands.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `media_type` is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The type of a Content-Type header value without parameters (`; charset=utf-8`) or whitespace.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    #[test]
    fn constants_agree_with_oci_spec() {
        assert_eq!(OCI_MANIFEST, MediaType::ImageManifest.to_string());
        assert_eq!(OCI_INDEX, MediaType::ImageIndex.to_string());
        assert_eq!(OCI_CONFIG, MediaType::ImageConfig.to_string());
        assert_eq!(OCI_LAYER_GZIP, MediaType::ImageLayerGzip.to_string());
        assert_eq!(ACCEPT_ALL, MANIFEST_TYPES.join(", "));
        assert!(is_index(DOCKER_LIST) && !is_index(DOCKER_MANIFEST));
        assert_eq!(
            essence(" application/json ; charset=utf-8"),
            "application/json"
        );
    }
}

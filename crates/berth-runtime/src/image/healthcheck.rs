//! The image config as pulled, for `ImageStatus` with `verbose=true`.
//!
//! An [`ImageRecord`] keeps the config parsed as an OCI image configuration, which has no place
//! for Docker's extensions (`config.Healthcheck` above all). A node agent needs the image's
//! HEALTHCHECK to run it as a liveness probe, so the verbose `ImageStatus` answers with the
//! config blob exactly as the registry served it, the way containerd does:
//! `info["info"] = {"imageSpec": <image config JSON>}`.

use std::collections::HashMap;

use berth_image::Digest;

use super::{ImageError, ImageRecord, ImageStore};

/// The key of `ImageStatusResponse.info` that holds the verbose JSON (containerd's).
pub const INFO_KEY: &str = "info";

impl ImageStore {
    /// The image's config blob (id = its digest) as JSON, Docker extensions included. Falls back
    /// to the parsed config when the blob is gone from the content store.
    pub fn config_json(&self, record: &ImageRecord) -> Result<serde_json::Value, ImageError> {
        let digest = Digest::parse(&record.id).map_err(berth_image::Error::from)?;
        if self.content.exists(&digest) {
            let raw = self.content.read(&digest)?;
            if let Ok(value) = serde_json::from_slice(&raw) {
                return Ok(value);
            }
        }
        serde_json::to_value(&record.config).map_err(|e| ImageError::Io(std::io::Error::other(e)))
    }
}

/// The verbose `ImageStatusResponse.info` map for an image config: `{"info": {"imageSpec": ..}}`.
pub fn verbose_info(config: serde_json::Value) -> HashMap<String, String> {
    let info = serde_json::json!({ "imageSpec": config });
    HashMap::from([(INFO_KEY.to_string(), info.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_info_nests_the_config_under_image_spec() {
        let config = serde_json::json!({"config": {"Healthcheck": {"Test": ["CMD", "true"]}}});
        let info = verbose_info(config.clone());
        let parsed: serde_json::Value =
            serde_json::from_str(&info[INFO_KEY]).expect("verbose info is JSON");
        assert_eq!(parsed["imageSpec"], config);
    }
}

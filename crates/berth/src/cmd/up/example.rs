//! The churn-model example: where its sources and manifest are, the manifest as `berth up` applies
//! it (image and service port adjusted to this server), the apply, and how to call it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_api::ModelService;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

/// The ModelService's name in the manifest.
pub const NAME: &str = "churn-model";
/// Its namespace.
pub const NAMESPACE: &str = "default";
/// The image's repository and tag in the registry (the manifest names localhost:5000/<this>).
pub const IMAGE_PATH: &str = "churn-model:v1";
/// The field manager `berth up` applies as (the same as `berth apply`, so the two agree).
const FIELD_MANAGER: &str = super::super::apply::FIELD_MANAGER;
/// A request the model answers (every feature of models/churn.json).
const PREDICT_BODY: &str = r#"{"tenure_months": 2, "monthly_charges": 95.5, "support_tickets": 5, "contract_monthly": true, "paperless_billing": 1, "num_products": 1}"#;

/// A berth source checkout with the example in it.
pub struct Source {
    root: PathBuf,
}

impl Source {
    /// `dir`, else the current directory if it holds the example, else the checkout this binary
    /// was built from.
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Source> {
        let candidates: Vec<PathBuf> = match dir {
            Some(d) => vec![d.to_path_buf()],
            None => {
                let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
                std::env::current_dir()
                    .into_iter()
                    .chain([built_from])
                    .collect()
            }
        };
        for root in &candidates {
            let s = Source { root: root.clone() };
            if s.example_dir().join("Dockerfile").is_file() && s.manifest_path().is_file() {
                return Ok(s);
            }
        }
        anyhow::bail!(
            "no berth checkout with examples/churn-model and manifests/examples/churn-model.yaml in {}: \
             run berth up from the source checkout or pass --source-dir",
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }

    /// The checkout's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// examples/churn-model.
    pub fn example_dir(&self) -> PathBuf {
        self.root.join("examples/churn-model")
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join("manifests/examples/churn-model.yaml")
    }
}

/// The example's ModelService as JSON, with `image` and (if given) `service.port` replaced.
pub fn manifest(source: &Source, image: &str, service_port: Option<u16>) -> anyhow::Result<Value> {
    let path = source.manifest_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut obj: Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(
        obj["kind"] == "ModelService" && obj["metadata"]["name"] == NAME,
        "{} is not the {NAME} ModelService",
        path.display()
    );
    obj["spec"]["image"] = Value::from(image);
    if let Some(port) = service_port {
        obj["spec"]["service"]["port"] = Value::from(port);
    }
    Ok(obj)
}

/// The service port the manifest ends up with.
pub fn service_port(manifest: &Value) -> u64 {
    manifest["spec"]["service"]["port"].as_u64().unwrap_or(8000)
}

/// Server-side apply of the ModelService, like `berth apply`. Fields another manager took over
/// (e.g. replicas after `berth scale`) are left to it: `up` resumes, it does not reset.
pub async fn apply(client: &kube::Client, manifest: &Value) -> anyhow::Result<()> {
    let api: Api<ModelService> = Api::namespaced(client.clone(), NAMESPACE);
    let params = PatchParams::apply(FIELD_MANAGER);
    match api.patch(NAME, &params, &Patch::Apply(manifest)).await {
        Ok(_) => {
            eprintln!("berth up: modelservice/{NAME} applied");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            eprintln!(
                "berth up: modelservice/{NAME} has fields changed by others; keeping them ({})",
                s.message
            );
            Ok(())
        }
        Err(e) => Err(crate::client::errors::explain(e)),
    }
}

/// The command line that calls the example through its service port on this machine.
pub fn curl_line(port: u64) -> String {
    curl_line_to("localhost", port)
}

/// The command line that calls the example through its service port on `host`.
pub fn curl_line_to(host: &str, port: u64) -> String {
    format!("curl -X POST {host}:{port}/predict -d '{PREDICT_BODY}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_takes_this_servers_image_and_port() {
        let source = Source::locate(Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.."
        ))))
        .unwrap();
        let m = manifest(&source, "localhost:5123/churn-model:v1", Some(18000)).unwrap();
        assert_eq!(m["spec"]["image"], "localhost:5123/churn-model:v1");
        assert_eq!(service_port(&m), 18000);
        let untouched = manifest(&source, "localhost:5000/churn-model:v1", None).unwrap();
        assert_eq!(service_port(&untouched), 8000);
        assert!(curl_line(18000).starts_with("curl -X POST localhost:18000/predict -d '{"));
    }

    #[test]
    fn the_printed_body_names_every_model_feature() {
        let source = Source::locate(Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.."
        ))))
        .unwrap();
        let model: Value = serde_json::from_str(
            &std::fs::read_to_string(source.example_dir().join("models/churn.json")).unwrap(),
        )
        .unwrap();
        let body: Value = serde_json::from_str(PREDICT_BODY).unwrap();
        let features: Vec<&str> = model["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(features.len(), keys.len());
        assert!(
            features.iter().all(|f| keys.contains(f)),
            "{keys:?} vs {features:?}"
        );
    }
}

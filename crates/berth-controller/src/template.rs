//! The Pod template of a ModelService: what every replica of the current spec looks like, and a
//! short hash of it that names the revision (`pod-template-hash`).

use std::collections::BTreeMap;

use berth_api::ModelServiceSpec;
use berth_api::image::default_pull_policy;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use sha2::{Digest, Sha256};

use berth_api::labels::MODELSERVICE_LABEL;

/// Name of the single container of every ModelService Pod.
pub const CONTAINER_NAME: &str = "model";

/// The revision-defining part of a Pod: its labels (without the hash) and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTemplate {
    /// Labels every Pod of the service carries.
    pub labels: BTreeMap<String, String>,
    /// The Pod spec.
    pub spec: PodSpec,
}

impl PodTemplate {
    /// The template of ModelService `name` with `spec` (replicas and strategy do not matter).
    pub fn from_spec(name: &str, spec: &ModelServiceSpec) -> Self {
        let container = Container {
            name: CONTAINER_NAME.to_string(),
            image: Some(spec.image.clone()),
            command: non_empty(&spec.command),
            args: non_empty(&spec.args),
            env: non_empty(&spec.env),
            ports: non_empty(&spec.ports),
            readiness_probe: spec.readiness_probe.clone(),
            liveness_probe: spec.liveness_probe.clone(),
            startup_probe: spec.startup_probe.clone(),
            resources: spec.resources.clone(),
            security_context: spec.security_context.clone(),
            image_pull_policy: Some(pull_policy(spec).to_string()),
            ..Container::default()
        };
        let pod_spec = PodSpec {
            containers: vec![container],
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: non_empty(&spec.tolerations),
            restart_policy: Some("Always".to_string()),
            ..PodSpec::default()
        };
        let labels = BTreeMap::from([(MODELSERVICE_LABEL.to_string(), name.to_string())]);
        PodTemplate {
            labels,
            spec: pod_spec,
        }
    }

    /// A short, stable hash of the template (10 hex digits of SHA-256 over its JSON form).
    ///
    /// serde_json writes struct fields in declaration order and maps in key order (BTreeMap), so
    /// equal templates always give equal bytes.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(&(&self.labels, &self.spec)).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        hex::encode(&digest[..5])
    }
}

fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// The spec's pull policy, else the default for its image.
fn pull_policy(spec: &ModelServiceSpec) -> &'static str {
    spec.image_pull_policy
        .unwrap_or_else(|| default_pull_policy(&spec.image))
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

    fn spec(image: &str) -> ModelServiceSpec {
        ModelServiceSpec {
            image: image.to_string(),
            replicas: 3,
            ..Default::default()
        }
    }

    #[test]
    fn hash_is_stable_and_ignores_replicas_and_strategy() {
        let a = PodTemplate::from_spec("m", &spec("img:1"));
        let mut s = spec("img:1");
        s.replicas = 7;
        s.strategy = Some(Default::default());
        let b = PodTemplate::from_spec("m", &s);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 10);
        assert!(a.hash().chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn hash_changes_with_image_and_env() {
        let base = PodTemplate::from_spec("m", &spec("img:1")).hash();
        assert_ne!(base, PodTemplate::from_spec("m", &spec("img:2")).hash());
        let mut s = spec("img:1");
        s.env = vec![EnvVar {
            name: "A".into(),
            value: Some("1".into()),
            ..Default::default()
        }];
        let one = PodTemplate::from_spec("m", &s).hash();
        s.env[0].value = Some("2".into());
        let two = PodTemplate::from_spec("m", &s).hash();
        assert_ne!(base, one);
        assert_ne!(one, two);
    }

    #[test]
    fn pod_spec_carries_the_container_settings() {
        let mut s = spec("reg:5000/m:latest");
        s.command = vec!["serve".into()];
        s.node_selector = BTreeMap::from([("gpu".into(), "yes".into())]);
        s.tolerations = vec![k8s_openapi::api::core::v1::Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        let t = PodTemplate::from_spec("m", &s);
        let c = &t.spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("reg:5000/m:latest"));
        assert_eq!(c.command, Some(vec!["serve".to_string()]));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(t.spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            t.spec
                .node_selector
                .as_ref()
                .and_then(|n| n.get("gpu"))
                .map(String::as_str),
            Some("yes")
        );
        assert_eq!(t.spec.tolerations, Some(s.tolerations.clone()));
        assert_eq!(
            t.labels.get(MODELSERVICE_LABEL).map(String::as_str),
            Some("m")
        );
        let pinned = PodTemplate::from_spec("m", &spec("m:v1"));
        assert_eq!(
            pinned.spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
    }
}

//! The `ModelService` custom resource (`berth.dev/v1alpha1`, short name `ms`).
//!
//! A ModelService is what users write: one container image served by N identical replicas,
//! rolled out like a Deployment and exposed on a service port. Field names follow Kubernetes
//! conventions (camelCase on the wire) and reuse the core/v1 types where Kubernetes has one,
//! so probes, env and resources read exactly like in a Pod spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvVar, Probe, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a ModelService.
// Each printcolumn repeats keys like `type_`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "ModelService",
    plural = "modelservices",
    singular = "modelservice",
    shortname = "ms",
    category = "all",
    namespaced,
    status = "ModelServiceStatus",
    derive = "PartialEq",
    doc = "A model server image run as N identical replicas, rolled out like a Deployment.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        description = "Container image"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready replicas"
    ),
    printcolumn(
        name = "Up-To-Date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Replicas running the current spec"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Replicas ready for at least minReadySeconds",
        priority = 1
    ),
    printcolumn(
        name = "Port",
        type_ = "integer",
        json_path = ".spec.service.port",
        description = "Service port",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ModelServiceSpec {
    /// Container image reference, e.g. `localhost:5000/churn-model:v1`.
    pub image: String,
    /// Number of pods to run (default 1; 0 scales the service down).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Entrypoint override (the image's ENTRYPOINT when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments override (the image's CMD when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Gate for receiving traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Restart the container when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Holds off the other probes until the model has loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// cpu/memory requests (used for scheduling) and limits (enforced with cgroups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// User, capabilities and similar settings of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Run only on nodes whose labels contain all of these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints of nodes the Pods tolerate (Kubernetes' Pod `tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// When to pull the image (default: `Always` for `:latest` or no tag, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// How pods are replaced when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Seconds a rollout may go without progress (a Pod of the new spec created or becoming
    /// ready) before the `Progressing` condition turns `False` with `ProgressDeadlineExceeded`,
    /// as a Deployment's (default 600). The rollout itself goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Exposes the ready pods on a port of every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
}

fn default_replicas() -> i32 {
    1
}

/// When the node pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when the image is not present on the node.
    IfNotPresent,
    /// Never pull; fail when the image is missing.
    Never,
}

impl PullPolicy {
    /// The policy as Kubernetes spells it in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Replacement strategy of a ModelService (only rolling updates exist).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Rolling update parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// Bounds of a rolling update, as absolute numbers or percentages of `replicas`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// Pods that may exist above `replicas` during an update (default `25%`, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods that may be unavailable during an update (default `25%`, rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// The default of both rolling-update bounds.
pub const DEFAULT_ROLLING_BOUND: &str = "25%";

/// A Deployment's default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

impl ModelServiceSpec {
    /// `progressDeadlineSeconds`, defaulted.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// `maxSurge`, defaulted.
    pub fn max_surge(&self) -> IntOrString {
        self.rolling_update()
            .and_then(|r| r.max_surge.clone())
            .unwrap_or_else(default_bound)
    }

    /// `maxUnavailable`, defaulted.
    pub fn max_unavailable(&self) -> IntOrString {
        self.rolling_update()
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or_else(default_bound)
    }

    fn rolling_update(&self) -> Option<&RollingUpdate> {
        self.strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
    }
}

fn default_bound() -> IntOrString {
    IntOrString::String(DEFAULT_ROLLING_BOUND.to_string())
}

/// The service port of a ModelService.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Port served on every node (1..=65535).
    pub port: i32,
    /// Container port (number or port name) traffic goes to; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
}

/// The observed state of a ModelService, written by its controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (any revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods whose Ready condition is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods running the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Pods ready and serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Label selector of the pods, serialized (for the scale subresource and HPA-like tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Available / Progressing / ReplicaFailure, like a Deployment's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ModelServiceCondition>,
}

/// One condition of a ModelService (shaped like a Deployment's).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelServiceCondition {
    /// `Available`, `Progressing` or `ReplicaFailure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason of the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last time the condition was updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last time the status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

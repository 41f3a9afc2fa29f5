//! `berth-api`: berth resource types: the ModelService custom resource and its validation.
//!
//! - [`modelservice`]: the `ModelService` type (`berth.dev/v1alpha1`) and its spec/status;
//! - [`validation`]: every problem of an object, with Kubernetes field paths and reasons;
//! - [`labels`]: the label keys the controllers, the agent and the CLI share;
//! - [`names`], [`quantity`]: the grammars validation relies on, reusable by the API server and
//!   clients (image references are `berth_oci::reference`'s);
//! - [`bounds`]: rolling-update bounds (maxSurge/maxUnavailable) resolved against replicas;
//! - [`image`]: defaults derived from a container's image, such as its pull policy;
//! - [`duration`]: durations as the CLI's flags take them (`90s`, `5m`, `1h`).
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod bounds;
pub mod duration;
pub mod image;
pub mod labels;
pub mod modelservice;
pub mod names;
pub mod quantity;
pub mod validation;

pub use modelservice::*;
pub use names::{validate_dns1123_label, validate_dns1123_subdomain};
pub use validation::{ErrorType, FieldError, validate, validate_value};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceSubresourceScale,
};
use kube::CustomResourceExt;

/// The ModelService CustomResourceDefinition, as served and installed by `berth server`.
pub fn crd() -> CustomResourceDefinition {
    ModelService::crd()
}

/// The CRD as JSON (what `berth server` installs at start).
pub fn crd_json() -> serde_json::Value {
    // A CRD built from typed structs always serializes; Null would only hide a bug in serde.
    serde_json::to_value(crd()).unwrap_or(serde_json::Value::Null)
}

/// The CRD as YAML, exactly what `berth crd` prints and `manifests/crds/` holds.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

/// The printer columns of the served version (for server-side Tables).
pub fn printer_columns() -> Vec<CustomResourceColumnDefinition> {
    served_version()
        .and_then(|v| v.additional_printer_columns)
        .unwrap_or_default()
}

/// The scale subresource paths of the served version.
pub fn scale_subresource() -> Option<CustomResourceSubresourceScale> {
    served_version()
        .and_then(|v| v.subresources)
        .and_then(|s| s.scale)
}

fn served_version() -> Option<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion>{
    crd().spec.versions.into_iter().next()
}
